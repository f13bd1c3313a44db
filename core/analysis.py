"""Bank + engine facade: what the CLI (`evaluate`, `pareto`) and the dashboard call.

Everything expensive (per-model signals, temperatures, chain signals, calibration masks,
single-model hulls, curves, frontiers) is memoised per (bank path, manifest mtime, split, ...),
so a dashboard slider move only re-runs `evaluate_cascade` and the bootstrap.

Protocol: temperatures and fitted thresholds come from the calibration part of a split
(deterministic by sample id, see `protocol.calibration_mask`); `on="eval"` reports metrics on
the held-out rest, `on="all"` on every sample. Speed-ups are against the single-model hull
of the same samples.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from . import protocol
from .bank import DEFAULT_BANK_PATH, Bank
from .criteria import CRITERIA
from .curves import CascadeCurve, SingleModelHull, cascade_curve, single_model_hull, speedup_at_equal_accuracy
from .engine import CascadeResult, evaluate_cascade
from .errors import UsageError
from .validate import check_bool, check_fraction, check_int, check_number, check_sequence
from .jsonsafe import jsonable
from .signals import ModelSignals, chain_signals

PARTS = ("all", "eval", "calibration")
TEMPERATURE_MODES = ("none", "fit")
_CACHE_SIZE = 512
# Chains hold per-sample arrays (about 13 bytes per sample and stage): keep fewer of them.
_SIGNALS_CACHE_SIZE = 96


# --------------------------------------------------------------------------------------
# Cascade description
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CascadeSpec:
    """A chain of models (cheapest first) and how it decides to exit early."""
    models: tuple[str, ...]
    criterion: str = "max_softmax"
    thresholds: tuple[float, ...] = ()
    temperature: str = "none"     # "none" | "fit" (per model, NLL on the calibration part)
    ensemble: bool = False

    def __post_init__(self):
        models = (self.models,) if isinstance(self.models, str) else check_sequence(self.models, "models")
        if not all(isinstance(m, str) and m for m in models):
            raise UsageError(f"models must be model ids (non-empty strings), got {list(models)!r}")
        object.__setattr__(self, "models", tuple(models))
        thresholds = check_sequence(self.thresholds, "thresholds")
        object.__setattr__(self, "thresholds", tuple(check_number(t, f"thresholds[{i}]", allow_inf=True)
                                                     for i, t in enumerate(thresholds)))
        object.__setattr__(self, "ensemble", check_bool(self.ensemble, "ensemble"))
        if self.criterion not in CRITERIA:
            raise UsageError(f"unknown criterion {self.criterion!r}: use one of {', '.join(CRITERIA)}")
        if self.temperature not in TEMPERATURE_MODES:
            raise UsageError(f"unknown temperature mode {self.temperature!r}: use 'none' or 'fit'")


# --------------------------------------------------------------------------------------
# Bank identity for the caches
# --------------------------------------------------------------------------------------

# path -> (manifest stamp, Bank). Memoised functions take the (path, stamp) key and look the Bank
# up here, so Bank objects need not be hashable and a rewritten manifest (every bank write
# rewrites it) starts fresh cache entries. Pass a Bank opened after the last write.
_BANKS: dict[str, tuple[tuple[int, int], Bank]] = {}


def open_bank(bank=None) -> Bank:
    """A Bank from a Bank, a path, or None (the shipped default bank)."""
    if isinstance(bank, Bank):
        return bank
    if bank is not None and not isinstance(bank, (str, os.PathLike)):
        raise UsageError(f"bank must be a Bank, a folder path or None (the default bank), got {bank!r}")
    path = Path(bank) if bank is not None else Path(DEFAULT_BANK_PATH)
    path = path.expanduser().resolve()
    stamp = _manifest_stamp(path)
    known = _BANKS.get(str(path))
    if known is not None and known[0] == stamp:
        return known[1]
    # A model missing from one split (e.g. not yet run on the corrupted set) is reported per
    # model when used, not as a reason to refuse the whole bank.
    opened = Bank.open(path, allow_incomplete=True)
    _BANKS[str(path)] = (stamp, opened)
    return opened


def _manifest_stamp(path: Path) -> tuple[int, int]:
    """Changes whenever the manifest is rewritten (every bank write rewrites it atomically)."""
    try:
        stat = (path / "manifest.json").stat()
        return (stat.st_mtime_ns, stat.st_size)
    except OSError:
        return (0, 0)


def _key(bank: Bank) -> tuple:
    path = Path(bank.path).resolve()
    stamp = _manifest_stamp(path)
    known = _BANKS.get(str(path))
    if known is None or known[0] != stamp or known[1] is not bank:
        _BANKS[str(path)] = (stamp, bank)
    return (str(path), stamp)


def _bank(key: tuple) -> Bank:
    return _BANKS[key[0]][1]


def clear_caches() -> None:
    """Forget every memoised result (tests, or after editing a bank in place)."""
    for function in (_part_index, _temperature, _chain, _chain_part, _hull, _curve, _fit, _frontier, _singles):
        function.cache_clear()


# --------------------------------------------------------------------------------------
# Validation (user mistakes -> UsageError naming the fix)
# --------------------------------------------------------------------------------------

def resolve_split(bank: Bank, split: str | None) -> str:
    if split is None:
        if not bank.splits:
            raise UsageError(f"bank {bank.path} has no splits: add one with `cascade-explorer import` or `precompute`")
        return bank.default_split
    if split not in bank.splits:
        raise UsageError(f"unknown split {split!r}: this bank has {', '.join(bank.splits)}")
    return split


def check_spec(bank: Bank, spec: CascadeSpec, split: str, *, need_thresholds: bool = True) -> None:
    known = bank.model_ids
    if not spec.models:
        raise UsageError(f"name at least one model; this bank has (cheapest first): {', '.join(known)}")
    unknown = [m for m in spec.models if m not in known]
    if unknown:
        raise UsageError(f"unknown model {unknown[0]!r}: this bank has (cheapest first): {', '.join(known)}")
    duplicates = sorted({m for m in spec.models if spec.models.count(m) > 1})
    if duplicates:
        raise UsageError(f"model {duplicates[0]!r} appears twice in the cascade; name each model once")
    missing = [m for m in spec.models if split not in bank.model(m).top1]
    if missing:
        have = sorted(bank.model(missing[0]).top1) or ["none"]
        raise UsageError(f"model {missing[0]!r} has no logits for split {split!r} (it has: {', '.join(have)})")
    bank.check_cost_order(spec.models)
    if need_thresholds and len(spec.thresholds) != len(spec.models) - 1:
        raise UsageError(f"a cascade of {len(spec.models)} models needs {len(spec.models) - 1} threshold(s), "
                         f"one per stage except the last; got {len(spec.thresholds)}")
    if any(math.isnan(t) for t in spec.thresholds):
        raise UsageError("thresholds must be numbers (inf = never exit at that stage), got NaN")


def _fraction_seed(calibration_fraction, seed) -> tuple[float, int]:
    """The calibration/held-out split's two knobs, checked (also with on='all': a wrong value is wrong)."""
    return (check_fraction(calibration_fraction, "calibration_fraction", open_interval=True),
            check_int(seed, "seed", minimum=0))


def _check_part(on: str) -> str:
    if on not in PARTS:
        raise UsageError(f"unknown sample part {on!r}: use 'all' (every sample) or 'eval' (held-out part)")
    return on


# --------------------------------------------------------------------------------------
# Memoised building blocks (all keyed by hashable arguments)
# --------------------------------------------------------------------------------------

def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@lru_cache(maxsize=_CACHE_SIZE)
def _part_index(key, split: str, on: str, fraction: float, seed: int) -> np.ndarray | None:
    """Row indices of a part of a split (None = every row)."""
    if on == "all":
        return None
    mask = protocol.calibration_mask(_bank(key).sample_ids(split), fraction, seed)
    if on == "eval":
        mask = ~mask
    index = np.flatnonzero(mask)
    if index.size == 0:
        raise UsageError(f"the {'held-out' if on == 'eval' else 'calibration'} part of split {split!r} is empty "
                         f"(calibration fraction {fraction}, seed {seed}): change the fraction or the seed, "
                         "or evaluate on all samples")
    return _readonly(index)


@lru_cache(maxsize=_CACHE_SIZE)
def _temperature(key, model_id: str, split: str, fraction: float, seed: int) -> float:
    """NLL temperature of one model, fitted on the calibration part of `split` only."""
    bank = _bank(key)
    labels = np.asarray(bank.labels(split))
    calibration = np.zeros(len(labels), dtype=bool)
    calibration[_part_index(key, split, "calibration", fraction, seed)] = True
    return protocol.fit_temperatures([bank.logits(model_id, split)], labels, calibration)[0]


def _temperatures(key, models: tuple, mode: str, temperature_split: str, fraction: float, seed: int) -> tuple:
    if mode == "none":
        return tuple(1.0 for _ in models)
    return tuple(_temperature(key, m, temperature_split, fraction, seed) for m in models)


@lru_cache(maxsize=_SIGNALS_CACHE_SIZE)
def _chain(key, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool) -> tuple:
    """Signals of every stage on every sample of the split."""
    bank = _bank(key)
    if not ensemble or len(models) == 1:
        return tuple(bank.signals(m, split, criterion, temperature=t) for m, t in zip(models, temperatures))
    logits = [bank.logits(m, split) for m in models]
    return tuple(chain_signals(logits, bank.labels(split), criterion, temperatures=list(temperatures), ensemble=True))


@lru_cache(maxsize=_SIGNALS_CACHE_SIZE)
def _chain_part(key, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool,
                on: str, fraction: float, seed: int) -> tuple:
    stages = _chain(key, split, models, criterion, temperatures, ensemble)
    index = _part_index(key, split, on, fraction, seed)
    return stages if index is None else tuple(s.subset(index) for s in stages)


def _costs(bank: Bank, models, device: str | None):
    if device is not None:
        known = sorted({d for m in bank.models for d in (m.latency_ms or {})})
        if device not in known:
            raise UsageError(f"device {device!r} has no latency measurements in bank {bank.name}; "
                             f"use one of: {', '.join(map(repr, known)) or '(none: this bank has no latencies)'}, "
                             "or None (each model's first)")
    gmacs = [float(bank.model(m).gmacs) for m in models]
    ms = [bank.model(m).ms(device) for m in models]
    return gmacs, (None if any(v is None for v in ms) else [float(v) for v in ms])


@lru_cache(maxsize=_CACHE_SIZE)
def _singles(key, split: str, on: str, fraction: float, seed: int, device: str | None) -> pd.DataFrame:
    bank = _bank(key)
    index = _part_index(key, split, on, fraction, seed)
    rows = []
    for model_id in bank.models_for(split):
        info = bank.model(model_id)
        correct = bank.signals(model_id, split, "max_softmax").correct   # argmax is criterion-free
        if index is not None:
            correct = correct[index]
        rows.append({"id": model_id, "display_name": info.display_name, "backend": info.backend,
                     "gmacs": float(info.gmacs), "params": info.params, "ms": info.ms(device),
                     "accuracy": float(np.mean(correct)), "n_samples": int(len(correct))})
    return pd.DataFrame(rows, columns=["id", "display_name", "backend", "gmacs", "params", "ms", "accuracy",
                                       "n_samples"])


@lru_cache(maxsize=_CACHE_SIZE)
def _hull(key, split: str, on: str, fraction: float, seed: int) -> SingleModelHull:
    singles = _singles(key, split, on, fraction, seed, None)
    return single_model_hull(singles["gmacs"].to_numpy(dtype=float), singles["accuracy"].to_numpy(dtype=float))


@lru_cache(maxsize=_CACHE_SIZE)
def _curve(key, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool, on: str,
           fraction: float, seed: int, grid_size: int, device: str | None) -> CascadeCurve:
    bank = _bank(key)
    stages = _chain_part(key, split, models, criterion, temperatures, ensemble, on, fraction, seed)
    gmacs, ms = _costs(bank, models, device)
    return cascade_curve(list(stages), gmacs, ms=ms, grid_size=grid_size)


@lru_cache(maxsize=_CACHE_SIZE)
def _fit(key, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool, fraction: float,
         seed: int, target_kind: str, target_value: float, grid_size: int) -> protocol.ThresholdFit:
    """Thresholds for one target, chosen on the calibration part's curve."""
    stages = _chain_part(key, split, models, criterion, temperatures, ensemble, "calibration", fraction, seed)
    curve = _curve(key, split, models, criterion, temperatures, ensemble, "calibration", fraction, seed,
                   grid_size, None)
    gmacs, _ = _costs(_bank(key), models, None)
    return protocol.fit_thresholds_detailed(list(stages), gmacs, grid_size=grid_size, curve=curve,
                                            **{target_kind: target_value})


# --------------------------------------------------------------------------------------
# Public facade
# --------------------------------------------------------------------------------------

class Evaluation(dict):
    """JSON-ready metrics of one cascade; `.result` holds the full CascadeResult (per-sample arrays),
    `.stages` the stage signals and `.index` the rows of the split that were evaluated (None = all)."""
    result: CascadeResult
    stages: tuple
    index: np.ndarray | None

    def to_json(self) -> str:
        return json.dumps(jsonable(dict(self)), allow_nan=False)


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _speedup(result_cost: float, result_accuracy: float, hull: SingleModelHull) -> float | None:
    value = np.asarray(speedup_at_equal_accuracy(np.asarray([result_cost], dtype=float),
                                                 np.asarray([result_accuracy], dtype=float), hull)).ravel()[0]
    return _finite_or_none(value)


def _prepare(bank, spec: CascadeSpec, split, *, need_thresholds: bool):
    if not isinstance(spec, CascadeSpec):
        raise UsageError(f"spec must be a CascadeSpec (e.g. CascadeSpec(models=('a', 'b'), thresholds=(0.5,))), "
                         f"got {type(spec).__name__}")
    bank = open_bank(bank)
    split = resolve_split(bank, split)
    check_spec(bank, spec, split, need_thresholds=need_thresholds)
    return bank, split, _key(bank)


def temperatures(bank, spec: CascadeSpec, *, split=None, calibration_fraction=0.5, seed=0) -> dict[str, float]:
    """Per-model temperatures of the spec (1.0 each for temperature='none')."""
    bank, split, key = _prepare(bank, spec, split, need_thresholds=False)
    values = _temperatures(key, spec.models, spec.temperature, split, *_fraction_seed(calibration_fraction, seed))
    return dict(zip(spec.models, values))


def stage_signals(bank, spec: CascadeSpec, *, split=None, on="all", calibration_fraction=0.5, seed=0,
                  temperature_split=None) -> list[ModelSignals]:
    """Signals of each stage on the chosen part of the split (exit gallery, histograms)."""
    bank, split, key = _prepare(bank, spec, split, need_thresholds=False)
    fraction, seed = _fraction_seed(calibration_fraction, seed)
    temps = _temperatures(key, spec.models, spec.temperature, resolve_split(bank, temperature_split or split),
                          fraction, seed)
    return list(_chain_part(key, split, spec.models, spec.criterion, temps, spec.ensemble, _check_part(on),
                            fraction, seed))


def part_index(bank, *, split=None, on="all", calibration_fraction=0.5, seed=0) -> np.ndarray | None:
    """Rows of the split in the chosen part (None = every row)."""
    bank = open_bank(bank)
    return _part_index(_key(bank), resolve_split(bank, split), _check_part(on),
                       *_fraction_seed(calibration_fraction, seed))


def evaluate(bank, spec: CascadeSpec, *, split=None, on="all", calibration_fraction=0.5, seed=0,
             n_bootstrap=1000, device=None, temperature_split=None) -> Evaluation:
    """Metrics of one cascade with fixed thresholds on the chosen part of a split.

    `temperature_split` (default: `split`) is where temperatures are fitted (its calibration part);
    the shift analysis sets it to the source split.
    """
    bank, split, key = _prepare(bank, spec, split, need_thresholds=True)
    on, (fraction, seed) = _check_part(on), _fraction_seed(calibration_fraction, seed)
    temperature_split = resolve_split(bank, temperature_split or split)
    temps = _temperatures(key, spec.models, spec.temperature, temperature_split, fraction, seed)
    stages = _chain_part(key, split, spec.models, spec.criterion, temps, spec.ensemble, on, fraction, seed)
    gmacs, ms = _costs(bank, spec.models, device)
    result = evaluate_cascade(list(stages), spec.thresholds, gmacs, ms=ms, models=spec.models)
    if n_bootstrap:
        ci = protocol.bootstrap_ci(result.correct, result.cost_gmacs, n_bootstrap=n_bootstrap, seed=seed)
    else:
        ci = {"accuracy": None, "avg_gmacs": None}
    hull = _hull(key, split, on, fraction, seed)
    out = Evaluation(
        accuracy=result.accuracy, accuracy_ci=ci["accuracy"],
        avg_gmacs=result.avg_gmacs, avg_gmacs_ci=ci["avg_gmacs"], worst_gmacs=result.worst_gmacs,
        avg_ms=result.avg_ms, worst_ms=result.worst_ms,
        exit_fractions=[float(f) for f in result.exit_fractions],
        escalated_fraction=float(result.exit_fractions[-1]) if len(spec.models) > 1 else 0.0,
        n_samples=result.n_samples, n_split_samples=int(len(bank.labels(split))),
        speedup=_speedup(result.avg_gmacs, result.accuracy, hull),
        temperatures=dict(zip(spec.models, temps)), thresholds=list(spec.thresholds),
        models=list(spec.models), criterion=spec.criterion, ensemble=spec.ensemble,
        temperature=spec.temperature, split=split, on=on,
        calibration_fraction=fraction, seed=seed, bank=bank.name,
    )
    out.result, out.stages = result, stages
    out.index = _part_index(key, split, on, fraction, seed)
    return out


def _target(target_accuracy, max_gmacs, max_escalated) -> tuple[str, float]:
    given = [(name, value) for name, value in (("target_accuracy", target_accuracy), ("max_gmacs", max_gmacs),
                                               ("max_escalated", max_escalated)) if value is not None]
    if len(given) != 1:
        raise UsageError("give exactly one target: a target accuracy, a cost budget (max GMACs) or a maximum "
                         f"escalated fraction (got {', '.join(n for n, _ in given) or 'none'})")
    name, value = given[0]
    value = float(value)
    if not math.isfinite(value) or value < 0 or (name != "max_gmacs" and value > 1):
        allowed = "a number >= 0" if name == "max_gmacs" else "a fraction between 0 and 1"
        raise UsageError(f"{name.replace('_', ' ')} must be {allowed}, got {value}")
    return name, value


def fit_for_target_detailed(bank, spec: CascadeSpec, *, target_accuracy=None, max_gmacs=None, max_escalated=None,
                            split=None, calibration_fraction=0.5, seed=0, grid_size=64) -> protocol.ThresholdFit:
    """Thresholds meeting one target on the calibration part, with the calibration metrics there."""
    bank, split, key = _prepare(bank, spec, split, need_thresholds=False)
    if len(spec.models) < 2:
        raise UsageError("fitting thresholds needs a cascade of at least 2 models")
    kind, value = _target(target_accuracy, max_gmacs, max_escalated)
    fraction, seed = _fraction_seed(calibration_fraction, seed)
    temps = _temperatures(key, spec.models, spec.temperature, split, fraction, seed)
    return _fit(key, split, spec.models, spec.criterion, temps, spec.ensemble, fraction, seed, kind, value,
                check_int(grid_size, "grid_size", minimum=2))


def fit_for_target(bank, spec: CascadeSpec, *, target_accuracy=None, max_gmacs=None, max_escalated=None,
                   split=None, calibration_fraction=0.5, seed=0, grid_size=64) -> tuple[float, ...]:
    """Thresholds (one per non-final stage) meeting one target, fitted on the calibration part."""
    return fit_for_target_detailed(bank, spec, target_accuracy=target_accuracy, max_gmacs=max_gmacs,
                                   max_escalated=max_escalated, split=split,
                                   calibration_fraction=calibration_fraction, seed=seed,
                                   grid_size=grid_size).thresholds


def target_range(bank, spec: CascadeSpec, *, split=None, calibration_fraction=0.5, seed=0,
                 grid_size=64) -> dict[str, tuple[float, float]]:
    """What the chain can meet where thresholds are fitted (the calibration part): the lowest and
    highest accuracy, average GMACs and escalated fraction over its thresholds. A target accuracy
    above the high end, or a budget below the low end, is out of reach."""
    bank, split, key = _prepare(bank, spec, split, need_thresholds=False)
    if len(spec.models) < 2:
        raise UsageError("a target range needs a cascade of at least 2 models")
    fraction, seed = _fraction_seed(calibration_fraction, seed)
    temps = _temperatures(key, spec.models, spec.temperature, split, fraction, seed)
    points = _curve(key, split, spec.models, spec.criterion, temps, spec.ensemble, "calibration", fraction, seed,
                    check_int(grid_size, "grid_size", minimum=2), None)
    return {name: (float(values.min()), float(values.max())) for name, values in
            (("accuracy", points.accuracy), ("avg_gmacs", points.avg_gmacs),
             ("escalated_fraction", points.escalated_fraction))}


def curve(bank, spec: CascadeSpec, *, split=None, on="all", calibration_fraction=0.5, seed=0, grid_size=64,
          device=None, temperature_split=None) -> CascadeCurve:
    """The chain's accuracy-cost curve over its thresholds (exact for 2 models), memoised."""
    bank, split, key = _prepare(bank, spec, split, need_thresholds=False)
    if len(spec.models) < 2:
        raise UsageError("a curve needs a cascade of at least 2 models")
    fraction, seed = _fraction_seed(calibration_fraction, seed)
    temps = _temperatures(key, spec.models, spec.temperature, resolve_split(bank, temperature_split or split),
                          fraction, seed)
    return _curve(key, split, spec.models, spec.criterion, temps, spec.ensemble, _check_part(on), fraction, seed,
                  check_int(grid_size, "grid_size", minimum=2), device)


def single_models(bank, split=None, *, on="all", calibration_fraction=0.5, seed=0, device=None) -> pd.DataFrame:
    """id, display_name, backend, gmacs, params, ms, accuracy, n_samples of every model with logits on the split."""
    bank = open_bank(bank)
    return _singles(_key(bank), resolve_split(bank, split), _check_part(on),
                    *_fraction_seed(calibration_fraction, seed), device).copy()


def hull(bank, split=None, *, on="all", calibration_fraction=0.5, seed=0) -> SingleModelHull:
    """Single-model hull (random switching between models) on the chosen samples."""
    bank = open_bank(bank)
    return _hull(_key(bank), resolve_split(bank, split), _check_part(on), *_fraction_seed(calibration_fraction, seed))


FRONTIER_COLUMNS = ["models", "thresholds", "accuracy", "avg_gmacs", "avg_ms", "escalated_fraction",
                    "exit_fractions", "speedup"]
_MAX_DEFAULT_SHORTLIST = 8


@lru_cache(maxsize=64)
def _frontier(key, split: str, criterion: str, max_stages: int, shortlist: tuple | None, on: str,
              fraction: float, seed: int, device: str | None, grid_size: int) -> pd.DataFrame:
    from . import search    # pandas-heavy search module only when a frontier is asked for
    from .curves import pareto_front

    bank = _bank(key)
    ids = bank.models_for(split)
    if len(ids) < 2:
        raise UsageError(f"split {split!r} has logits for {len(ids)} model(s); a cascade needs at least 2")
    signals = {m: _chain_part(key, split, (m,), criterion, (1.0,), False, on, fraction, seed)[0] for m in ids}
    gmacs, ms_list = _costs(bank, ids, device)
    gmacs_map = dict(zip(ids, gmacs))
    ms_map = None if ms_list is None else dict(zip(ids, ms_list))
    frames = [search.pair_frontier(signals, gmacs_map, ms_map)]
    if max_stages >= 3:
        chosen = list(shortlist) if shortlist else ids
        if len(chosen) < 3:
            raise UsageError(f"3-model cascades need a shortlist of at least 3 models, got {', '.join(chosen)}")
        frames.append(search.three_model_frontier(signals, gmacs_map, chosen, ms=ms_map, grid_size=grid_size))
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) \
        else frames[0]
    if len(frames) > 1 and len(frame):
        keep = pareto_front(frame["avg_gmacs"].to_numpy(dtype=float), frame["accuracy"].to_numpy(dtype=float))
        frame = frame.iloc[np.asarray(keep)].reset_index(drop=True)
    return frame


def frontier(bank, *, split=None, criterion="max_softmax", max_stages=2, shortlist=None, on="all",
             calibration_fraction=0.5, seed=0, device=None, grid_size=64) -> pd.DataFrame:
    """Global best-cascade frontier over all ordered pairs (cheaper first), plus 3-model chains over a
    shortlist when max_stages=3 (default shortlist: every model when the bank has at most 8)."""
    bank = open_bank(bank)
    split = resolve_split(bank, split)
    if criterion not in CRITERIA:
        raise UsageError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    max_stages = check_int(max_stages, "max_stages", minimum=2, maximum=3)
    ids = bank.models_for(split)
    if shortlist is not None:
        shortlist = tuple(dict.fromkeys(str(m) for m in shortlist))
        unknown = [m for m in shortlist if m not in ids]
        if unknown:
            raise UsageError(f"unknown model {unknown[0]!r} in the shortlist: split {split!r} has (cheapest first): "
                             f"{', '.join(ids)}")
        shortlist = tuple(m for m in ids if m in shortlist)   # cheapest first
    elif max_stages == 3 and len(ids) > _MAX_DEFAULT_SHORTLIST:
        raise UsageError(f"this split has {len(ids)} models: name at most a handful for 3-model cascades "
                         f"with a shortlist (choose from: {', '.join(ids)})")
    return _frontier(_key(bank), split, criterion, max_stages, shortlist, _check_part(on),
                     *_fraction_seed(calibration_fraction, seed), device,
                     check_int(grid_size, "grid_size", minimum=2)).copy()


def shift(bank, spec: CascadeSpec, source_split, target_split, *, on="eval", target_accuracy=None,
          max_gmacs=None, max_escalated=None, calibration_fraction=0.5, seed=0, device=None,
          n_bootstrap=1000) -> dict:
    """Thresholds (given in the spec, or fitted for a target on the source's calibration part) and
    temperatures (fitted on the source's calibration part) applied unchanged to another split.

    Both sides use the same part (`on`); the part is decided per sample id, so a corrupted copy of
    the same images keeps the calibration images out of the target's held-out part too.
    Returns {"source": Evaluation, "target": Evaluation, "thresholds", "fitted", "delta", ...}.
    """
    bank = open_bank(bank)
    source_split = resolve_split(bank, source_split)
    target_split = resolve_split(bank, target_split)
    fitted = None
    if any(v is not None for v in (target_accuracy, max_gmacs, max_escalated)):
        if spec.thresholds:
            raise UsageError("give either thresholds in the spec or a target (target_accuracy / max_gmacs / "
                             "max_escalated) to fit them, not both")
        fit = fit_for_target_detailed(bank, spec, target_accuracy=target_accuracy, max_gmacs=max_gmacs,
                                      max_escalated=max_escalated, split=source_split,
                                      calibration_fraction=calibration_fraction, seed=seed)
        spec = replace(spec, thresholds=fit.thresholds)
        fitted = {"target": fit.target, "calibration_accuracy": fit.accuracy,
                  "calibration_avg_gmacs": fit.avg_gmacs}
    common = dict(on=on, calibration_fraction=calibration_fraction, seed=seed, device=device,
                  n_bootstrap=n_bootstrap, temperature_split=source_split)
    source = evaluate(bank, spec, split=source_split, **common)
    target = evaluate(bank, spec, split=target_split, **common)
    delta = protocol.shift_delta(source, target)
    return {"models": list(spec.models), "criterion": spec.criterion, "thresholds": list(spec.thresholds),
            "temperatures": source["temperatures"], "source_split": source_split, "target_split": target_split,
            "on": on, "fitted": fitted, "source": source, "target": target, "delta": delta}


# --------------------------------------------------------------------------------------
# CLI handlers
# --------------------------------------------------------------------------------------

def _cli_bank(args) -> Bank:
    return open_bank(getattr(args, "bank", None))


def _fmt_pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _fmt_ci(ci, scale=1.0, digits=2) -> str:
    if ci is None:
        return ""
    return f"  [95% CI {ci[0] * scale:.{digits}f} .. {ci[1] * scale:.{digits}f}]"


def _format_evaluation(report: dict) -> str:
    thresholds = ", ".join(f"{t:.4g}" for t in report["thresholds"]) or "-"   # +-inf print as 'inf' / '-inf'
    part = ("every sample" if report["on"] == "all" else
            f"held-out part (calibration fraction {report['calibration_fraction']:g}, seed {report['seed']})")
    temps = ", ".join(f"{m} {t:.3g}" for m, t in report["temperatures"].items())
    lines = [
        f"cascade       {' -> '.join(report['models'])}",
        f"criterion     {report['criterion']}, thresholds {thresholds}, temperature {report['temperature']}"
        + (f" ({temps})" if report["temperature"] == "fit" else "") + (", ensemble" if report["ensemble"] else ""),
        f"samples       {report['n_samples']} of {report['n_split_samples']} in split {report['split']!r}, {part}",
        f"accuracy      {_fmt_pct(report['accuracy'])}{_fmt_ci(report['accuracy_ci'], 100)}",
        f"avg GMACs     {report['avg_gmacs']:.4g}{_fmt_ci(report['avg_gmacs_ci'], 1, 4)}   "
        f"worst {report['worst_gmacs']:.4g}",
    ]
    if report["avg_ms"] is not None:
        lines.append(f"avg ms        {report['avg_ms']:.4g}   worst {report['worst_ms']:.4g}")
    speedup = report["speedup"]
    lines.append("speed-up      " + ("n/a (more accurate than every single model)" if speedup is None else
                                     f"{speedup:.2f}x vs the single-model hull at equal accuracy"))
    exits = ", ".join(f"{m} {100 * f:.1f} %" for m, f in zip(report["models"], report["exit_fractions"]))
    lines.append(f"exits         {exits}")
    if report.get("fitted"):
        fitted = report["fitted"]
        (kind, value), = fitted["target"].items()
        lines.append(f"fitted        thresholds for {kind.replace('_', ' ')} {value:g} on the calibration part "
                     f"(there: accuracy {_fmt_pct(fitted['calibration_accuracy'])}, "
                     f"{fitted['calibration_avg_gmacs']:.4g} GMACs)")
    if report.get("shift"):
        target = report["shift"]["target"]
        lines.append(f"shift to {report['shift']['target_split']!r}: accuracy {_fmt_pct(target['accuracy'])}, "
                     f"avg GMACs {target['avg_gmacs']:.4g}, exits "
                     + ", ".join(f"{100 * f:.1f} %" for f in target["exit_fractions"])
                     + ("" if target["speedup"] is None else f", speed-up {target['speedup']:.2f}x"))
    if report.get("config_path"):
        lines.append(f"config        saved to {report['config_path']} (cascade-explorer predict --config ...)")
    return "\n".join(lines)


def run_evaluate(args) -> int:
    bank = _cli_bank(args)
    split = resolve_split(bank, args.split)
    thresholds = tuple(args.thresholds or ())
    spec = CascadeSpec(models=tuple(args.models), criterion=args.criterion, thresholds=thresholds,
                       temperature=args.temperature, ensemble=args.ensemble)
    fraction, seed = args.calibration_fraction, args.seed
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"--calibration-fraction must be strictly between 0 and 1, got {fraction}")
    targets = {"target_accuracy": args.target_accuracy, "max_gmacs": args.max_gmacs,
               "max_escalated": args.max_escalated}
    given = {k: v for k, v in targets.items() if v is not None}
    fitted = None
    check_spec(bank, spec, split, need_thresholds=False)
    if given:
        if thresholds:
            raise UsageError("give either --thresholds or a target (--target-accuracy / --max-gmacs / "
                             "--max-escalated), not both")
        fit = fit_for_target_detailed(bank, spec, split=split, calibration_fraction=fraction, seed=seed, **targets)
        spec = replace(spec, thresholds=fit.thresholds)
        fitted = {"target": fit.target, "calibration_accuracy": fit.accuracy,
                  "calibration_avg_gmacs": fit.avg_gmacs}
    elif len(spec.models) > 1 and not thresholds:
        raise UsageError(f"a cascade of {len(spec.models)} models needs --thresholds with {len(spec.models) - 1} "
                         "value(s), or a target: --target-accuracy A, --max-gmacs C or --max-escalated E")
    report = evaluate(bank, spec, split=split, on=args.on, calibration_fraction=fraction, seed=seed)
    output = dict(report)
    output["fitted"] = fitted
    if args.shift_to:
        shifted = shift(bank, spec, split, args.shift_to, on=args.on, calibration_fraction=fraction, seed=seed)
        output["shift"] = {"target_split": shifted["target_split"],
                           "target": {k: shifted["target"][k] for k in
                                      ("accuracy", "accuracy_ci", "avg_gmacs", "avg_gmacs_ci", "avg_ms",
                                       "exit_fractions", "n_samples", "speedup")},
                           "delta": shifted["delta"]}
    if args.save_config:
        from .config import CascadeConfig

        saved = CascadeConfig.from_report(bank, report).save(args.save_config)
        output["config_path"] = str(saved)
    if args.json:
        print(json.dumps(jsonable(output), allow_nan=False))
    else:
        print(_format_evaluation(output))
    return 0


def frontier_records(frame: pd.DataFrame) -> list[dict]:
    """Frontier rows as plain JSON-ready dicts (models/thresholds as lists)."""
    records = []
    for row in frame.to_dict(orient="records"):
        record = {column: row.get(column) for column in FRONTIER_COLUMNS if column in row}
        record["models"] = list(row["models"])
        record["thresholds"] = [float(t) for t in row["thresholds"]]
        if "exit_fractions" in row:
            record["exit_fractions"] = [float(f) for f in row["exit_fractions"]]
        records.append(jsonable(record))
    return records


def run_pareto(args) -> int:
    from . import search

    bank = _cli_bank(args)
    split = resolve_split(bank, args.split)
    if args.shortlist and args.max_stages < 3:
        raise UsageError("--shortlist only applies to 3-model cascades: add --max-stages 3")
    frame = frontier(bank, split=split, criterion=args.criterion, max_stages=args.max_stages,
                     shortlist=args.shortlist)
    if args.target_accuracy is not None:
        _target(args.target_accuracy, None, None)
        best = search.best_cascade(frame, target_accuracy=args.target_accuracy)
        if best is None:
            top = float(frame["accuracy"].max()) if len(frame) else float("nan")
            raise UsageError(f"no cascade reaches accuracy {args.target_accuracy:.4f} on split {split!r}; "
                             f"the best is {top:.4f}")
        frame = pd.DataFrame([best]).reset_index(drop=True)
    records = frontier_records(frame)
    if args.json:
        print(json.dumps(records, allow_nan=False))
    elif args.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = [c for c in FRONTIER_COLUMNS if records and c in records[0]] or FRONTIER_COLUMNS
        writer.writerow(columns)
        for record in records:
            writer.writerow(["+".join(record[c]) if c == "models" else
                             ";".join(str(v) for v in record[c]) if isinstance(record[c], list) else
                             "" if record[c] is None else record[c] for c in columns])
        print(buffer.getvalue(), end="")
    else:
        print(f"{len(records)} frontier cascade(s) on split {split!r} ({args.criterion}):")
        for record in records:
            speedup = "" if record.get("speedup") is None else f"  speed-up {record['speedup']:.2f}x"
            thresholds = ",".join(str(t) if isinstance(t, str) else f"{t:.4g}" for t in record["thresholds"])
            print(f"  {' -> '.join(record['models'])}  thresholds {thresholds}  "
                  f"accuracy {100 * record['accuracy']:.2f} %  {record['avg_gmacs']:.4g} GMACs{speedup}")
    return 0

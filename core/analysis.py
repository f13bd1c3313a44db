"""Bank + engine facade: what the CLI (`evaluate`, `pareto`) and the dashboard call.

`BankAnalysis` owns every derived result of one bank (per-model signals, fitted temperatures,
stage chains, calibration parts, curves, fits, frontiers, the single-model hull), memoised in one
LRU with a byte bound (`max_bytes`, default 1 GiB of per-sample arrays and tables), so a
dashboard slider move only re-runs `evaluate_cascade` and the intervals. Its signals come through
a `core.signals.SignalSource` (the seam a persistent store plugs into).

The module-level functions (`evaluate`, `frontier`, `fit_for_target`, ...) take a BankAnalysis,
a Bank, a bank folder or None (the shipped default bank). Given anything but a BankAnalysis they
build a fresh one for that call: pass a BankAnalysis to reuse derived results across calls.

Protocol: temperatures and fitted thresholds come from the calibration part of a split
(deterministic by sample id, see `protocol.calibration_mask`); `on="eval"` reports metrics on
the held-out rest, `on="all"` on every sample. Speed-ups are against the single-model hull
of the same samples (Lebovitz et al. 2023, section 3: models mixed at random reach every point
on the hull of the single models).
"""

from __future__ import annotations

import copy
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cachetools
import numpy as np

from . import intervals, protocol, search
from .certify import Certificate, certify_thresholds
from .bank import DEFAULT_BANK_PATH, Bank
from .criteria import check_criterion
from .curves import CascadeCurve, SingleModelHull, cascade_curve, single_model_hull, speedup_of
from .engine import CascadeResult, check_thresholds, evaluate_cascade
from .errors import NotCertifiedError, UsageError
from .jsonsafe import jsonable
from .router_metrics import ROUTER_COLUMNS, router_metrics, router_metrics_all_pairs, with_router_columns
from .search import COLUMNS as FRONTIER_COLUMNS   # the frontier's columns: one definition, in search
from .signals import ModelSignals, SignalSource, chain_signals
from .temperature import TemperatureFit
from .validate import check_bool, check_fraction, check_int, check_number, check_sequence

if TYPE_CHECKING:   # pandas is imported where a table is built: a lone `evaluate` needs none (~0.4 s)
    import pandas as pd

PARTS = ("all", "eval", "calibration")
# Confidence level of every interval `evaluate` reports.
CI_LEVEL = 0.95
TEMPERATURE_MODES = ("none", "fit")
# Default bound of what one BankAnalysis keeps in memory (per-sample arrays, curves, tables).
DEFAULT_MAX_BYTES = 1 << 30
_MAX_DEFAULT_SHORTLIST = 8


# --------------------------------------------------------------------------------------
# Cascade description
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CascadeSpec:
    """A chain of models (cheapest first) and how it decides to exit early.

    models: model ids of a bank, cheapest first. criterion: a confidence criterion of
    `core.criteria.CRITERIA`. thresholds: one per non-final stage (a stage answers when its
    confidence >= its threshold; +inf never exits, -inf always does), empty when they are to be
    fitted. temperature: "none", or "fit" (per model, NLL on the calibration part). ensemble:
    stage i decides on the mean softmax of stages 1..i (paper, section 4.3).

    Raises UsageError for a value of the wrong kind (a bare string for thresholds, NaN, an unknown
    criterion or temperature mode).
    """
    models: tuple[str, ...]
    criterion: str = "max_softmax"
    thresholds: tuple[float, ...] = ()
    temperature: str = "none"
    ensemble: bool = False

    def __post_init__(self):
        models = (self.models,) if isinstance(self.models, str) else check_sequence(self.models, "models")
        if not all(isinstance(m, str) and m for m in models):
            raise UsageError(f"models must be model ids (non-empty strings), got {list(models)!r}", parameter="models")
        object.__setattr__(self, "models", tuple(models))
        thresholds = check_sequence(self.thresholds, "thresholds")
        object.__setattr__(self, "thresholds", tuple(check_number(t, f"thresholds[{i}]", allow_inf=True)
                                                     for i, t in enumerate(thresholds)))
        object.__setattr__(self, "ensemble", check_bool(self.ensemble, "ensemble"))
        check_criterion(self.criterion)
        if self.temperature not in TEMPERATURE_MODES:
            raise UsageError(f"unknown temperature mode {self.temperature!r}: use 'none' or 'fit'",
                             parameter="temperature")


class Evaluation(dict):
    """JSON-ready metrics of one cascade; `.result` holds the full CascadeResult (per-sample arrays),
    `.stages` the stage signals and `.index` the rows of the split that were evaluated (None = all)."""
    result: CascadeResult
    stages: tuple
    index: np.ndarray | None

    def to_json(self) -> str:
        from .jsonsafe import dumps

        return dumps(jsonable(dict(self)))

    def copy(self) -> "Evaluation":
        out = Evaluation(copy.deepcopy(dict(self)))   # nested dicts too: the memoised original stays intact
        out.result, out.stages, out.index = self.result, self.stages, self.index
        return out


# --------------------------------------------------------------------------------------
# Checks at the public boundary (user mistakes -> UsageError naming the fix)
# --------------------------------------------------------------------------------------

def open_bank(bank=None) -> Bank:
    """A Bank from a Bank, a BankAnalysis, a folder path, or None (the shipped default bank).

    Models missing from one split (e.g. not yet run on the corrupted set) are allowed; they are
    reported per model when used. Raises BankError for a missing or damaged bank, UsageError for
    an argument of the wrong kind.
    """
    if isinstance(bank, Bank):
        return bank
    if isinstance(bank, BankAnalysis):
        return bank.bank
    if bank is not None and not isinstance(bank, (str, os.PathLike)):
        raise UsageError(f"bank must be a Bank, a folder path or None (the default bank), got {bank!r}",
                         parameter="bank")
    path = Path(bank) if bank is not None else Path(DEFAULT_BANK_PATH)
    return Bank.open(path.expanduser().resolve(), allow_incomplete=True)


def analysis_for(bank=None) -> "BankAnalysis":
    """`bank` itself when it is a BankAnalysis, else a new BankAnalysis of open_bank(bank)."""
    return bank if isinstance(bank, BankAnalysis) else BankAnalysis(bank)


def resolve_split(bank: Bank, split: str | None) -> str:
    """`split`, or the bank's first split when None; UsageError naming the bank's splits otherwise."""
    if split is None:
        if not bank.splits:
            raise UsageError(f"bank {bank.path} has no splits: add one with `cascade-explorer import` or `precompute`")
        return bank.default_split
    if split not in bank.splits:
        raise UsageError(f"split: unknown split {split!r}: this bank has {', '.join(bank.splits)}", parameter="split")
    return split


def check_spec(bank: Bank, spec: CascadeSpec, split: str, *, need_thresholds: bool = True) -> None:
    """UsageError unless every model of `spec` is in the bank with logits on `split`, named once,
    in cost order, and (need_thresholds) there is one threshold per non-final stage."""
    if not isinstance(spec, CascadeSpec):
        raise UsageError(f"spec must be a CascadeSpec (e.g. CascadeSpec(models=('a', 'b'), thresholds=(0.5,))), "
                         f"got {type(spec).__name__}", parameter="spec")
    known = bank.model_ids
    if not spec.models:
        raise UsageError(f"models: name at least one model; this bank has (cheapest first): {', '.join(known)}",
                         parameter="models")
    unknown = [m for m in spec.models if m not in known]
    if unknown:
        raise UsageError(f"unknown model {unknown[0]!r}: this bank has (cheapest first): {', '.join(known)}")
    duplicates = sorted({m for m in spec.models if spec.models.count(m) > 1})
    if duplicates:
        raise UsageError(f"model {duplicates[0]!r} appears twice in the cascade; name each model once")
    missing = [m for m in spec.models if not bank.has_logits(m, split)]
    if missing:
        have = sorted(bank.model(missing[0]).top1) or ["none"]
        raise UsageError(f"model {missing[0]!r} has no logits for split {split!r} (it has: {', '.join(have)})")
    bank.check_cost_order(spec.models)
    if need_thresholds:
        check_thresholds(list(spec.thresholds), len(spec.models))


def _fraction_seed(calibration_fraction, seed) -> tuple[float, int]:
    """The calibration/held-out split's two knobs, checked (also with on='all': a wrong value is wrong)."""
    return (check_fraction(calibration_fraction, "calibration_fraction", open_interval=True),
            check_int(seed, "seed", minimum=0))


def _check_part(on: str) -> str:
    if on not in PARTS:
        raise UsageError(f"on: unknown sample part {on!r}: use 'all' (every sample) or 'eval' (held-out part)",
                         parameter="on")
    return on


def _check_grid(grid_size) -> int:
    return check_int(grid_size, "grid_size", minimum=2)


# --------------------------------------------------------------------------------------
# The analysis object
# --------------------------------------------------------------------------------------

def _nbytes(value) -> int:
    """Approximate bytes a memoised value holds (arrays dominate; anything else counts 1 KiB)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 128
    pandas = sys.modules.get("pandas")   # no DataFrame exists before pandas is imported
    if pandas is not None and isinstance(value, pandas.DataFrame):
        return int(value.memory_usage(index=True, deep=False).sum()) + 64 * len(value) + 1024
    if isinstance(value, dict):
        return 1024 + sum(_nbytes(v) for v in value.values()) + sum(_nbytes(getattr(value, a, None))
                                                                   for a in ("result", "stages", "index"))
    if isinstance(value, (tuple, list)):
        return 64 + sum(_nbytes(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return 128 + sum(_nbytes(getattr(value, f.name)) for f in fields(value))
    return 0 if value is None else 64


def _memo(method):
    """Memoise a BankAnalysis method in the instance's byte-bounded LRU (key: method name + arguments;
    a `progress` keyword is passed to the method but left out of the key: it never changes the result)."""
    name = method.__name__

    def key(self, *args, progress=None, **kwargs):
        return cachetools.keys.hashkey(name, *args, **kwargs)
    return cachetools.cachedmethod(lambda self: self._cache, key=key, lock=lambda self: self._lock)(method)


class BankAnalysis:
    """Every derived result of one bank, memoised: signals, temperatures, chains, curves, fits,
    frontiers and the single-model hull.

    bank: a Bank, a folder path or None (the shipped default bank). signal_source: where
    per-model signals and temperatures come from (default: the bank's persistent
    `core.store.SignalStore`, filled on first use; store=False computes them in memory only). max_bytes:
    the memory bound of what is kept (least recently used results are dropped first; a single
    result larger than the bound is computed and returned but not kept).

    Thread-safe: the dashboard shares one per bank between sessions. Each public method checks
    its arguments (UsageError naming the argument) and returns results a caller may keep; the
    module-level functions of the same names call these.
    """

    def __init__(self, bank=None, *, signal_source: SignalSource | None = None, store: bool = True,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.bank: Bank = open_bank(bank)
        if signal_source is None:
            from .store import SignalStore

            signal_source = SignalStore() if check_bool(store, "store") else SignalSource()
        self.signal_source = signal_source
        self.max_bytes = check_int(max_bytes, "max_bytes", minimum=1)
        self._cache = cachetools.LRUCache(maxsize=self.max_bytes, getsizeof=_nbytes)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"BankAnalysis({self.bank!r}, {self.memory_bytes / 1e6:.1f} MB held)"

    @property
    def memory_bytes(self) -> int:
        """Bytes currently held by memoised results (an estimate dominated by the arrays)."""
        with self._lock:
            return int(self._cache.currsize)

    def clear(self) -> None:
        """Forget every memoised result (after editing the bank in place)."""
        with self._lock:
            self._cache.clear()

    # -- memoised building blocks (arguments already checked)

    @_memo
    def _uniforms(self, split: str, seed: int) -> np.ndarray:
        """protocol.sample_uniforms of the split's sample ids: one keyed hash per sample (~0.1 s at
        N = 50,000), shared by the calibration and held-out parts of every fraction."""
        uniforms = protocol.sample_uniforms(self.bank.sample_ids(split), seed)
        uniforms.flags.writeable = False
        return uniforms

    @_memo
    def _part_index(self, split: str, on: str, fraction: float, seed: int) -> np.ndarray | None:
        """Row indices of a part of a split (None = every row)."""
        if on == "all":
            return None
        mask = protocol.calibration_mask(self.bank.sample_ids(split), fraction, seed,
                                         uniforms=self._uniforms(split, seed))   # the hashes memoised
        if on == "eval":
            mask = ~mask
        index = np.flatnonzero(mask)
        if index.size == 0:
            raise UsageError(f"the {'held-out' if on == 'eval' else 'calibration'} part of split {split!r} is empty "
                             f"(calibration fraction {fraction}, seed {seed}): change the fraction or the seed, "
                             "or evaluate on all samples")
        index.flags.writeable = False
        return index

    @_memo
    def _temperature_fit(self, model_id: str, split: str, fraction: float, seed: int) -> TemperatureFit:
        """The NLL temperature fit of one model (with NLL/ECE before and after, flags), on the
        calibration part of `split` only."""
        rows = self._part_index(split, "calibration", fraction, seed)
        return self.signal_source.temperature_fit(self.bank, model_id, split, rows)

    @_memo
    def _temperature(self, model_id: str, split: str, fraction: float, seed: int) -> float:
        """NLL temperature of one model, fitted on the calibration part of `split` only."""
        if type(self.signal_source).temperature is SignalSource.temperature:
            # the default source derives the float from the fit: reuse the memoised fit, not a second one
            return float(self._temperature_fit(model_id, split, fraction, seed).temperature)
        rows = self._part_index(split, "calibration", fraction, seed)
        return float(self.signal_source.temperature(self.bank, model_id, split, rows))

    def _temperatures(self, models: tuple, mode: str, temperature_split: str, fraction: float, seed: int) -> tuple:
        if mode == "none":
            return tuple(1.0 for _ in models)
        return tuple(self._temperature(m, temperature_split, fraction, seed) for m in models)

    @_memo
    def _signals(self, model_id: str, split: str, criterion: str, temperature: float) -> ModelSignals:
        return self.signal_source.model_signals(self.bank, model_id, split, criterion, temperature)

    @_memo
    def _correct(self, model_id: str, split: str) -> np.ndarray:
        """bool (N,): the model's argmax is right (all the single-model hull needs of a model)."""
        correct = self.signal_source.correct(self.bank, model_id, split)
        return self._signals(model_id, split, "max_softmax", 1.0).correct if correct is None else correct

    @_memo
    def _chain(self, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool) -> tuple:
        """Signals of every stage on every sample of the split."""
        if not ensemble or len(models) == 1:
            return tuple(self._signals(m, split, criterion, t) for m, t in zip(models, temperatures))
        logits = [self.bank.logits(m, split) for m in models]
        return tuple(chain_signals(logits, self.bank.labels(split), criterion, temperatures=list(temperatures),
                                   ensemble=True))

    @_memo
    def _chain_part(self, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool,
                    on: str, fraction: float, seed: int) -> tuple:
        stages = self._chain(split, models, criterion, temperatures, ensemble)
        index = self._part_index(split, on, fraction, seed)
        return stages if index is None else tuple(s.subset(index) for s in stages)

    def _costs(self, models, device: str | None):
        if device is not None:
            known = self.bank.latency_devices()
            if device not in known:
                raise UsageError(f"device {device!r} has no latency measurements in bank {self.bank.name}; "
                                 f"use one of: {', '.join(map(repr, known)) or '(none: this bank has no latencies)'}, "
                                 "or None (each model's first)", parameter="device")
        gmacs = [float(self.bank.model(m).gmacs) for m in models]
        ms = [self.bank.model(m).ms(device) for m in models]
        return gmacs, (None if any(v is None for v in ms) else [float(v) for v in ms])

    @_memo
    def _single_accuracy(self, split: str, on: str, fraction: float, seed: int) -> tuple:
        """(model ids, n_rows, accuracy (M,)) of every model on the split's part: argmax right answers,
        criterion- and temperature-free; a signal store keeps them as one summary file."""
        index = self._part_index(split, on, fraction, seed)
        ids = tuple(self.bank.models_for(split))
        n_rows = self.bank.n_samples(split) if index is None else len(index)
        counts = self.signal_source.correct_counts(self.bank, ids, split, index) if ids else None
        if counts is None:
            correct = (self._correct(m, split) for m in ids)
            counts = [np.count_nonzero(c if index is None else c[index]) for c in correct]
        # count / n equals np.mean(correct) bit for bit (the count is exact in float64)
        accuracy = np.array([int(c) / n_rows if n_rows else float("nan") for c in counts], dtype=float)
        accuracy.flags.writeable = False
        return ids, n_rows, accuracy

    @_memo
    def _singles(self, split: str, on: str, fraction: float, seed: int, device: str | None) -> pd.DataFrame:
        import pandas as pd

        ids, n_rows, accuracy = self._single_accuracy(split, on, fraction, seed)
        rows = []
        for model_id, model_accuracy in zip(ids, accuracy):
            info = self.bank.model(model_id)
            rows.append({"id": model_id, "display_name": info.display_name, "backend": info.backend,
                         "gmacs": float(info.gmacs), "params": info.params, "ms": info.ms(device),
                         "accuracy": float(model_accuracy), "n_samples": int(n_rows)})
        return pd.DataFrame(rows, columns=["id", "display_name", "backend", "gmacs", "params", "ms", "accuracy",
                                           "n_samples"])

    @_memo
    def _hull(self, split: str, on: str, fraction: float, seed: int) -> SingleModelHull:
        ids, _, accuracy = self._single_accuracy(split, on, fraction, seed)
        return single_model_hull([float(self.bank.model(m).gmacs) for m in ids], accuracy)

    @_memo
    def _curve(self, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool, on: str,
               fraction: float, seed: int, grid_size: int, device: str | None) -> CascadeCurve:
        stages = self._chain_part(split, models, criterion, temperatures, ensemble, on, fraction, seed)
        gmacs, ms = self._costs(models, device)
        return cascade_curve(list(stages), gmacs, ms=ms, grid_size=grid_size)

    @_memo
    def _fit(self, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool, fraction: float,
             seed: int, target_kind: str, target_value: float, grid_size: int) -> protocol.ThresholdFit:
        """Thresholds for one target, chosen on the calibration part's curve."""
        stages = self._chain_part(split, models, criterion, temperatures, ensemble, "calibration", fraction, seed)
        curve = self._curve(split, models, criterion, temperatures, ensemble, "calibration", fraction, seed,
                            grid_size, None)
        gmacs, _ = self._costs(models, None)
        return protocol.fit_thresholds_detailed(list(stages), gmacs, grid_size=grid_size, curve=curve,
                                                **{target_kind: target_value})

    @_memo
    def _router(self, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool, on: str,
                fraction: float, seed: int) -> dict:
        """Router metrics (core.router_metrics) of a 2-model chain on a part, exact over every threshold."""
        stages = self._chain_part(split, models, criterion, temperatures, ensemble, on, fraction, seed)
        gmacs, _ = self._costs(models, None)
        return router_metrics(stages[0], stages[1], gmacs)

    @_memo
    def _router_table(self, split: str, criterion: str, on: str, fraction: float, seed: int,
                      pairs: tuple | None) -> pd.DataFrame:
        ids = self.bank.models_for(split)
        if pairs is not None:   # only the models the pairs name are read
            ids = [m for m in ids if any(m in pair for pair in pairs)]
        signals = {m: self._chain_part(split, (m,), criterion, (1.0,), False, on, fraction, seed)[0] for m in ids}
        gmacs, _ = self._costs(ids, None)
        rows = router_metrics_all_pairs(signals, dict(zip(ids, gmacs)), pairs=pairs) if len(ids) >= 2 else []
        import pandas as pd

        return pd.DataFrame(rows)

    @_memo
    def _evaluation(self, spec: CascadeSpec, split: str, on: str, fraction: float, seed: int, n_bootstrap: int,
                    device: str | None, temperature_split: str, bootstrap_draws: str = "indices") -> Evaluation:
        temps = self._temperatures(spec.models, spec.temperature, temperature_split, fraction, seed)
        stages = self._chain_part(split, spec.models, spec.criterion, temps, spec.ensemble, on, fraction, seed)
        gmacs, ms = self._costs(spec.models, device)
        result = evaluate_cascade(list(stages), spec.thresholds, gmacs, ms=ms, models=spec.models)
        n_stages = len(spec.models)
        if n_bootstrap:
            escalated = result.exit_stage == n_stages - 1 if n_stages > 1 else np.zeros(result.n_samples, bool)
            ci = intervals.cascade_intervals(result.correct, result.cost_gmacs, escalated, level=CI_LEVEL,
                                             n_bootstrap=n_bootstrap, seed=seed, draws=bootstrap_draws)
            methods = {"accuracy": ci["methods"]["accuracy"], "avg_gmacs": ci["methods"]["avg_gmacs"],
                       "escalated_fraction": ci["methods"]["escalated"]}
        else:
            ci, methods = {"accuracy_ci": None, "avg_gmacs_ci": None, "escalated_ci": None}, None
        fits = {}
        if spec.temperature == "fit":
            fits = {m: self._temperature_fit(m, temperature_split, fraction, seed).to_dict() for m in spec.models}
        warnings = [f"temperature of {m}: {message}" for m, fit in fits.items() for message in fit["messages"]]
        router = (self._router(split, spec.models, spec.criterion, temps, spec.ensemble, on, fraction, seed)
                  if n_stages == 2 else None)
        out = Evaluation(
            accuracy=result.accuracy, accuracy_ci=ci["accuracy_ci"],
            avg_gmacs=result.avg_gmacs, avg_gmacs_ci=ci["avg_gmacs_ci"], worst_gmacs=result.worst_gmacs,
            avg_ms=result.avg_ms, worst_ms=result.worst_ms,
            exit_fractions=[float(f) for f in result.exit_fractions],
            escalated_fraction=float(result.exit_fractions[-1]) if n_stages > 1 else 0.0,
            escalated_fraction_ci=ci["escalated_ci"], ci_level=CI_LEVEL if methods else None, ci_methods=methods,
            n_samples=result.n_samples, n_split_samples=int(len(self.bank.labels(split))),
            speedup=speedup_of(result.avg_gmacs, result.accuracy, self._hull(split, on, fraction, seed)),
            temperatures=dict(zip(spec.models, temps)), temperature_fits=fits, temperature_warnings=warnings,
            router_metrics=None if router is None else dict(router),
            thresholds=list(spec.thresholds),
            models=list(spec.models), criterion=spec.criterion, ensemble=spec.ensemble,
            temperature=spec.temperature, split=split, on=on,
            calibration_fraction=fraction, seed=seed, bank=self.bank.name,
        )
        out.result, out.stages = result, stages
        out.index = self._part_index(split, on, fraction, seed)
        return out

    @_memo
    def _frontier(self, split: str, criterion: str, max_stages: int, shortlist: tuple | None, on: str,
                  fraction: float, seed: int, device: str | None, grid_size: int, *, progress=None) -> pd.DataFrame:
        from .curves import pareto_front

        ids = self.bank.models_for(split)
        if len(ids) < 2:
            raise UsageError(f"split {split!r} has logits for {len(ids)} model(s); a cascade needs at least 2")
        chosen = (list(shortlist) if shortlist else ids) if max_stages >= 3 else []
        if max_stages >= 3 and len(chosen) < 3:
            raise UsageError(f"shortlist: 3-model cascades need a shortlist of at least 3 models, got "
                             f"{', '.join(chosen)}", parameter="shortlist")
        # one count over both searches: the pair search's first models, then the 3-model chains
        n_chains = len(chosen) * (len(chosen) - 1) * (len(chosen) - 2) // 6
        total = len(ids) + n_chains
        pair_progress = None if progress is None else (lambda done, _n: progress(done, total))
        chain_progress = None if progress is None else (lambda done, _n: progress(len(ids) + done, total))
        signals = {m: self._chain_part(split, (m,), criterion, (1.0,), False, on, fraction, seed)[0] for m in ids}
        gmacs, ms_list = self._costs(ids, device)
        gmacs_map = dict(zip(ids, gmacs))
        ms_map = None if ms_list is None else dict(zip(ids, ms_list))
        frames = [search.pair_frontier(signals, gmacs_map, ms_map, progress=pair_progress)]
        if max_stages >= 3:
            frames.append(search.three_model_frontier(signals, gmacs_map, chosen, ms=ms_map, grid_size=grid_size,
                                                      progress=chain_progress))
        import pandas as pd

        frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) \
            else frames[0]
        if len(frames) > 1 and len(frame):
            keep = pareto_front(frame["avg_gmacs"].to_numpy(dtype=float), frame["accuracy"].to_numpy(dtype=float))
            frame = frame.iloc[np.asarray(keep)].reset_index(drop=True)
        return frame

    # -- public methods (checked arguments; the module-level functions call these)

    def _prepare(self, spec: CascadeSpec, split, *, need_thresholds: bool) -> str:
        split = resolve_split(self.bank, split)
        check_spec(self.bank, spec, split, need_thresholds=need_thresholds)
        return split

    def model_signals(self, model_id: str, split=None, criterion: str = "max_softmax",
                      temperature: float = 1.0) -> ModelSignals:
        """ModelSignals (confidence float64 (N,), prediction int32 (N,), correct bool (N,)) of one model
        on every sample of `split` (default: the bank's first), memoised.

        Raises UsageError for an unknown model, split or criterion; BankError for a damaged file.
        """
        from .criteria import check_temperature

        split = resolve_split(self.bank, split)
        self.bank.model(model_id)
        check_criterion(criterion)
        return self._signals(model_id, split, criterion, check_temperature(temperature))

    def temperatures(self, spec: CascadeSpec, *, split=None, calibration_fraction=0.5, seed=0) -> dict[str, float]:
        """Per-model temperatures of the spec (1.0 each for temperature='none'), fitted by NLL on the
        calibration part of `split` (Guo et al. 2017, "On Calibration of Modern Neural Networks")."""
        split = self._prepare(spec, split, need_thresholds=False)
        values = self._temperatures(spec.models, spec.temperature, split, *_fraction_seed(calibration_fraction, seed))
        return dict(zip(spec.models, values))

    def temperature_fits(self, spec: CascadeSpec, *, split=None, calibration_fraction=0.5,
                         seed=0) -> dict[str, TemperatureFit]:
        """Per-model core.temperature.TemperatureFit on the calibration part of `split` (whatever
        spec.temperature says): the NLL optimum over all T > 0 (never clipped), NLL and ECE before and
        after, and flags (at_bound, worse_than_uniform) with a message each."""
        split = self._prepare(spec, split, need_thresholds=False)
        fraction, seed = _fraction_seed(calibration_fraction, seed)
        return {m: self._temperature_fit(m, split, fraction, seed) for m in spec.models}

    def router(self, spec: CascadeSpec, *, split=None, on="all", calibration_fraction=0.5, seed=0) -> dict:
        """Router metrics (core.router_metrics.router_metrics: APGR, CPT@20/50/80, AUC of accuracy vs
        escalated share, oracle accuracy and cost) of a 2-model chain on the chosen part, exact over
        every threshold; the spec's thresholds are not used. UsageError for another chain length."""
        split = self._prepare(spec, split, need_thresholds=False)
        if len(spec.models) != 2:
            raise UsageError(f"models: router metrics are defined for 2-model cascades, got {len(spec.models)}",
                             parameter="models")
        fraction, seed = _fraction_seed(calibration_fraction, seed)
        temps = self._temperatures(spec.models, spec.temperature, split, fraction, seed)
        return dict(self._router(split, spec.models, spec.criterion, temps, spec.ensemble, _check_part(on),
                                 fraction, seed))

    def frontier_with_router(self, frame: pd.DataFrame, *, split=None, criterion="max_softmax", on="all",
                             calibration_fraction=0.5, seed=0) -> pd.DataFrame:
        """`frame` (a frontier of the same split, criterion and part) plus the router metrics of each
        2-model row's pair as columns ROUTER_COLUMNS (NaN for 3-model rows)."""
        pairs = sorted({tuple(models) for models in frame["models"] if len(models) == 2})
        table = self.router_table(split=split, criterion=criterion, on=on, calibration_fraction=calibration_fraction,
                                  seed=seed, pairs=pairs)
        return with_router_columns(frame, table)

    def router_table(self, *, split=None, criterion="max_softmax", on="all", calibration_fraction=0.5,
                     seed=0, pairs=None) -> pd.DataFrame:
        """Router metrics of every ordered pair of models with logits on `split`, cheaper first (no
        temperature), or only of `pairs` ((first, second) model ids): one row per pair, columns
        "first", "second" and router_metrics' keys."""
        split = resolve_split(self.bank, split)
        check_criterion(criterion)
        if len(self.bank.models_for(split)) < 2:
            raise UsageError(f"split: {split!r} has logits for fewer than 2 models; router metrics need a pair",
                             parameter="split")
        pairs = None if pairs is None else tuple(sorted({(str(a), str(b)) for a, b in check_sequence(pairs, "pairs")}))
        return self._router_table(split, criterion, _check_part(on), *_fraction_seed(calibration_fraction, seed),
                                  pairs).copy()

    def stage_signals(self, spec: CascadeSpec, *, split=None, on="all", calibration_fraction=0.5, seed=0,
                      temperature_split=None) -> list[ModelSignals]:
        """Signals of each stage of the chain on the chosen part of the split (one ModelSignals per
        stage, rows of the part in split order): the exit gallery's and histograms' input."""
        split = self._prepare(spec, split, need_thresholds=False)
        fraction, seed = _fraction_seed(calibration_fraction, seed)
        temps = self._temperatures(spec.models, spec.temperature, resolve_split(self.bank, temperature_split or split),
                                   fraction, seed)
        return list(self._chain_part(split, spec.models, spec.criterion, temps, spec.ensemble, _check_part(on),
                                     fraction, seed))

    def evaluate(self, spec: CascadeSpec, *, split=None, on="all", calibration_fraction=0.5, seed=0,
                 n_bootstrap=1000, device=None, temperature_split=None, bootstrap_draws="counts") -> Evaluation:
        """Metrics of one cascade with fixed thresholds on the chosen part of a split.

        Returns an Evaluation (a JSON-ready dict): accuracy (fraction in [0, 1]), avg_gmacs and
        worst_gmacs (GMACs per sample), avg_ms / worst_ms (ms per sample on `device`, None without
        latencies), exit_fractions (share answered at each stage), escalated_fraction (share reaching
        the last stage), 95% intervals (None each with n_bootstrap=0): accuracy_ci and
        escalated_fraction_ci exact (Clopper-Pearson), avg_gmacs_ci a percentile bootstrap of
        n_bootstrap resamples widened to contain the estimate (core.intervals); ci_methods names each
        method and ci_level the level. speedup (the single-model hull's cost at equal accuracy / the
        cascade's, Lebovitz et al. 2023; None when the cascade is more accurate than every single
        model), temperatures, n_samples. temperature_fits ({model: TemperatureFit.to_dict()} with
        temperature="fit", else {}) and temperature_warnings (one line per flagged fit: at a bound of
        the practical range, or no better than uniform). router_metrics (2-model cascades, else None):
        core.router_metrics.router_metrics on the same samples (APGR, CPT@20/50/80, AUC, oracle).
        `temperature_split` (default: `split`) is where temperatures are fitted (its calibration
        part); the shift analysis sets it to the source split. bootstrap_draws: "counts" (default: the
        bootstrap distribution drawn as counts per distinct cost, ~1 ms at N = 50,000) or "indices"
        (resamples of the sample indices, the textbook draw: ~1-2 s at N = 50,000; the same
        distribution, other Monte Carlo noise; see intervals.bootstrap_mean_interval).

        Raises UsageError for an unknown split/model, models out of cost order, a wrong number of
        thresholds, an empty part; BankError for a damaged bank file.
        """
        split = self._prepare(spec, split, need_thresholds=True)
        on, (fraction, seed) = _check_part(on), _fraction_seed(calibration_fraction, seed)
        n_bootstrap = check_int(n_bootstrap, "n_bootstrap", minimum=0)
        temperature_split = resolve_split(self.bank, temperature_split or split)
        if bootstrap_draws not in intervals.BOOTSTRAP_DRAWS:
            raise UsageError(f"bootstrap_draws must be one of {', '.join(intervals.BOOTSTRAP_DRAWS)}, got "
                             f"{bootstrap_draws!r}", parameter="bootstrap_draws")
        return self._evaluation(spec, split, on, fraction, seed, n_bootstrap, device, temperature_split,
                                bootstrap_draws).copy()

    def fit_for_target_detailed(self, spec: CascadeSpec, *, target_accuracy=None, max_gmacs=None,
                                max_escalated=None, max_accuracy_drop=None, split=None, calibration_fraction=0.5,
                                seed=0, grid_size=64) -> protocol.ThresholdFit:
        """Thresholds meeting exactly one target on the calibration part, with the calibration metrics
        there (a protocol.ThresholdFit). See `fit_for_target`."""
        split = self._prepare(spec, split, need_thresholds=False)
        if len(spec.models) < 2:
            raise UsageError("models: fitting thresholds needs a cascade of at least 2 models", parameter="models")
        fraction, seed = _fraction_seed(calibration_fraction, seed)
        temps = self._temperatures(spec.models, spec.temperature, split, fraction, seed)
        drop = None
        if max_accuracy_drop is not None:
            if any(v is not None for v in (target_accuracy, max_gmacs, max_escalated)):
                raise UsageError("give exactly one target: target accuracy, accuracy drop, cost budget (max GMACs) "
                                 "or maximum escalated fraction")
            drop = check_fraction(max_accuracy_drop, "max_accuracy_drop")
            stages = self._chain_part(split, spec.models, spec.criterion, temps, spec.ensemble, "calibration",
                                      fraction, seed)
            # the drop is measured against the last stage on the same (calibration) samples
            target_accuracy = max(0.0, float(np.mean(stages[-1].correct)) - drop)
        kind, value = protocol.one_target(target_accuracy, max_gmacs, max_escalated)
        fit = self._fit(split, spec.models, spec.criterion, temps, spec.ensemble, fraction, seed, kind, value,
                        _check_grid(grid_size))
        return fit if drop is None else replace(fit, target={"max_accuracy_drop": drop})

    def fit_for_target(self, spec: CascadeSpec, *, target_accuracy=None, max_gmacs=None, max_escalated=None,
                       max_accuracy_drop=None, certify=None, split=None, calibration_fraction=0.5, seed=0,
                       grid_size=64) -> tuple[float, ...]:
        """Thresholds (one per non-final stage) meeting one target, fitted on the calibration part.

        Exactly one of: target_accuracy (fraction in [0, 1]: the cheapest thresholds reaching it),
        max_accuracy_drop (fraction: accuracy of the last model minus the cascade's, at most this),
        max_gmacs (GMACs per sample: the most accurate thresholds within it), max_escalated
        (fraction in [0, 1] reaching the last stage: the most accurate within it). 2-model chains
        are fitted on the exact curve over all thresholds, 3-model chains on a grid_size^2 grid
        of confidence quantiles. Raises UsageError when no thresholds meet the target (naming the
        best achievable value), or for zero or several targets.

        certify: None (plain fit: the target holds on the calibration samples, and on new data only
        about half the time), or delta in (0, 1): thresholds certified by Learn then Test so the
        target holds on new data from the same distribution with probability >= 1 - delta (see
        `certify`, which also returns the certificate). Raises NotCertifiedError (carrying the
        certificate, with the calibration size that would be needed) when nothing can be certified.
        """
        if certify is not None:
            certificate = self.certify(spec, delta=certify, target_accuracy=target_accuracy,
                                       max_accuracy_drop=max_accuracy_drop, max_escalated=max_escalated,
                                       max_gmacs=max_gmacs, split=split, calibration_fraction=calibration_fraction,
                                       seed=seed, grid_size=grid_size)
            if not certificate.certified:
                raise NotCertifiedError(certificate.message, certificate=certificate)
            return certificate.thresholds
        return self.fit_for_target_detailed(spec, target_accuracy=target_accuracy, max_gmacs=max_gmacs,
                                            max_escalated=max_escalated, max_accuracy_drop=max_accuracy_drop,
                                            split=split, calibration_fraction=calibration_fraction, seed=seed,
                                            grid_size=grid_size).thresholds

    def certify(self, spec: CascadeSpec, *, delta=0.05, target_accuracy=None, max_accuracy_drop=None,
                max_escalated=None, max_gmacs=None, split=None, calibration_fraction=0.5, seed=0,
                grid_size=64) -> Certificate:
        """Certified thresholds for one target, on the calibration part (core.certify.certify_thresholds:
        Learn then Test, Angelopoulos et al. 2021; Pareto Testing for 3+ models).

        delta in (0, 1): with probability >= 1 - delta over the draw of the calibration samples, the
        target holds in expectation on new data from their distribution. Exactly one target (as in
        `fit_for_target`). Temperatures (spec.temperature="fit") are fitted on the same calibration
        part; the guarantee treats them as fixed (they are fitted by a different loss and cannot
        choose thresholds). Returns the Certificate (certified or not: see its message and
        samples_needed); the metrics in it are on the calibration part. UsageError for bad arguments.
        """
        split = self._prepare(spec, split, need_thresholds=False)
        if len(spec.models) < 2:
            raise UsageError("models: certifying thresholds needs a cascade of at least 2 models",
                             parameter="models")
        fraction, seed = _fraction_seed(calibration_fraction, seed)
        delta = check_number(delta, "delta")
        if not 0.0 < delta < 1.0:
            raise UsageError(f"delta must be strictly between 0 and 1 (e.g. 0.05 for a 95% guarantee), got {delta:g}",
                             parameter="delta")
        targets = tuple(None if v is None else check_number(v, name) for name, v in
                        (("target_accuracy", target_accuracy), ("max_accuracy_drop", max_accuracy_drop),
                         ("max_escalated", max_escalated), ("max_gmacs", max_gmacs)))
        temps = self._temperatures(spec.models, spec.temperature, split, fraction, seed)
        return self._certificate(split, spec.models, spec.criterion, temps, spec.ensemble, fraction, seed, targets,
                                 delta, _check_grid(grid_size))

    @_memo
    def _certificate(self, split: str, models: tuple, criterion: str, temperatures: tuple, ensemble: bool,
                     fraction: float, seed: int, targets: tuple, delta: float, grid_size: int) -> Certificate:
        stages = self._chain_part(split, models, criterion, temperatures, ensemble, "calibration", fraction, seed)
        gmacs, _ = self._costs(models, None)
        target_accuracy, max_accuracy_drop, max_escalated, max_gmacs = targets
        return certify_thresholds(list(stages), gmacs, target_accuracy=target_accuracy,
                                  max_accuracy_drop=max_accuracy_drop, max_escalated=max_escalated,
                                  max_gmacs=max_gmacs, delta=delta, grid_size=grid_size, seed=seed)

    def target_range(self, spec: CascadeSpec, *, split=None, calibration_fraction=0.5, seed=0,
                     grid_size=64) -> dict[str, tuple[float, float]]:
        """What the chain can meet where thresholds are fitted (the calibration part): the (lowest,
        highest) accuracy, avg_gmacs (GMACs per sample) and escalated_fraction over its thresholds.
        A target accuracy above the high end, or a budget below the low end, is out of reach."""
        split = self._prepare(spec, split, need_thresholds=False)
        if len(spec.models) < 2:
            raise UsageError("a target range needs a cascade of at least 2 models")
        fraction, seed = _fraction_seed(calibration_fraction, seed)
        temps = self._temperatures(spec.models, spec.temperature, split, fraction, seed)
        points = self._curve(split, spec.models, spec.criterion, temps, spec.ensemble, "calibration", fraction, seed,
                             _check_grid(grid_size), None)
        return {name: (float(values.min()), float(values.max())) for name, values in
                (("accuracy", points.accuracy), ("avg_gmacs", points.avg_gmacs),
                 ("escalated_fraction", points.escalated_fraction))}

    def curve(self, spec: CascadeSpec, *, split=None, on="all", calibration_fraction=0.5, seed=0, grid_size=64,
              device=None, temperature_split=None) -> CascadeCurve:
        """The chain's accuracy-cost curve over its thresholds: exact (every distinct threshold) for 2
        models, a grid_size^2 grid for 3 (core.curves.cascade_curve), on the chosen part."""
        split = self._prepare(spec, split, need_thresholds=False)
        if len(spec.models) < 2:
            raise UsageError("a curve needs a cascade of at least 2 models")
        fraction, seed = _fraction_seed(calibration_fraction, seed)
        temps = self._temperatures(spec.models, spec.temperature, resolve_split(self.bank, temperature_split or split),
                                   fraction, seed)
        return self._curve(split, spec.models, spec.criterion, temps, spec.ensemble, _check_part(on), fraction, seed,
                           _check_grid(grid_size), device)

    def single_models(self, split=None, *, on="all", calibration_fraction=0.5, seed=0, device=None) -> pd.DataFrame:
        """One row per model with logits on the split: id, display_name, backend, gmacs (per sample),
        params, ms (per sample on `device`, NaN without latency), accuracy (fraction), n_samples."""
        split = resolve_split(self.bank, split)
        if device is not None:
            self._costs([], device)   # checks the device name
        return self._singles(split, _check_part(on), *_fraction_seed(calibration_fraction, seed), device).copy()

    def hull(self, split=None, *, on="all", calibration_fraction=0.5, seed=0) -> SingleModelHull:
        """The single-model hull (random switching between models: the upper-left convex hull of the
        single models' (GMACs, accuracy) points) on the chosen samples."""
        return self._hull(resolve_split(self.bank, split), _check_part(on), *_fraction_seed(calibration_fraction, seed))

    def frontier(self, *, split=None, criterion="max_softmax", max_stages=2, shortlist=None, on="all",
                 calibration_fraction=0.5, seed=0, device=None, grid_size=64,
                 progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """The global best-cascade frontier (Pareto-optimal in accuracy vs average GMACs) over all ordered
        pairs (cheaper first) and every threshold, plus 3-model chains over a shortlist when
        max_stages=3 (default shortlist: every model when the split has at most 8).

        Returns a DataFrame with FRONTIER_COLUMNS, cost ascending. Raises UsageError for fewer than
        2 models on the split, an unknown shortlist model, or max_stages=3 on a bigger bank without a
        shortlist.

        progress: None, or progress(done, total) called between steps (each first model of the pair
        search, then each 3-model chain: total = models + chains) while the frontier is computed (not
        when it is memoised already); it may raise errors.CancelledError to stop, and then nothing is
        memoised. The result does not depend on it.
        """
        split = resolve_split(self.bank, split)
        check_criterion(criterion)
        max_stages = check_int(max_stages, "max_stages", minimum=2, maximum=3)
        ids = self.bank.models_for(split)
        if shortlist is not None:
            shortlist = tuple(dict.fromkeys(str(m) for m in check_sequence(shortlist, "shortlist")))
            unknown = [m for m in shortlist if m not in ids]
            if unknown:
                raise UsageError(f"shortlist: unknown model {unknown[0]!r}: split {split!r} has (cheapest first): "
                                 f"{', '.join(ids)}", parameter="shortlist")
            shortlist = tuple(m for m in ids if m in shortlist)   # cheapest first
        elif max_stages == 3 and len(ids) > _MAX_DEFAULT_SHORTLIST:
            raise UsageError(f"shortlist: this split has {len(ids)} models: name at most a handful for 3-model "
                             f"cascades (choose from: {', '.join(ids)})", parameter="shortlist")
        if progress is not None and not callable(progress):
            raise UsageError(f"progress must be a callable progress(done, total) or None, got {progress!r}",
                             parameter="progress")
        return self._frontier(split, criterion, max_stages, shortlist, _check_part(on),
                              *_fraction_seed(calibration_fraction, seed), device, _check_grid(grid_size),
                              progress=progress).copy()

    def fill_signals(self, split=None, *, criterion="max_softmax",
                     progress: Callable[[int, int], None] | None = None) -> int:
        """Read (from the signal store, computing and storing what it lacks) every model's signals on
        `split` at temperature 1 and keep them memoised, one model at a time in `bank.models_for(split)`
        order: what every page needs first on a big bank. progress(done, total) is called before each
        model (done = models read so far) and once at the end; it may raise errors.CancelledError to
        stop between two models (the ones read stay stored). Returns the number of models read."""
        split = resolve_split(self.bank, split)
        check_criterion(criterion)
        ids = self.bank.models_for(split)
        for done, model_id in enumerate(ids):
            if progress is not None:
                progress(done, len(ids))
            self._signals(model_id, split, criterion, 1.0)
        if progress is not None:
            progress(len(ids), len(ids))
        return len(ids)

    def shift(self, spec: CascadeSpec, source_split, target_split, *, on="eval", target_accuracy=None,
              max_gmacs=None, max_escalated=None, max_accuracy_drop=None, calibration_fraction=0.5, seed=0,
              device=None, n_bootstrap=1000) -> dict:
        """Thresholds (given in the spec, or fitted for a target on the source's calibration part) and
        temperatures (fitted on the source's calibration part) applied unchanged to another split
        (the paper's distribution-shift experiment, section 5.4).

        Both sides use the same part (`on`); the part is decided per sample id, so a corrupted copy of
        the same images keeps the calibration images out of the target's held-out part too.
        Returns {"source": Evaluation, "target": Evaluation, "thresholds", "fitted", "delta", ...}.
        """
        source_split = resolve_split(self.bank, source_split)
        target_split = resolve_split(self.bank, target_split)
        fitted = None
        if any(v is not None for v in (target_accuracy, max_gmacs, max_escalated, max_accuracy_drop)):
            if spec.thresholds:
                raise UsageError("give either thresholds in the spec or a target (target_accuracy / max_gmacs / "
                                 "max_escalated) to fit them, not both")
            fit = self.fit_for_target_detailed(spec, target_accuracy=target_accuracy, max_gmacs=max_gmacs,
                                               max_escalated=max_escalated, max_accuracy_drop=max_accuracy_drop,
                                               split=source_split,
                                               calibration_fraction=calibration_fraction, seed=seed)
            spec = replace(spec, thresholds=fit.thresholds)
            fitted = fit.summary()
        common = dict(on=on, calibration_fraction=calibration_fraction, seed=seed, device=device,
                      n_bootstrap=n_bootstrap, temperature_split=source_split)
        source = self.evaluate(spec, split=source_split, **common)
        target = self.evaluate(spec, split=target_split, **common)
        delta = protocol.shift_delta(source, target)
        return {"models": list(spec.models), "criterion": spec.criterion, "thresholds": list(spec.thresholds),
                "temperatures": source["temperatures"], "source_split": source_split, "target_split": target_split,
                "on": on, "fitted": fitted, "source": source, "target": target, "delta": delta}


# --------------------------------------------------------------------------------------
# Module-level functions: the same operations on a bank (or a BankAnalysis to reuse)
# --------------------------------------------------------------------------------------

def _on_analysis(name: str):
    method = getattr(BankAnalysis, name)

    @functools.wraps(method)
    def function(bank, *args, **kwargs):
        return getattr(analysis_for(bank), name)(*args, **kwargs)

    function.__doc__ = (f"`BankAnalysis.{name}` on `bank` (a BankAnalysis, Bank, bank folder or None for the "
                        f"default bank).\n\n{method.__doc__}")
    return function


model_signals = _on_analysis("model_signals")
temperatures = _on_analysis("temperatures")
stage_signals = _on_analysis("stage_signals")
evaluate = _on_analysis("evaluate")
fit_for_target_detailed = _on_analysis("fit_for_target_detailed")
fit_for_target = _on_analysis("fit_for_target")
certify = _on_analysis("certify")
temperature_fits = _on_analysis("temperature_fits")
router = _on_analysis("router")
router_table = _on_analysis("router_table")
target_range = _on_analysis("target_range")
curve = _on_analysis("curve")
single_models = _on_analysis("single_models")
hull = _on_analysis("hull")
frontier = _on_analysis("frontier")
shift = _on_analysis("shift")


def frontier_records(frame: pd.DataFrame) -> list[dict]:
    """Frontier rows as plain JSON-ready dicts (models/thresholds/exit_fractions as lists)."""
    records = []
    for row in frame.to_dict(orient="records"):
        record = {column: row.get(column) for column in [*FRONTIER_COLUMNS, *ROUTER_COLUMNS] if column in row}
        record["models"] = list(row["models"])
        record["thresholds"] = [float(t) for t in row["thresholds"]]
        if "exit_fractions" in row:
            record["exit_fractions"] = [float(f) for f in row["exit_fractions"]]
        records.append(jsonable(record))
    return records

"""Access to banks and to core's analysis for the dashboard (no maths here).

Every number the pages show comes from ``cascade_explorer.core`` (mostly ``core.analysis``). This
module keeps one ``BankAnalysis`` per bank version in ``st.cache_resource`` (keyed on the bank's
manifest stamp, so a rewritten bank is re-read), calls it, and turns exceptions into messages for
the message page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cascade_explorer.core import analysis, curves, search
from cascade_explorer.core import bank as bank_mod
from cascade_explorer.dashboard import BANK_ENV   # set by `cascade-explorer dashboard --bank`

# The headline cascade may trail the best single model by at most this much accuracy (1 point).
HEADLINE_TOLERANCE = 0.01

EXTRA_ROOTS_ENV = "CASCADE_EXPLORER_BANKS"  # more folders to search for banks (os.pathsep separated)
N_BOOTSTRAP = 1000
TARGET_ARGS = {"accuracy": "target_accuracy", "gmacs": "max_gmacs", "escalated": "max_escalated",
               "drop": "max_accuracy_drop"}


# ----------------------------------------------------------------------------------------------- banks

@st.cache_data(ttl=30, show_spinner=False)
def _found_banks(roots: tuple[str, ...]) -> list[str]:
    return [str(p) for p in bank_mod.find_banks(*[Path(r) for r in roots])]


def start_bank() -> Path:
    """The bank the app opens first: --bank (via the environment) or the shipped default."""
    env = os.environ.get(BANK_ENV)
    return Path(env).expanduser().resolve() if env else Path(bank_mod.DEFAULT_BANK_PATH)


def bank_choices() -> dict[str, Path]:
    """Label -> path of every bank found (start bank first); labels are folder names, made unique."""
    start = start_bank()
    roots = [start.parent]
    roots += [r for r in os.environ.get(EXTRA_ROOTS_ENV, "").split(os.pathsep) if r]
    paths = [start] + [Path(p) for p in _found_banks(tuple(str(r) for r in roots))]
    seen: dict[Path, None] = {}
    for p in paths:
        seen.setdefault(Path(p).resolve(), None)
    out: dict[str, Path] = {}
    for p in seen:
        label = p.name
        if label in out:
            label = str(p)
        out[label] = p
    return out


def resolve_bank(key: str, choices: dict[str, Path]) -> tuple[str, Path]:
    """The (label, path) of the bank the URL names; unknown names fall back to the start bank."""
    if key in choices:
        return key, choices[key]
    for label, path in choices.items():
        if key and str(path) == key:
            return label, path
    label = next(iter(choices))
    return label, choices[label]


@st.cache_resource(show_spinner="Opening the bank...", max_entries=8)
def _open(path: str, stamp: tuple[int, int]) -> analysis.BankAnalysis:
    """One BankAnalysis per bank version, shared by every session: it holds the bank and every derived
    result (signals, curves, frontiers), so no per-sample array is pickled through st.cache_data."""
    # allow_incomplete: a bank whose precompute is still running (or stopped) is still worth exploring;
    # models without logits for a split are simply left out on that split.
    return analysis.BankAnalysis(bank_mod.Bank.open(path, allow_incomplete=True))


@dataclass(frozen=True)
class BankProblem:
    path: Path
    title: str
    detail: str


def open_bank(path: Path):
    """(Bank, None) or (None, BankProblem) — never raises for a missing, empty or corrupt bank."""
    path = Path(path)
    if not path.exists():
        return None, BankProblem(path, "No bank at this path", f"The folder {path} does not exist.")
    if not path.is_dir():
        return None, BankProblem(path, "Not a bank folder", f"{path} is a file; a bank is a folder with a manifest.json.")
    if not bank_mod.is_bank(path):
        return None, BankProblem(path, "The bank folder is empty or incomplete",
                                 f"{path} has no manifest.json, so it holds no bank (yet).")
    try:
        bank = _open(str(path), bank_mod.manifest_stamp(path)).bank
        if not bank.splits or not bank.models:
            return None, BankProblem(path, "The bank is empty",
                                     f"{bank_mod.manifest_path(path)} lists {len(bank.splits)} image sets and "
                                     f"{len(bank.models)} models; the dashboard needs at least one of each.")
        return bank, None
    except bank_mod.BankError as exc:
        return None, BankProblem(path, "The bank is damaged", str(exc))
    except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable JSON / arrays the validator did not name
        return None, BankProblem(path, "The bank could not be read", f"{type(exc).__name__}: {exc}")


def current_bank():
    """The bank app.py opened for this run (pages call this)."""
    return st.session_state["_bank"]


def key(bank) -> tuple[str, tuple[int, int]]:
    """(path, manifest stamp) of the bank: the key of its BankAnalysis."""
    return str(bank.path), bank.stamp


def _analysis(bank_key) -> analysis.BankAnalysis:
    return _open(*bank_key)


def _bank(bank_key):
    return _analysis(bank_key).bank


# -------------------------------------------------------------------------------------------- analysis
# Thin calls into the bank's BankAnalysis (memoised there); results are small or shared read-only.

def spec(models, criterion="max_softmax", thresholds=(), temperature="none", ensemble=False):
    return analysis.CascadeSpec(models=tuple(models), criterion=criterion, thresholds=tuple(float(t) for t in thresholds),
                                temperature=temperature, ensemble=bool(ensemble))


def single_models(bank_key, split) -> pd.DataFrame:
    return _analysis(bank_key).single_models(split)


def hull(bank_key, split, cost="gmacs"):
    """Single-model hull in the chosen cost unit (models without latency drop out of the ms hull)."""
    if cost == "gmacs":
        return _analysis(bank_key).hull(split)
    df = single_models(bank_key, split)
    df = df[df["ms"].notna()]
    if df.empty:
        return None
    return curves.single_model_hull(df["ms"].to_numpy(dtype=float), df["accuracy"].to_numpy(dtype=float))


def frontier(bank_key, split, criterion="max_softmax", max_stages=2, shortlist=()) -> pd.DataFrame:
    return _analysis(bank_key).frontier(split=split, criterion=criterion, max_stages=max_stages,
                                        shortlist=list(shortlist) or None)


def evaluate(bank_key, split, models, criterion, thresholds, temperature, ensemble, on="all") -> dict:
    """core.analysis.evaluate's metrics, plus 'result' (the CascadeResult) and 'stages' (stage signals).

    The cost interval's bootstrap is drawn as counts per distinct cost (the same distribution:
    ~1 ms instead of ~1 s at N = 50,000, what a slider move can afford; intervals.bootstrap_mean_interval)."""
    result = _analysis(bank_key).evaluate(spec(models, criterion, thresholds, temperature, ensemble), split=split,
                                          on=on, n_bootstrap=N_BOOTSTRAP, bootstrap_draws="counts")
    out = dict(result)
    out["result"], out["stages"], out["index"] = result.result, tuple(result.stages), result.index
    return out


def fit_for_target(bank_key, split, models, criterion, temperature, ensemble, target_kind, target_value):
    kwargs = {TARGET_ARGS[target_kind]: target_value}
    return tuple(float(t) for t in _analysis(bank_key).fit_for_target(
        spec(models, criterion, (), temperature, ensemble), split=split, **kwargs))


def certify(bank_key, split, models, criterion, temperature, ensemble, target_kind, target_value, delta):
    """core.analysis.certify: thresholds certified (Learn then Test) for the target with probability
    >= 1 - delta, on the calibration half; a core.certify.Certificate (certified or not)."""
    kwargs = {TARGET_ARGS[target_kind]: target_value}
    return _analysis(bank_key).certify(spec(models, criterion, (), temperature, ensemble), split=split,
                                       delta=float(delta), **kwargs)


def temperature_fits(bank_key, split, models) -> dict:
    """Per-model core.temperature.TemperatureFit on the calibration half of `split` (NLL/ECE before
    and after, flags)."""
    return _analysis(bank_key).temperature_fits(spec(models, temperature="fit"), split=split)


def router_table(bank_key, split, criterion="max_softmax", pairs=None) -> pd.DataFrame:
    """Router metrics (APGR, CPT, AUC, oracle) of every cheaper-first pair on every image of the split
    (or only of `pairs`: a big bank has 124,750 pairs of 500 models)."""
    return _analysis(bank_key).router_table(split=split, criterion=criterion, pairs=pairs)


def target_range(bank_key, split, models, criterion, temperature, ensemble) -> dict:
    return _analysis(bank_key).target_range(spec(models, criterion, (), temperature, ensemble), split=split)


def chain_curve(bank_key, split, models, criterion, temperature, ensemble, on="all", temperature_split=None):
    """The chain's accuracy-cost curve over its thresholds."""
    return _analysis(bank_key).curve(spec(models, criterion, (), temperature, ensemble), split=split, on=on,
                                     temperature_split=temperature_split)


def shift(bank_key, source, target, models, criterion, thresholds, temperature, ensemble, on,
          target_kind=None, target_value=None) -> dict:
    """core.analysis.shift: the same thresholds (given, or fitted on `source`) on both image sets."""
    kwargs = {} if target_kind is None else {TARGET_ARGS[target_kind]: target_value}
    out = _analysis(bank_key).shift(spec(models, criterion, thresholds, temperature, ensemble), source, target,
                                    on=on, n_bootstrap=N_BOOTSTRAP, **kwargs)
    return {k: (dict(v) if k in ("source", "target") else v) for k, v in out.items()}


def stage_signals(bank_key, split, models, criterion, temperature, ensemble, on="all"):
    return _analysis(bank_key).stage_signals(spec(models, criterion, (), temperature, ensemble), split=split, on=on)


def temperatures(bank_key, models, split=None) -> list[float]:
    """Per-model NLL temperatures fitted on the calibration half of `split` (what evaluate uses)."""
    fitted = _analysis(bank_key).temperatures(spec(models, temperature="fit"), split=split)
    return [float(fitted[m]) for m in models]


def headline(bank_key, split):
    """The Overview's best cascade (core.search.headline_cascade). None with fewer than 2 models."""
    singles = single_models(bank_key, split)
    if len(singles) < 2:
        return None
    df = frontier(bank_key, split)
    if df.empty:
        return None
    return search.headline_cascade(df, float(singles["accuracy"].max()), tolerance=HEADLINE_TOLERANCE)


def default_thresholds(bank_key, split, models, criterion) -> list[float]:
    """Starting thresholds for a new chain: each non-final stage's median confidence (half exit)."""
    stages = stage_signals(bank_key, split, tuple(models), criterion, "none", False)
    return [float(np.median(s.confidence)) for s in stages[:-1]]


def cascade_config(bank, split, models, criterion, thresholds, ensemble, ev: dict, certificate=None):
    """core.config.CascadeConfig of the cascade in view (what `predict` and the Live page load);
    `certificate` (a core.certify.Certificate of these thresholds) is embedded when given."""
    from cascade_explorer.core.config import CascadeConfig

    return CascadeConfig.from_report(bank, {**ev, "models": list(models), "criterion": criterion,
                                            "thresholds": list(thresholds), "ensemble": ensemble, "split": split},
                                     certificate=None if certificate is None else certificate.to_dict())


GALLERY_PX = 448   # longest side of a gallery card's picture


@st.cache_data(show_spinner=False, max_entries=256)
def plain_image(path: str) -> np.ndarray:
    """An image file for a gallery card: decoded by core.images.load_image (the formats and limits every
    decode has; st.image on the path would let Pillow open any format) and shrunk to GALLERY_PX."""
    from cascade_explorer.core.images import load_image, thumbnail

    return np.asarray(thumbnail(load_image(path), GALLERY_PX))


@st.cache_data(show_spinner=False, max_entries=256)
def transformed_image(path: str, transform: dict, sample_id: str) -> np.ndarray:
    """An image as the models of a transformed split (e.g. val-corrupted) saw it: the precompute
    path's decode + core.corruptions.apply_transform, same seed and sample id."""
    from cascade_explorer.core.corruptions import apply_transform
    from cascade_explorer.core.images import load_image

    return apply_transform(np.asarray(load_image(path)), transform, sample_id=sample_id)


def gallery_image_metadata(info) -> tuple[dict | None, dict | None, str | None]:
    """(image_source, transform, problem) of a split's manifest entry as the Exit gallery can use them.

    The bank validator leaves ``image_source`` and ``transform`` loosely checked; a malformed one (not
    an object, a url_base or sha256 map of the wrong type, a corruption without valid types, severity
    and seed) gives (None, None, "what is wrong") so the page can say so and show text-only cards.
    A well-formed entry gives (source dict, transform dict or None, None). Pure."""
    from cascade_explorer.core.corruptions import check_severity, check_types

    info = info if isinstance(info, dict) else {}
    source = info.get("image_source") or {}
    if not isinstance(source, dict):
        return None, None, f"image_source is a {type(source).__name__}, not an object"
    if source.get("url_base") is not None and not isinstance(source.get("url_base"), str):
        return None, None, "image_source.url_base is not a string"
    sha = source.get("sha256")
    if sha is not None and not (isinstance(sha, dict) and all(isinstance(v, str) for v in sha.values())):
        return None, None, "image_source.sha256 is not an object of file name -> hex digest"
    transform = info.get("transform") or None
    if transform is None:
        return source, None, None
    if not isinstance(transform, dict):
        return None, None, f"transform is a {type(transform).__name__}, not an object"
    if transform.get("kind") == "corruption":
        try:
            if isinstance(transform.get("types"), (str, bytes)) or not isinstance(transform.get("types"), list):
                raise ValueError("types must be a list of corruption names")
            check_types(transform["types"])
            check_severity(transform.get("severity"))
            if isinstance(transform.get("seed"), bool) or not isinstance(transform.get("seed"), int):
                raise ValueError(f"seed must be an integer, got {transform.get('seed')!r}")
        except (ValueError, TypeError) as error:   # UsageError is a ValueError
            return None, None, f"corruption transform is malformed ({error})"
    return source, transform, None

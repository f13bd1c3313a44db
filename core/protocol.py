"""Evaluation protocol: calibration/held-out split, threshold fitting for a target,
bootstrap intervals, and thresholds carried from one image set to another (shift).

Plain arrays in, plain results out. Thresholds and temperatures are fitted on the
calibration part only; metrics are reported on the held-out rest so they are not
optimistically biased by the fit.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from . import intervals
from .curves import CascadeCurve, SingleModelHull, cascade_curve, speedup_of
from .engine import CascadeResult, check_stages, evaluate_cascade
from .errors import UsageError
from .signals import ModelSignals
from .temperature import DEFAULT_N_BINS, TemperatureFit, TemperatureFitWarning, fit_temperature
from .validate import check_array, check_fraction, check_int, check_mask, check_number, check_sequence

# Relative slack when comparing an average cost with a budget: the average of float costs
# may differ from the "same" budget in the last bits.
_COST_RTOL = 1e-9


# --------------------------------------------------------------------------------------
# Calibration / held-out split
# --------------------------------------------------------------------------------------

def sample_uniforms(sample_ids: Sequence, seed: int = 0) -> np.ndarray:
    """A uniform number in [0, 1) per sample id, from a keyed hash of (seed, id).

    It depends on the id and the seed only, so a sample lands in the same part whatever the
    row order, whichever split it appears in (e.g. a corrupted copy of the same images) and
    whatever other samples are present.
    """
    sample_ids = check_sequence(sample_ids, "sample_ids")
    key = f"cascade-explorer/{check_int(seed, 'seed', minimum=0)}".encode()
    out = np.empty(len(sample_ids), dtype=np.float64)
    for i, sample_id in enumerate(sample_ids):
        digest = hashlib.blake2b(str(sample_id).encode("utf-8"), digest_size=8, key=key).digest()
        # 53 bits: exactly representable as a float64 in [0, 1).
        out[i] = (int.from_bytes(digest, "big") >> 11) / float(1 << 53)
    return out


def calibration_mask(sample_ids: Sequence, calibration_fraction: float = 0.5, seed: int = 0, *,
                     uniforms: np.ndarray | None = None) -> np.ndarray:
    """bool (N,): True = calibration part (fit thresholds/temperatures), False = held-out part.

    Each id joins the calibration part with probability `calibration_fraction`, decided by a
    hash of (seed, id): deterministic, seedable, independent of row order. uniforms: the ids'
    `sample_uniforms(sample_ids, seed)` when the caller keeps them (they cost a hash per sample).
    """
    fraction = check_number(calibration_fraction, "calibration_fraction")
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"calibration_fraction must be strictly between 0 and 1, got {calibration_fraction!r}")
    return (sample_uniforms(sample_ids, seed) if uniforms is None else uniforms) < fraction


def fit_temperatures_detailed(logits_list: Sequence[np.ndarray], labels: np.ndarray,
                              mask: np.ndarray | None = None, *, n_bins: int = DEFAULT_N_BINS) -> list[TemperatureFit]:
    """Per-model NLL temperature fit (core.temperature.fit_temperature) on the rows selected by
    `mask` (the calibration part), with NLL/ECE before and after and flags."""
    logits_list = check_sequence(logits_list, "logits_list") if not isinstance(logits_list, np.ndarray) \
        else list(logits_list)
    labels = check_array(labels, "labels", dtype=None)
    if mask is not None and not check_mask(mask, "mask", len(labels)).any():
        raise UsageError("the calibration part is empty: use a larger calibration fraction or another seed")
    return [fit_temperature(logits, labels, mask, n_bins=n_bins) for logits in logits_list]


def fit_temperatures(logits_list: Sequence[np.ndarray], labels: np.ndarray, mask: np.ndarray | None = None) -> list[float]:
    """Per-model temperature by NLL on the rows selected by `mask` (the calibration part).

    The optimum over all T > 0, not clipped; a flagged fit (outside the practical range, or no
    better than uniform prediction) also raises a TemperatureFitWarning with its message. Use
    `fit_temperatures_detailed` for the flags, NLL and ECE before and after."""
    fits = fit_temperatures_detailed(logits_list, labels, mask)
    for i, fit in enumerate(fits):
        for message in fit.messages:
            warnings.warn(f"model {i} of logits_list: {message}", TemperatureFitWarning, stacklevel=2)
    return [fit.temperature for fit in fits]


# --------------------------------------------------------------------------------------
# Threshold fitting for a target
# --------------------------------------------------------------------------------------

def one_target(target_accuracy, max_gmacs, max_escalated) -> tuple[str, float]:
    """The one target given, as (name, checked value): target_accuracy and max_escalated are
    fractions in [0, 1], max_gmacs a finite number >= 0."""
    given = [name for name, value in (("target_accuracy", target_accuracy), ("max_gmacs", max_gmacs),
                                      ("max_escalated", max_escalated)) if value is not None]
    if len(given) != 1:
        raise UsageError("give exactly one target: target accuracy, cost budget (max GMACs) or "
                         f"maximum escalated fraction (got {', '.join(given) or 'none'})")
    kind = given[0]
    if kind == "max_gmacs":
        return kind, check_number(max_gmacs, "max_gmacs", minimum=0.0)
    return kind, check_fraction(target_accuracy if kind == "target_accuracy" else max_escalated, kind)


def select_operating_point(accuracy, avg_gmacs, escalated, *, target_accuracy=None, max_gmacs=None,
                           max_escalated=None) -> int:
    """Index of the operating point meeting one target.

    - target_accuracy a: the cheapest point with accuracy >= a (ties: the more accurate);
    - max_gmacs c: the most accurate point with avg cost <= c (ties: the cheaper);
    - max_escalated e: the most accurate point whose share reaching the last stage is <= e
      (ties: the cheaper).
    Raises UsageError naming the best achievable value when no point qualifies.
    """
    kind, value = one_target(target_accuracy, max_gmacs, max_escalated)
    accuracy = check_array(accuracy, "accuracy")
    avg_gmacs = check_array(avg_gmacs, "avg_gmacs")
    escalated = check_array(escalated, "escalated")
    if not len(accuracy) == len(avg_gmacs) == len(escalated):
        raise UsageError("accuracy, avg_gmacs and escalated must have the same length (one entry per operating "
                         f"point), got {len(accuracy)}, {len(avg_gmacs)} and {len(escalated)}")
    if accuracy.size == 0:
        raise UsageError("no operating points to choose from")
    if kind == "target_accuracy":
        target = value
        ok = accuracy >= target - 1e-12
        if not ok.any():
            best = int(np.lexsort((avg_gmacs, -accuracy))[0])
            raise UsageError(f"no thresholds reach accuracy {target:.4f} on the calibration part; the best "
                             f"achievable is {accuracy[best]:.4f} at {avg_gmacs[best]:.4g} GMACs")
        candidates = np.flatnonzero(ok)
        order = np.lexsort((-accuracy[candidates], avg_gmacs[candidates]))
    elif kind == "max_gmacs":
        budget = value
        ok = avg_gmacs <= budget * (1 + _COST_RTOL) + 1e-15
        if not ok.any():
            cheapest = int(np.lexsort((-accuracy, avg_gmacs))[0])
            raise UsageError(f"no thresholds keep the average cost within {budget:.4g} GMACs; the cheapest "
                             f"achievable is {avg_gmacs[cheapest]:.4g} GMACs (accuracy {accuracy[cheapest]:.4f})")
        candidates = np.flatnonzero(ok)
        order = np.lexsort((avg_gmacs[candidates], -accuracy[candidates]))
    else:
        limit = value
        ok = escalated <= limit + 1e-12
        if not ok.any():
            least = int(np.argmin(escalated))
            raise UsageError(f"no thresholds keep the escalated fraction within {limit:.4g}; the smallest "
                             f"achievable is {escalated[least]:.4g}")
        candidates = np.flatnonzero(ok)
        order = np.lexsort((avg_gmacs[candidates], -accuracy[candidates]))
    return int(candidates[order[0]])


@dataclass(frozen=True)
class ThresholdFit:
    """Thresholds chosen for a target, with the calibration-part metrics at that point."""
    thresholds: tuple[float, ...]
    accuracy: float
    avg_gmacs: float
    exit_fractions: tuple[float, ...]
    target: dict

    def summary(self) -> dict:
        """What reports print of a fit: the target ({kind: value}) and the calibration-part metrics."""
        return {"target": dict(self.target), "calibration_accuracy": self.accuracy,
                "calibration_avg_gmacs": self.avg_gmacs}


def fit_thresholds_detailed(stages: list[ModelSignals], gmacs, *, target_accuracy=None, max_gmacs=None,
                            max_escalated=None, grid_size: int = 64, curve: CascadeCurve | None = None) -> ThresholdFit:
    """Like `fit_thresholds`, also returning the calibration metrics of the chosen point."""
    kind, value = one_target(target_accuracy, max_gmacs, max_escalated)
    stages = check_stages(stages)
    if len(stages) < 2:
        raise UsageError("a cascade needs at least 2 models to fit thresholds")
    if curve is not None and not isinstance(curve, CascadeCurve):
        raise UsageError(f"curve must be a CascadeCurve (from cascade_curve) or None, got {type(curve).__name__}")
    if curve is None:
        curve = cascade_curve(stages, gmacs, grid_size=grid_size)
    exit_fractions = np.asarray(curve.exit_fractions, dtype=np.float64)
    index = select_operating_point(curve.accuracy, curve.avg_gmacs, exit_fractions[:, -1],
                                   target_accuracy=target_accuracy, max_gmacs=max_gmacs,
                                   max_escalated=max_escalated)
    return ThresholdFit(
        thresholds=tuple(float(t) for t in np.atleast_1d(curve.thresholds[index])),
        accuracy=float(curve.accuracy[index]),
        avg_gmacs=float(curve.avg_gmacs[index]),
        exit_fractions=tuple(float(f) for f in exit_fractions[index]),
        target={kind: value},
    )


def fit_thresholds(stages: list[ModelSignals], gmacs, *, target_accuracy=None, max_gmacs=None,
                   max_escalated=None, grid_size: int = 64) -> tuple[float, ...]:
    """Thresholds (one per non-final stage) meeting one target on the given (calibration) signals.

    2 stages: exact over every distinct threshold; 3+: over the points of `cascade_curve`
    (quantile grid on the earlier thresholds, the last one exact). A threshold of +inf means
    "never exit at this stage".
    """
    return fit_thresholds_detailed(stages, gmacs, target_accuracy=target_accuracy, max_gmacs=max_gmacs,
                                   max_escalated=max_escalated, grid_size=grid_size).thresholds


# --------------------------------------------------------------------------------------
# Intervals (see intervals.py)
# --------------------------------------------------------------------------------------

def bootstrap_ci(correct, cost, n_bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Intervals of mean accuracy and mean cost at `level` (the name is historical).

    accuracy: exact Clopper-Pearson binomial interval (21 of 21 right gives [0.839, 1.0] at 95%, not
    [1, 1]); avg_gmacs: percentile bootstrap of the per-sample costs, widened to contain the mean
    (replicate b uses the b-th draw of `rng.integers(0, N, size=N)` from `np.random.default_rng(seed)`).
    Returns {"accuracy": (lo, hi), "avg_gmacs": (lo, hi), "methods": {"accuracy", "avg_gmacs"}}.
    intervals.cascade_intervals also gives the escalated share and the estimates.
    """
    ci = intervals.cascade_intervals(correct, cost, level=level, n_bootstrap=n_bootstrap, seed=seed)
    return {"accuracy": ci["accuracy_ci"], "avg_gmacs": ci["avg_gmacs_ci"],
            "methods": {"accuracy": ci["methods"]["accuracy"], "avg_gmacs": ci["methods"]["avg_gmacs"]}}


# --------------------------------------------------------------------------------------
# Shift: thresholds from one image set applied to another
# --------------------------------------------------------------------------------------

def apply_thresholds(stages: list[ModelSignals], thresholds, gmacs, ms=None, models=None) -> CascadeResult:
    """Evaluate fixed thresholds on another set of samples (just `evaluate_cascade`)."""
    return evaluate_cascade(stages, thresholds, gmacs, ms=ms, models=models)


def _speedup(result: CascadeResult, hull: SingleModelHull | None) -> float | None:
    return None if hull is None else speedup_of(result.avg_gmacs, result.accuracy, hull)


@dataclass
class ShiftReport:
    """The same thresholds on a source and a target image set, side by side."""
    thresholds: tuple[float, ...]
    source: CascadeResult
    target: CascadeResult
    speedup_source: float | None
    speedup_target: float | None

    def to_dict(self) -> dict:
        def side(result: CascadeResult, speedup):
            return {"accuracy": float(result.accuracy), "avg_gmacs": float(result.avg_gmacs),
                    "worst_gmacs": float(result.worst_gmacs),
                    "avg_ms": None if result.avg_ms is None else float(result.avg_ms),
                    "exit_fractions": [float(f) for f in result.exit_fractions],
                    "n_samples": int(result.n_samples), "speedup": speedup}

        source = side(self.source, self.speedup_source)
        target = side(self.target, self.speedup_target)
        return {"thresholds": [float(t) for t in self.thresholds], "source": source, "target": target,
                "delta": shift_delta(source, target)}


def shift_delta(source: dict, target: dict) -> dict:
    """target - source for accuracy, avg_gmacs, each exit fraction and speed-up (None when unknown).

    Both are dicts with those keys (e.g. ShiftReport sides, analysis.Evaluation) of the same cascade,
    so their exit_fractions have the same length."""
    keys = ("accuracy", "avg_gmacs", "exit_fractions", "speedup")
    for name, side in (("source", source), ("target", target)):
        if not isinstance(side, Mapping):
            raise UsageError(f"{name} must be a dict with keys {list(keys)}, got {type(side).__name__}")
        missing = [k for k in keys if k not in side]
        if missing:
            raise UsageError(f"{name} lacks key(s) {missing}; expected a dict with keys {list(keys)}")
    n_source, n_target = len(source["exit_fractions"]), len(target["exit_fractions"])
    if n_source != n_target:
        raise UsageError(f"source and target exit_fractions must have one entry per stage of the same cascade, "
                         f"got {n_source} and {n_target}")
    return {
        "accuracy": target["accuracy"] - source["accuracy"],
        "avg_gmacs": target["avg_gmacs"] - source["avg_gmacs"],
        "exit_fractions": [t - s for s, t in zip(source["exit_fractions"], target["exit_fractions"])],
        "speedup": (None if source["speedup"] is None or target["speedup"] is None
                    else target["speedup"] - source["speedup"]),
    }


def shift_report(stages_source: list[ModelSignals], stages_target: list[ModelSignals], thresholds, gmacs,
                 hull_source: SingleModelHull | None = None, hull_target: SingleModelHull | None = None,
                 *, ms=None, models=None) -> ShiftReport:
    """Apply the same thresholds on both sets; speed-ups are against each set's own single-model hull."""
    stages_source = check_stages(stages_source, "stages_source")
    stages_target = check_stages(stages_target, "stages_target")
    if len(stages_target) != len(stages_source):
        raise UsageError(f"stages_target has {len(stages_target)} stages but stages_source has "
                         f"{len(stages_source)}: the same cascade must run on both sets")
    for name, hull in (("hull_source", hull_source), ("hull_target", hull_target)):
        if hull is not None and not isinstance(hull, SingleModelHull):
            raise UsageError(f"{name} must be a SingleModelHull (from single_model_hull) or None, "
                             f"got {type(hull).__name__}")
    source = evaluate_cascade(stages_source, thresholds, gmacs, ms=ms, models=models)
    target = evaluate_cascade(stages_target, thresholds, gmacs, ms=ms, models=models)
    return ShiftReport(thresholds=source.thresholds, source=source, target=target,
                       speedup_source=_speedup(source, hull_source), speedup_target=_speedup(target, hull_target))

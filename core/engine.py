"""Evaluate one cascade: which stage each sample exits at, and what that costs.

Stage i (0-based) lets a sample exit when it is not the last stage and its confidence is >= the
threshold t_i (a confidence exactly at the threshold exits). Exiting at stage i costs every stage
up to and including i, because all earlier stages ran.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError
from .jsonsafe import json_float
from .signals import ModelSignals
from .validate import check_array, check_sequence


@dataclass
class CascadeResult:
    models: tuple
    thresholds: tuple
    accuracy: float
    avg_gmacs: float
    worst_gmacs: float
    avg_ms: float | None
    worst_ms: float | None
    exit_fractions: np.ndarray
    exit_stage: np.ndarray = field(repr=False)
    prediction: np.ndarray = field(repr=False)
    correct: np.ndarray = field(repr=False)
    cost_gmacs: np.ndarray = field(repr=False)
    n_samples: int = 0

    @property
    def escalated_fraction(self) -> float:
        """Fraction of samples that reached the last stage."""
        return float(self.exit_fractions[-1])

    def to_dict(self) -> dict:
        """JSON-ready summary without per-sample arrays (infinite thresholds as "inf"/"-inf")."""
        return {
            "models": list(self.models),
            "thresholds": [json_float(t) for t in self.thresholds],
            "accuracy": float(self.accuracy),
            "avg_gmacs": float(self.avg_gmacs),
            "worst_gmacs": float(self.worst_gmacs),
            "avg_ms": None if self.avg_ms is None else float(self.avg_ms),
            "worst_ms": None if self.worst_ms is None else float(self.worst_ms),
            "exit_fractions": [float(f) for f in self.exit_fractions],
            "escalated_fraction": self.escalated_fraction,
            "n_samples": int(self.n_samples),
        }


def check_thresholds(thresholds, n_stages: int) -> np.ndarray:
    """thresholds (a list/1-D array, one per stage except the last) as float64 (n_stages - 1,);
    +inf (never exit) and -inf (always exit) are allowed, NaN, strings and a bare number are not."""
    values = check_sequence(thresholds, "thresholds")
    for i, t in enumerate(values):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real):
            raise UsageError(f"thresholds[{i}] must be a number (or +-inf), got {t!r}")
        if math.isnan(t):
            raise UsageError(f"thresholds must be numbers (or +-inf), got NaN at thresholds[{i}]: {values}")
    if len(values) != n_stages - 1:
        raise UsageError(f"a cascade of {n_stages} stage(s) needs {n_stages - 1} threshold(s) "
                         f"(one per stage except the last), got {len(values)}")
    return np.array(values, dtype=np.float64).reshape(n_stages - 1)


def check_costs(costs, n_stages: int, name: str = "gmacs") -> np.ndarray:
    """One finite cost >= 0 per stage (a list or 1-D array; a bare number is refused) as float64."""
    values = check_sequence(costs, name)
    if len(values) != n_stages:
        raise UsageError(f"need one {name} value per stage ({n_stages}), got {len(values)}")
    if any(isinstance(v, (str, bytes, bool, np.bool_)) or v is None for v in values):
        raise UsageError(f"{name} must be numbers (one per stage), got {values}")
    array = check_array(values, name)
    if not np.isfinite(array).all() or (array < 0).any():
        raise UsageError(f"{name} must be finite and >= 0, got {array.tolist()}")
    return array


def check_stages(stages, name: str = "stages") -> list:
    """`stages` as a list of ModelSignals (one per stage), at least one."""
    stages = check_sequence(stages, name) if not isinstance(stages, np.ndarray) else stages.tolist()
    for i, stage in enumerate(stages):
        if not isinstance(stage, ModelSignals):
            raise UsageError(f"{name}[{i}] must be ModelSignals (see signals.model_signals), got "
                             f"{type(stage).__name__}")
    if not stages:
        raise UsageError("a cascade needs at least one stage")
    return stages


def exit_stages(confidences, thresholds) -> np.ndarray:
    """0-based exit stage of each sample: the first stage i < n-1 with confidence_i >= t_i, else n-1.

    t_i = +inf never exits and -inf always exits.

    confidences: (n, N) array or a list of n arrays of length N.
    """
    conf = [np.asarray(c, dtype=np.float64) for c in confidences]
    n_stages = len(conf)
    if n_stages == 0:
        raise UsageError("exit_stages needs at least one stage")
    lengths = {c.shape for c in conf}
    if len(lengths) != 1 or conf[0].ndim != 1:
        raise UsageError(f"every stage needs a 1-D confidence vector of the same length, got {sorted(lengths)}")
    t = check_thresholds(thresholds, n_stages)
    stage = np.full(conf[0].shape[0], n_stages - 1, dtype=np.int64)
    # Walk backwards so the earliest qualifying stage is written last and wins.
    for i in range(n_stages - 2, -1, -1):
        if t[i] == np.inf:   # +inf means "never exit here", even for a confidence of +inf
            continue
        stage[conf[i] >= t[i]] = i
    return stage


def evaluate_cascade(stages: list[ModelSignals], thresholds, gmacs, ms=None, models=None) -> CascadeResult:
    """Evaluate a cascade of n >= 1 stages (n=1: the model alone, no thresholds): Algorithm 1 of
    Lebovitz et al. 2023 (each sample exits at the first non-final stage whose confidence >= that
    stage's threshold, else at the last stage), vectorised over samples.

    stages: n ModelSignals over the same N samples (confidence (N,), correct (N,)). thresholds: n-1
    numbers (+inf never exits, -inf always exits). gmacs / ms: the cost of running each stage, in
    GMACs / milliseconds per sample; a sample exiting at stage k pays the sum of stages 0..k.
    Returns a CascadeResult: accuracy (fraction), avg_gmacs / worst_gmacs (per sample), avg_ms,
    exit_fractions (n,), and per-sample exit_stage, correct and cost_gmacs.
    Raises UsageError for mismatched lengths, a wrong number of thresholds, NaN, negative costs.
    """
    stages = check_stages(stages)
    n_stages = len(stages)
    n = len(stages[0].confidence)
    if any(len(s.confidence) != n for s in stages):
        raise UsageError(f"all stages must cover the same samples, got lengths {[len(s.confidence) for s in stages]}")
    if n == 0:
        raise UsageError("cannot evaluate a cascade on 0 samples")
    t = check_thresholds(thresholds, n_stages)
    g = check_costs(gmacs, n_stages, "gmacs")
    ms_values = None if ms is None else check_costs(ms, n_stages, "ms")
    if models is None:
        models = tuple(f"stage{i}" for i in range(n_stages))
    models = tuple(check_sequence(models, "models"))
    if len(models) != n_stages:
        raise UsageError(f"got {len(models)} model names for {n_stages} stages")

    exit_stage = exit_stages([s.confidence for s in stages], t)
    rows = np.arange(n)
    prediction = np.stack([s.prediction for s in stages])[exit_stage, rows]
    correct = np.stack([s.correct for s in stages])[exit_stage, rows]
    cum_gmacs = np.cumsum(g)
    cost = cum_gmacs[exit_stage]
    counts = np.bincount(exit_stage, minlength=n_stages)
    avg_ms = worst_ms = None
    if ms_values is not None:
        cum_ms = np.cumsum(ms_values)
        avg_ms = float(counts @ cum_ms / n)
        worst_ms = float(cum_ms[-1])
    return CascadeResult(
        models=models, thresholds=tuple(float(x) for x in t),
        accuracy=float(np.count_nonzero(correct) / n),
        avg_gmacs=float(counts @ cum_gmacs / n),
        worst_gmacs=float(cum_gmacs[-1]),   # a single input may have to run every stage
        avg_ms=avg_ms, worst_ms=worst_ms,
        exit_fractions=counts / n, exit_stage=exit_stage, prediction=prediction,
        correct=correct, cost_gmacs=cost, n_samples=n)

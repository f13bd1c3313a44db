"""Accuracy-cost curves of cascades, Pareto frontiers, the single-model hull and speed-ups.

For a 2-stage cascade the curve is exact: every distinct confidence of stage 0 is a threshold
(plus +inf, "never exit"), evaluated with one sort and cumulative sums instead of a grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import math

import numpy as np

from .engine import check_costs, check_stages
from .errors import UsageError
from .signals import ModelSignals, check_correct
from .validate import check_array, check_bool, check_int


@dataclass
class CascadeCurve:
    """One point per threshold setting, thresholds ascending within each block (cost ascending for n=2)."""

    thresholds: np.ndarray        # (P, n-1)
    accuracy: np.ndarray          # (P,)
    avg_gmacs: np.ndarray         # (P,)
    avg_ms: np.ndarray | None     # (P,) or None
    exit_fractions: np.ndarray    # (P, n)

    def __len__(self) -> int:
        return len(self.accuracy)

    @property
    def escalated_fraction(self) -> np.ndarray:
        """Fraction of samples reaching the last stage, per point."""
        return self.exit_fractions[:, -1]

    def take(self, index) -> "CascadeCurve":
        """The curve restricted to the given points (indices or mask)."""
        return CascadeCurve(self.thresholds[index], self.accuracy[index], self.avg_gmacs[index],
                            None if self.avg_ms is None else self.avg_ms[index], self.exit_fractions[index])

    def pareto(self) -> "CascadeCurve":
        """Only the non-dominated points (lower cost, higher accuracy), cost ascending."""
        return self.take(pareto_front(self.avg_gmacs, self.accuracy))


def exact_threshold_sweep(confidence, correct_exit, correct_next, order=None):
    """Every distinct threshold on one stage, by one sort and cumulative sums.

    Returns (thresholds, n_exit, n_correct), thresholds ascending and ending with +inf; at threshold
    t the samples with confidence >= t exit (correct_exit counts) and the rest go on (correct_next).
    order: indices sorting `confidence` descending, when the caller already has them.
    """
    conf = check_array(confidence, "confidence")
    if np.isnan(conf).any():
        raise UsageError("confidence must not contain NaN (a NaN is no threshold): fix or drop those samples")
    m = len(conf)
    correct_exit = check_correct(correct_exit, "correct_exit", length=m)
    correct_next = check_correct(correct_next, "correct_next", length=m)
    if order is not None:
        order = np.asarray(order)
        if order.shape != (m,) or (m and order.dtype.kind not in "iu"):
            raise UsageError(f"order must hold {m} integer indices (a permutation sorting confidence "
                             f"descending), got shape {order.shape} and dtype {order.dtype}")
    return _sweep(conf, correct_exit, correct_next, order)


def _sweep(conf: np.ndarray, correct_exit: np.ndarray, correct_next: np.ndarray, order=None):
    """exact_threshold_sweep on checked inputs (float64 confidences, bool correctness of equal length)."""
    m = len(conf)
    if order is None:
        order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    # last index of each run of equal confidences: a threshold there lets the whole run exit
    ends = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True)) if m else np.empty(0, int)
    n_exit = np.concatenate([[0], ends + 1])
    cum_exit = np.concatenate([[0], np.cumsum(np.asarray(correct_exit, dtype=bool)[order], dtype=np.int64)])
    cum_next = np.concatenate([[0], np.cumsum(np.asarray(correct_next, dtype=bool)[order], dtype=np.int64)])
    n_correct = cum_exit[n_exit] + (cum_next[-1] - cum_next[n_exit])
    thresholds = np.concatenate([[np.inf], finite_threshold(sorted_conf[ends])])
    return thresholds[::-1], n_exit[::-1], n_correct[::-1]


def finite_threshold(values: np.ndarray) -> np.ndarray:
    """Confidences as thresholds: +inf (a threshold that never exits) becomes the largest float,
    which lets exactly the +inf confidences exit."""
    return np.where(values == np.inf, np.finfo(np.float64).max, values)


def _grid(conf: np.ndarray, size: int) -> np.ndarray:
    """Thresholds at quantiles of the confidences (real confidence values), plus +inf."""
    if size <= 1 or len(conf) == 0:
        return np.array([np.inf])
    levels = np.quantile(conf, np.linspace(0.0, 1.0, size), method="lower")
    return np.concatenate([np.unique(levels), [np.inf]])


def cascade_curve(stages: list[ModelSignals], gmacs, ms=None, grid_size: int = 64, *,
                  pareto_only: bool = False) -> CascadeCurve:
    """Accuracy-cost points of one model sequence over its thresholds (the paper's per-cascade curve).

    stages: ModelSignals of each stage (same N samples); gmacs / ms: per-stage cost per sample.
    Returns a CascadeCurve: thresholds (points x n-1), accuracy (fraction), avg_gmacs (GMACs per
    sample), avg_ms, escalated_fraction and exit_fractions per point. Raises UsageError for
    mismatched stages or costs.

    n=1: the single point of the model alone. n=2: every distinct confidence of stage 0 plus +inf
    (exact). n>=3: the earlier thresholds on a quantile grid (about grid_size combinations in all,
    each with +inf), the last free threshold exact. pareto_only keeps only each block's
    non-dominated points (much smaller for n>=3).
    """
    stages = check_stages(stages)
    n_stages = len(stages)
    grid_size = check_int(grid_size, "grid_size", minimum=1)
    pareto_only = check_bool(pareto_only, "pareto_only")
    n = len(stages[0].confidence)
    if n == 0 or any(len(s.confidence) != n for s in stages):
        raise UsageError(f"all stages must cover the same non-empty set of samples, got lengths "
                         f"{[len(s.confidence) for s in stages]}")
    g = check_costs(gmacs, n_stages, "gmacs")
    ms_values = None if ms is None else check_costs(ms, n_stages, "ms")

    if n_stages == 1:
        fractions = np.ones((1, 1))
        return CascadeCurve(np.zeros((1, 0)), np.array([stages[0].correct.mean()]), g[:1].copy(),
                            None if ms_values is None else ms_values[:1].copy(), fractions)

    per_stage = max(2, int(round(grid_size ** (1.0 / (n_stages - 2))))) if n_stages > 2 else 1
    grids = [_grid(stages[i].confidence, per_stage) for i in range(n_stages - 2)]
    last_free = n_stages - 2
    # sort the last free stage once; each block's subset keeps that order (no re-sort per block)
    order_last = np.argsort(-stages[last_free].confidence, kind="stable")
    cum_cost = np.cumsum(g)
    blocks = []
    for early in product(*grids):
        remaining = np.ones(n, dtype=bool)
        counts = np.zeros(n_stages, dtype=np.int64)
        early_correct = 0
        for i, t in enumerate(early):
            exits = remaining & (stages[i].confidence >= t)
            counts[i] = np.count_nonzero(exits)
            early_correct += np.count_nonzero(exits & stages[i].correct)
            remaining &= ~exits
        subset = order_last[remaining[order_last]] if early else order_last
        thresholds, n_exit, n_correct = _sweep(
            stages[last_free].confidence[subset], stages[last_free].correct[subset],
            stages[-1].correct[subset], order=np.arange(len(subset)))
        fractions = np.empty((len(thresholds), n_stages))
        fractions[:, :last_free] = counts[:last_free] / n
        fractions[:, last_free] = n_exit / n
        fractions[:, -1] = (np.count_nonzero(remaining) - n_exit) / n
        block = CascadeCurve(
            thresholds=np.column_stack([np.tile(np.asarray(early, dtype=np.float64), (len(thresholds), 1)),
                                        thresholds]) if early else thresholds[:, None],
            accuracy=(early_correct + n_correct) / n,
            avg_gmacs=fractions @ cum_cost,
            avg_ms=None if ms_values is None else fractions @ np.cumsum(ms_values),
            exit_fractions=fractions)
        if pareto_only:
            if g[-1] > 0:
                # cost rises strictly with the threshold here: Pareto = beats every cheaper point
                best_before = np.maximum.accumulate(block.accuracy)
                keep = np.concatenate([[True], block.accuracy[1:] > best_before[:-1]])
                block = block.take(keep)
            else:
                block = block.pareto()
        blocks.append(block)
    if len(blocks) == 1:
        return blocks[0]
    return CascadeCurve(
        np.concatenate([b.thresholds for b in blocks]), np.concatenate([b.accuracy for b in blocks]),
        np.concatenate([b.avg_gmacs for b in blocks]),
        None if ms_values is None else np.concatenate([b.avg_ms for b in blocks]),
        np.concatenate([b.exit_fractions for b in blocks]))


# Costs closer than this (relative) count as equal: the same expected cost summed along two
# cascades (0 + 5/18 * 3 against 0.5 + 2/18 * 3) can differ in the last bit, and the less accurate
# point must not stay on a frontier for being one rounding error cheaper.
COST_TIE_RTOL = 1e-12


def pareto_front(cost, accuracy) -> np.ndarray:
    """Indices of the non-dominated points (no other point is at most as costly and at least as
    accurate, one of them strictly; costs within COST_TIE_RTOL count as equal), sorted by cost; of
    exact duplicates the first is kept; NaNs dropped."""
    cost = np.asarray(cost, dtype=np.float64).reshape(-1)
    accuracy = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    if cost.shape != accuracy.shape:
        raise UsageError(f"cost and accuracy must have the same length, got {cost.shape} and {accuracy.shape}")
    valid = np.flatnonzero(~(np.isnan(cost) | np.isnan(accuracy)))
    if len(valid) == 0:
        return np.empty(0, dtype=np.int64)
    # cost ascending, then accuracy descending, then original index (stable)
    order = valid[np.lexsort((-accuracy[valid], cost[valid]))]
    acc_sorted = accuracy[order]
    best_before = np.maximum.accumulate(acc_sorted)
    keep = np.empty(len(order), dtype=bool)
    keep[0] = True
    keep[1:] = acc_sorted[1:] > best_before[:-1]
    front = order[keep]
    # the exact front has accuracy rising with cost: a point whose next one is no dearer within the
    # tolerance is dominated (one pass suffices: later neighbours are dearer still)
    front_cost = cost[front]
    tied = np.zeros(len(front), dtype=bool)
    tied[:-1] = front_cost[1:] - front_cost[:-1] <= COST_TIE_RTOL * np.abs(front_cost[1:])
    return front[~tied].astype(np.int64)


@dataclass
class SingleModelHull:
    """Upper concave hull of single models: what random switching between two models achieves."""

    costs: np.ndarray        # vertices, increasing
    accuracies: np.ndarray   # vertices, increasing

    def cost_at(self, accuracy) -> np.ndarray:
        """Cheapest cost reaching `accuracy`; the cheapest model's cost below it, nan above the best model."""
        acc = np.asarray(accuracy, dtype=np.float64)
        cost = np.interp(acc, self.accuracies, self.costs)
        return np.where(acc > self.accuracies[-1], np.nan, cost)

    def accuracy_at(self, cost) -> np.ndarray:
        """Best accuracy for a cost budget; nan below the cheapest model, the best model's above it."""
        cost = np.asarray(cost, dtype=np.float64)
        acc = np.interp(cost, self.costs, self.accuracies)
        return np.where(cost < self.costs[0], np.nan, acc)


def single_model_hull(costs, accuracies) -> SingleModelHull:
    """Upper concave hull of the (cost, accuracy) points, from the cheapest to the most accurate model."""
    costs = check_array(costs, "costs")
    accuracies = check_array(accuracies, "accuracies")
    if len(costs) == 0 or costs.shape != accuracies.shape:
        raise UsageError(f"need one accuracy per cost and at least one model, got {costs.shape} and {accuracies.shape}")
    if not (np.isfinite(costs).all() and np.isfinite(accuracies).all()):
        raise UsageError("single-model costs and accuracies must be finite")
    check_array(costs, "costs", minimum=0.0)
    check_array(accuracies, "accuracies", minimum=0.0, maximum=1.0)
    front = pareto_front(costs, accuracies)
    hull: list[int] = []
    for index in front:
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = ((costs[a] - costs[o]) * (accuracies[index] - accuracies[o])
                     - (accuracies[a] - accuracies[o]) * (costs[index] - costs[o]))
            if cross >= 0:   # a lies on or below the chord o -> index: switching beats it
                hull.pop()
            else:
                break
        hull.append(int(index))
    return SingleModelHull(costs[hull].copy(), accuracies[hull].copy())


def speedup_at_equal_accuracy(cascade_cost, cascade_accuracy, hull: SingleModelHull) -> np.ndarray:
    """hull.cost_at(accuracy) / cascade cost; nan where the accuracy exceeds the best single model.

    cascade_cost (>= 0) and cascade_accuracy (in [0, 1], NaN allowed) are numbers or arrays of the
    same shape."""
    if not isinstance(hull, SingleModelHull):
        raise UsageError(f"hull must be a SingleModelHull (from single_model_hull), got {type(hull).__name__}")
    cost = check_array(cascade_cost, "cascade_cost", ndim=np.ndim(cascade_cost))
    accuracy = check_array(cascade_accuracy, "cascade_accuracy", ndim=np.ndim(cascade_accuracy),
                           minimum=0.0, maximum=1.0)
    if cost.shape != accuracy.shape:
        raise UsageError(f"cascade_cost and cascade_accuracy must have the same shape (one cost per accuracy), "
                         f"got {cost.shape} and {accuracy.shape}")
    if np.isnan(cost).any() or (cost < 0).any():
        raise UsageError("cascade_cost must be >= 0 (and not NaN) for every cascade")
    with np.errstate(divide="ignore", invalid="ignore"):
        return hull.cost_at(accuracy) / cost


def speedup_of(cascade_cost: float, cascade_accuracy: float, hull: SingleModelHull) -> float | None:
    """The speed-up of one cascade (a plain float), or None where `speedup_at_equal_accuracy` gives NaN
    (the cascade is more accurate than every single model, so none matches it)."""
    value = float(np.asarray(speedup_at_equal_accuracy(np.asarray([cascade_cost], dtype=float),
                                                       np.asarray([cascade_accuracy], dtype=float), hull)).ravel()[0])
    return value if math.isfinite(value) else None

"""Search over cascades: all ordered pairs (exact curves) -> global frontier; 3-model chains; best for a target.

Pair search: for one first model its confidences are sorted once; the correctness of every
candidate second model is reordered and cumulatively summed as one (M x N) matrix, which gives
every pair's accuracy at every distinct threshold at once. Block maxima rule out most of each
pair's curve (no new record, or below the global frontier so far), an exact running maximum
finds the pair's Pareto points in the rest, and they are merged into the global frontier group by
group. Memory stays at a few (M x N) arrays of signals; logits are never needed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from .curves import cascade_curve, finite_threshold, pareto_front, single_model_hull, speedup_at_equal_accuracy
from .errors import UsageError
from .signals import ModelSignals
from .validate import check_bool, check_fraction, check_int, check_number, check_sequence

if TYPE_CHECKING:   # imported where a frame is built: `evaluate` alone needs no pandas
    import pandas as pd

BLOCK = 256      # positions per block in the pair search's block pruning
BOUND_BLOCK = 256    # positions per block in the pairs' upper bound (coarser: one cost lookup per block)
ROW_GROUP = 16   # second models handled (and merged into the frontier) together
COLUMNS = ["models", "thresholds", "accuracy", "avg_gmacs", "avg_ms", "escalated_fraction",
           "exit_fractions", "speedup"]


def _check_inputs(signals: dict, gmacs: dict, ms: dict | None, min_models: int) -> tuple[list[str], int]:
    """Once per search, before any work: signals {model_id: ModelSignals} of equal length, a finite
    cost >= 0 per model and (unless ms is None) a finite latency >= 0 per model."""
    if not isinstance(signals, Mapping) or len(signals) < min_models:
        raise UsageError(f"need signals of at least {min_models} models as a dict {{model_id: ModelSignals}}, "
                         f"got {len(signals) if isinstance(signals, Mapping) else type(signals).__name__}")
    ids = list(signals)
    for m in ids:
        if not isinstance(signals[m], ModelSignals):
            raise UsageError(f"signals[{m!r}] must be ModelSignals (see signals.model_signals), got "
                             f"{type(signals[m]).__name__}")
    lengths = {len(signals[m].confidence) for m in ids}
    if len(lengths) != 1:
        raise UsageError(f"every model's signals must cover the same samples, got lengths {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        raise UsageError("cannot search cascades on 0 samples")
    if not isinstance(gmacs, Mapping):
        raise UsageError(f"gmacs must be a dict {{model_id: GMACs}}, got {type(gmacs).__name__}")
    if ms is not None and not isinstance(ms, Mapping):
        raise UsageError(f"ms must be a dict {{model_id: milliseconds}} or None, got {type(ms).__name__}")
    costs = {}
    for m in ids:
        if m not in gmacs:
            raise UsageError(f"no gmacs for model {m!r}: pass a cost for every model")
        costs[m] = check_number(gmacs[m], f"gmacs[{m!r}]", minimum=0.0)
        if ms is not None:
            if m not in ms or ms[m] is None:
                raise UsageError(f"no finite latency (ms) for model {m!r}: pass ms for every model or ms=None")
            check_number(ms[m], f"ms[{m!r}]", minimum=0.0)
    return sorted(ids, key=lambda m: (costs[m], str(m))), n


def _hull(signals, gmacs, ids):
    return single_model_hull([float(gmacs[m]) for m in ids], [signals[m].correct.mean() for m in ids])


def _ticker(progress: Callable[[int, int], None] | None, total: int):
    """A thread-safe tick() for the pair search's threads: counts first models and calls
    progress(done, total) under a lock (so the hook never runs twice at once); None without a hook."""
    if progress is None:
        return None
    lock = threading.Lock()
    done = [0]

    def tick() -> None:
        with lock:
            progress(done[0], total)
            done[0] += 1
    return tick


def _frame(rows: dict) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["avg_gmacs", "accuracy"], ascending=[True, False], kind="stable").reset_index(drop=True)


def _pair_points(confidences: list[np.ndarray], correct: np.ndarray, costs: np.ndarray, per_pair: bool,
                 workers: int = 1, tick=None):
    """Pareto points of every ordered pair (see _pair_points_of); with workers > 1 the first models
    are cut into contiguous ranges of about equal work, each searched on its own thread (numpy
    releases the GIL in the gathers and sums) against its own running frontier, and the ranges'
    frontiers are merged in first-model order, which keeps the same points as one pass.

    For the global frontier, every range starts from the same seeds (see _seeds), which prune
    only what they beat strictly, so they change no result."""
    n_models = correct.shape[0]
    totals = correct.sum(axis=1, dtype=np.int64)
    both = seeds = None
    if not per_pair:
        both = _packed(correct)
        seeds = _seeds(confidences, correct, costs, totals, both)
    if workers <= 1 or n_models < 4:
        return _pair_points_of(confidences, correct, costs, per_pair, range(n_models), both, seeds, tick)
    lo = np.searchsorted(costs, costs, side="left")
    work = np.cumsum(n_models - lo)                    # second models searched per first model
    bounds = np.searchsorted(work, work[-1] * np.arange(1, workers) / workers)
    ranges = [range(a, b) for a, b in zip([0, *bounds], [*bounds, n_models]) if b > a]
    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        parts = list(pool.map(lambda r: _pair_points_of(confidences, correct, costs, per_pair, r, both, seeds, tick),
                              ranges))
    merged = [np.concatenate(arrays) for arrays in zip(*parts)]
    if per_pair or len(merged[0]) == 0:
        return merged
    n = correct.shape[1]
    merged_cost = costs[merged[0]] + (n - merged[2]) / n * costs[merged[1]]
    return [a[pareto_front(merged_cost, merged[4])] for a in merged]


def _seeds(confidences, correct, costs, totals, both) -> tuple[np.ndarray, np.ndarray]:
    """(cost ascending, best count so far) of points every range of the search may prune against
    strictly: the single models that are a pair's point (model m alone is the pair (m, j) with
    nothing escalated, for any j no cheaper than m) and the frontier of the pairs among those
    single models' own Pareto front (a small search whose points are real pair points).

    A point strictly beaten by one of these (no cheaper, fewer right) is never on the frontier; a
    point that ties one may be, as whichever pair the full search meets first, so ties are kept."""
    n_models = len(costs)
    has_partner = np.searchsorted(costs, costs, side="left") < n_models - 1
    index = np.flatnonzero(has_partner)
    front = np.sort(index[pareto_front(costs[index], totals[index])]) if len(index) else index
    cost, count = costs[front], totals[front]
    if len(front) >= 2:
        # the pairs of the single-model front, searched with the same code on their own
        sub = _pair_points_of([confidences[m] for m in front], correct[front], costs[front], False,
                              range(len(front)), both[front], None)
        n = correct.shape[1]
        pair_cost = costs[front][sub[0]] + (n - sub[2]) / n * costs[front][sub[1]]
        cost, count = np.concatenate([cost, pair_cost]), np.concatenate([count, sub[4]])
    order = np.lexsort((-count, cost))
    return cost[order], np.maximum.accumulate(count[order])


def _pair_points_of(confidences: list[np.ndarray], correct: np.ndarray, costs: np.ndarray, per_pair: bool,
                    first_models: range, both: np.ndarray | None = None, seeds: tuple | None = None,
                    tick=None):
    """Pareto points of every ordered pair (costs ascending, first not dearer than second) whose first
    model is in `first_models`.

    Returns parallel arrays (first, second, exits k, threshold, n_correct): every pair's own Pareto
    points if per_pair, else only the global frontier's points.

    Per first model: one argsort of its confidences; one gather + one flat cumulative sum of the
    candidate second models' correctness in that order (into reused buffers: fresh 10 MB arrays
    cost more in page faults than the arithmetic). Along a pair's row, position p (samples below
    p escalate) costs more as p grows, so p is on the pair's Pareto set iff its count beats every
    earlier position. Rows are cut into blocks: a block's maximum against the maximum of earlier
    blocks (and, for the global frontier, against the frontier value at the block's cheapest cost)
    rules out most blocks; the exact running maximum runs only inside the remaining blocks.
    """
    n_models, n = correct.shape
    totals = correct.sum(axis=1, dtype=np.int64)
    n_blocks = -(-(n + 1) // BLOCK)
    width_padded = n_blocks * BLOCK
    if n_models * width_padded >= 2**31:
        raise UsageError(f"pair search on {n_models} models x {n} samples overflows its int32 counters; "
                         "split the samples or the models")
    seed_cost, seed_correct = seeds if seeds is not None else (np.empty(0), np.empty(0, dtype=np.int64))
    # column 0 stays False so that column p holds the count over the first p sorted samples;
    # padding columns stay False (the flat cumulative sum passes through them unchanged)
    gathered = np.zeros((n_models, width_padded), dtype=bool)
    cumulative = np.empty((n_models, width_padded), dtype=np.int32)
    lowest = np.iinfo(np.int32).min
    empty = [np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64),
             np.empty(0), np.empty(0, dtype=np.int64)]
    kept, chunks = empty, []
    frontier_cost, frontier_correct = np.empty(0), np.empty(0, dtype=np.int64)
    for i in first_models:
        if tick is not None:
            tick()   # between first models: a progress hook may raise CancelledError here
        # candidate second models: every later model plus earlier ones of equal cost (both orders)
        lo = int(np.searchsorted(costs, costs[i], side="left"))
        if n_models - lo <= 1:
            continue
        conf = confidences[i]
        order = np.argsort(conf)                  # ascending; ties are grouped below, so no need for stability
        sorted_conf = conf[order]
        starts = np.flatnonzero(np.concatenate([[True], sorted_conf[1:] != sorted_conf[:-1]]))
        # threshold sorted_conf[p] (p a run start) lets samples p..n-1 exit; p = n means threshold +inf
        p = np.concatenate([starts, [n]])
        width = len(p)
        thresholds = np.concatenate([finite_threshold(sorted_conf[starts]), [np.inf]])
        first_cum_all = np.concatenate([[0], np.cumsum(correct[i, order], dtype=np.int64)])
        first_cum = first_cum_all[p].astype(np.int32)
        second_models = np.arange(lo, n_models)
        second_models = second_models[second_models != i]          # no pair of a model with itself
        if both is not None and not per_pair:
            second_models = _may_reach_frontier(i, second_models, p, first_cum_all, totals, both, costs,
                                                frontier_cost, frontier_correct, seed_cost, seed_correct)
        n_rows = len(second_models)
        if n_rows == 0:
            continue
        block = gathered[:n_rows]
        np.take(correct[second_models], order, axis=1, out=block[:, 1:n + 1])
        # one flat cumulative sum: row r is offset by the totals of rows before it (a per-row constant)
        np.cumsum(block.reshape(-1), dtype=np.int32, out=cumulative[:n_rows].reshape(-1))
        row_const = totals[i] - np.concatenate([[0], np.cumsum(totals[second_models], dtype=np.int64)[:-1]])
        if width == n + 1:
            values = cumulative[:n_rows]
        else:   # ties: only run starts are thresholds
            blocks_needed = -(-width // BLOCK)
            values = np.empty((n_rows, blocks_needed * BLOCK), dtype=np.int32)
            np.take(cumulative[:n_rows], p, axis=1, out=values[:, :width])
        # n_correct = shifted + row_const
        np.subtract(values[:, :width], first_cum[None, :], out=values[:, :width])
        values[:, width:] = lowest
        rows_blocks = values.reshape(n_rows, -1, BLOCK)
        block_max = rows_blocks.max(axis=2)                                   # (rows, blocks)
        before = np.full(block_max.shape, lowest, dtype=np.int32)
        np.maximum.accumulate(block_max[:, :-1], axis=1, out=before[:, 1:])
        live_all = block_max > before                                        # the block holds a new record
        start_p = p[np.minimum(np.arange(block_max.shape[1]) * BLOCK, width - 1)]
        # second models in groups, merging into the frontier after each, so that early groups prune
        # later ones and the candidate arrays stay small
        for g0 in range(0, n_rows, ROW_GROUP):
            g1 = min(g0 + ROW_GROUP, n_rows)
            live = live_all[g0:g1]
            if not per_pair and len(frontier_cost):
                # the frontier's best count at the block's cheapest cost must be beaten
                start_cost = costs[i] + start_p[None, :] / n * costs[second_models[g0:g1], None]
                floor = _floor(frontier_cost, frontier_correct, start_cost)
                live = live & (block_max[g0:g1].astype(np.int64) + row_const[g0:g1, None] > floor)
            live_rows, live_blocks = np.nonzero(live)
            if len(live_rows) == 0:
                continue
            live_rows += g0
            sub = rows_blocks[live_rows, live_blocks]                        # (live, BLOCK)
            prior = np.empty_like(sub)
            prior[:, 0] = lowest
            np.maximum.accumulate(sub[:, :-1], axis=1, out=prior[:, 1:])
            np.maximum(prior, before[live_rows, live_blocks][:, None], out=prior)
            hit_live, hit_col = np.nonzero(sub > prior)
            rows = live_rows[hit_live]
            cols = live_blocks[hit_live] * BLOCK + hit_col
            n_correct = sub[hit_live, hit_col].astype(np.int64) + row_const[rows]
            free = costs[second_models[rows]] == 0
            if free.any():
                # a free second model: every point of the row costs the same, keep its best (last record)
                last = np.append(rows[1:] != rows[:-1], True)
                keep = ~free | last
                rows, cols, n_correct = rows[keep], cols[keep], n_correct[keep]
            second = second_models[rows]
            chunk = [np.full(len(rows), i, dtype=np.int64), second, n - p[cols], thresholds[cols], n_correct]
            if per_pair:
                chunks.append(chunk)
                continue
            # merge into the global frontier: drop points a frontier point already dominates (no
            # dearer, at least as many correct), then re-run Pareto on the rest
            chunk_cost = costs[i] + p[cols] / n * costs[second]
            if len(frontier_cost):
                alive = n_correct > _floor(frontier_cost, frontier_correct, chunk_cost)   # counts are >= 0
                chunk = [a[alive] for a in chunk]
                chunk_cost = chunk_cost[alive]
                if len(chunk_cost) == 0:
                    continue
            merged = [np.concatenate([a, b]) for a, b in zip(kept, chunk)]
            merged_cost = np.concatenate([frontier_cost, chunk_cost])
            best = pareto_front(merged_cost, merged[4])
            kept = [a[best] for a in merged]
            frontier_cost, frontier_correct = merged_cost[best], kept[4]
    if per_pair:
        return [np.concatenate(parts) for parts in zip(*chunks)] if chunks else empty
    return kept


def _packed(correct: np.ndarray) -> np.ndarray:
    """(M, ceil(N / 64)) uint64: each model's correctness as bits, so that the samples two models both
    get right are one AND and a popcount per 64 samples (np.bitwise_count)."""
    n_models, n = correct.shape
    packed = np.zeros((n_models, -(-n // 64) * 8), dtype=np.uint8)
    packed[:, :-(-n // 8)] = np.packbits(correct, axis=1)
    return packed.view(np.uint64)


def _floor(frontier_cost: np.ndarray, frontier_correct: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """The most samples right of any frontier point no dearer than `cost` (-1 where there is none)."""
    if len(frontier_cost) == 0:
        return np.full(cost.shape, -1, dtype=np.int64)
    j = np.searchsorted(frontier_cost, cost.ravel(), side="right").reshape(cost.shape) - 1
    return np.where(j >= 0, frontier_correct[np.maximum(j, 0)], -1)


def _may_reach_frontier(i: int, second_models: np.ndarray, p: np.ndarray, first_cum: np.ndarray,
                        totals: np.ndarray, both: np.ndarray, costs: np.ndarray, frontier_cost: np.ndarray,
                        frontier_correct: np.ndarray, seed_cost: np.ndarray, seed_correct: np.ndarray) -> np.ndarray:
    """The second models whose pair with first model i may still add a point to the frontier so far.

    With the p least confident samples of model i escalated, the pair gets right
        a_p + (escalated samples model j gets right)
      <= a_p + min(c_p, both_ij) + min(w_p, C_j - both_ij)
    where a_p: i right among the samples kept, c_p / w_p: i right / wrong among those escalated,
    C_j: j right in all, both_ij: both right (j can be right on at most both_ij of the samples i gets
    right, and on at most C_j - both_ij of those i gets wrong). On a block of positions p0..p1 the
    bound is at most a_p0 + min(c_p1, both) + min(w_p1, C_j - both) (a_p falls, c_p and w_p grow
    with p), and every position costs at least the block's first. A pair whose bound never beats the
    frontier's best count at that cost adds nothing the exact search would keep (it keeps only
    points beating the frontier), so dropping it changes no result; the frontier only grows. The
    seeds (see _seeds) prune only what they beat strictly: those points are found by the search
    itself, but maybe later, and a tie must go to whichever pair the search meets first.
    """
    n = len(first_cum) - 1
    total_i = first_cum[-1]
    shared = np.bitwise_count(both[second_models] & both[i]).sum(axis=1, dtype=np.int64)
    only_second = totals[second_models] - shared
    # coarse blocks first (few cost lookups per pair), then fine blocks for the pairs still in: a
    # coarse block's bound is no lower and its floor no higher than those of the fine blocks inside it
    for block in (16 * BOUND_BLOCK, BOUND_BLOCK):
        starts = p[::block]                                    # first position of each block (of run starts)
        ends = np.append(p[block - 1::block], p[-1])[:len(starts)]
        kept_right = total_i - first_cum[starts]               # a_p0: (blocks,)
        esc_right = first_cum[ends]                            # c_p1
        esc_wrong = ends - esc_right                           # w_p1
        bound = (kept_right[None, :] + np.minimum(esc_right[None, :], shared[:, None])
                 + np.minimum(esc_wrong[None, :], only_second[:, None]))
        start_cost = costs[i] + starts[None, :] / n * costs[second_models, None]
        may = ((bound > _floor(frontier_cost, frontier_correct, start_cost))
               & (bound >= _floor(seed_cost, seed_correct, start_cost))).any(axis=1)
        second_models, shared, only_second = second_models[may], shared[may], only_second[may]
    return second_models


def pair_frontier(signals: dict[str, ModelSignals], gmacs: dict[str, float], ms: dict | None = None, *,
                  per_pair: bool = False, workers: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """The global frontier of all 2-model cascades (first model not more expensive than the second):
    the paper's Pareto front over all pairs (Lebovitz et al. 2023, section 5.1), exact.

    signals: {model id: ModelSignals} over the same N samples; gmacs / ms: {model id: cost per
    sample} in GMACs / ms (ms=None: no latency column values). Raises UsageError for fewer than 2
    models, mismatched lengths or bad costs.

    Each pair's curve is exact (every distinct confidence of the first model, plus +inf). Returns
    one row per frontier point, cost ascending, with COLUMNS. per_pair=True instead returns every
    pair's own Pareto points, with an extra boolean column "on_frontier" (for small banks: that is
    thousands of rows per pair at N=50,000). workers: threads searching at once (None = every core;
    the result does not depend on it). progress: None, or progress(done, total) called with the number
    of first models searched so far out of all of them (from the search threads, one call at a time);
    it may raise errors.CancelledError to stop the search (nothing is returned then). The result does
    not depend on it.
    """
    ids, n = _check_inputs(signals, gmacs, ms, 2)
    per_pair = check_bool(per_pair, "per_pair")
    workers = (os.cpu_count() or 1) if workers is None else check_int(workers, "workers", minimum=1)
    costs = np.array([float(gmacs[m]) for m in ids])
    latency = None if ms is None else np.array([float(ms[m]) for m in ids])
    first_idx, second_idx, k_all, t_all, correct_all = _pair_points(
        [signals[m].confidence for m in ids], np.stack([signals[m].correct for m in ids]), costs, per_pair, workers,
        _ticker(progress, len(ids)))
    if progress is not None:
        progress(len(ids), len(ids))
    inv_n = 1.0 / n
    exit_first = k_all * inv_n
    escalated = (n - k_all) * inv_n
    avg_gmacs = costs[first_idx] + escalated * costs[second_idx]
    accuracy = correct_all / n
    avg_ms = (latency[first_idx] + escalated * latency[second_idx]) if latency is not None else np.full(len(k_all), np.nan)
    speedup = speedup_at_equal_accuracy(avg_gmacs, accuracy, _hull(signals, gmacs, ids))
    rows = {
        "models": [(ids[a], ids[b]) for a, b in zip(first_idx, second_idx)],
        "thresholds": [(float(t),) for t in t_all],
        "accuracy": accuracy, "avg_gmacs": avg_gmacs,
        "avg_ms": avg_ms if latency is not None else [None] * len(k_all),
        "escalated_fraction": escalated,
        "exit_fractions": [(float(a), float(b)) for a, b in zip(exit_first, escalated)],
        "speedup": speedup,
    }
    frame = _frame(rows)
    if per_pair:
        on_front = np.zeros(len(frame), dtype=bool)
        on_front[pareto_front(frame["avg_gmacs"].to_numpy(), frame["accuracy"].to_numpy())] = True
        frame["on_frontier"] = on_front
    return frame


def three_model_frontier(signals: dict[str, ModelSignals], gmacs: dict[str, float], shortlist, ms: dict | None = None,
                         grid_size: int = 64, *, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Global frontier of all 3-model chains (cost order) over `shortlist`, same columns as pair_frontier.

    The first threshold runs on a quantile grid of grid_size values (+inf), the second is exact.
    progress: None, or progress(done, total) called before each chain with the chains searched so far
    out of C(len(shortlist), 3), and once at the end; it may raise errors.CancelledError to stop the
    search between two chains. The result does not depend on it.
    """
    grid_size = check_int(grid_size, "grid_size", minimum=1)
    all_ids, _ = _check_inputs(signals, gmacs, None, 1)
    shortlist = list(dict.fromkeys(check_sequence(shortlist, "shortlist")))
    unknown = [m for m in shortlist if m not in signals]
    if unknown:
        raise UsageError(f"shortlist names unknown model(s) {unknown}; known: {sorted(signals)}")
    if len(shortlist) < 3:
        raise UsageError(f"a 3-model search needs a shortlist of at least 3 distinct models, got {shortlist}")
    sub = {m: signals[m] for m in shortlist}
    ids, n = _check_inputs(sub, gmacs, ms, 3)
    chains = list(combinations(ids, 3))   # ids are cost-ordered, so each chain is cheapest first
    # Candidates from all chains so far, in chain order, pruned after each chain to the points no other
    # point strictly dominates: memory stays at about the frontier's size instead of every chain's
    # curve (1.3 GB for 120 chains at N = 50,000), and the final pareto_front sees every point it
    # could keep, in the same order, so the result is the one of a single pass over all points.
    kept = None
    for number, chain in enumerate(chains):
        if progress is not None:
            progress(number, len(chains))
        curve = cascade_curve([signals[m] for m in chain], [gmacs[m] for m in chain],
                              None if ms is None else [ms[m] for m in chain], grid_size, pareto_only=True)
        part = {"chain": np.full(len(curve), number), "thresholds": curve.thresholds, "accuracy": curve.accuracy,
                "avg_gmacs": curve.avg_gmacs, "exit_fractions": curve.exit_fractions,
                "avg_ms": np.full(len(curve), np.nan) if curve.avg_ms is None else curve.avg_ms}
        kept = part if kept is None else {k: np.concatenate([kept[k], part[k]]) for k in kept}
        alive = _not_strictly_dominated(kept["avg_gmacs"], kept["accuracy"])
        kept = {k: v[alive] for k, v in kept.items()}
    if progress is not None:
        progress(len(chains), len(chains))
    best = pareto_front(kept["avg_gmacs"], kept["accuracy"])
    cost, acc = kept["avg_gmacs"][best], kept["accuracy"][best]
    speedup = speedup_at_equal_accuracy(cost, acc, _hull(signals, gmacs, all_ids))
    rows = {
        "models": [chains[c] for c in kept["chain"][best]],
        "thresholds": [tuple(float(t) for t in row) for row in kept["thresholds"][best]],
        "accuracy": acc, "avg_gmacs": cost,
        "avg_ms": [None if ms is None else float(v) for v in kept["avg_ms"][best]],
        "escalated_fraction": [float(f) for f in kept["exit_fractions"][best, -1]],
        "exit_fractions": [tuple(float(f) for f in row) for row in kept["exit_fractions"][best]],
        "speedup": speedup,
    }
    return _frame(rows)


def _not_strictly_dominated(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Mask of the points no other point strictly dominates (no dearer and more accurate, or cheaper and
    as accurate). Exact duplicates all stay; NaN points are dropped. Strict dominance is transitive,
    so pruning with it never removes a point pareto_front would keep."""
    valid = ~(np.isnan(cost) | np.isnan(accuracy))
    index = np.flatnonzero(valid)
    order = index[np.lexsort((-accuracy[index], cost[index]))]   # cost ascending, accuracy descending
    acc_sorted, cost_sorted = accuracy[order], cost[order]
    best_before = np.maximum.accumulate(acc_sorted)
    # the cheapest earlier point reaching best_before: where the running maximum was first set
    new_record = np.concatenate([[True], acc_sorted[1:] > best_before[:-1]])
    record_at = np.maximum.accumulate(np.where(new_record, np.arange(len(order)), 0))
    prior_best = np.concatenate([[-np.inf], best_before[:-1]])
    prior_cost = np.concatenate([[np.inf], cost_sorted[record_at[:-1]]])
    dominated = (prior_best > acc_sorted) | ((prior_best == acc_sorted) & (prior_cost < cost_sorted))
    mask = np.zeros(len(cost), dtype=bool)
    mask[order[~dominated]] = True
    return mask


def _check_frame(frontier_df, columns: list[str], allow_bare_empty: bool = False) -> None:
    """frontier_df must be a DataFrame with `columns` (an empty frame with no columns at all passes
    when allow_bare_empty: there is nothing to choose from)."""
    import pandas as pd

    if not isinstance(frontier_df, pd.DataFrame):
        raise UsageError(f"frontier_df must be a pandas DataFrame (pair_frontier()'s output), "
                         f"got {type(frontier_df).__name__}")
    if allow_bare_empty and frontier_df.empty and len(frontier_df.columns) == 0:
        return
    missing = [c for c in columns if c not in frontier_df.columns]
    if missing:
        raise UsageError(f"frontier table lacks column(s) {missing}; pass pair_frontier()'s output")


def best_cascade(frontier_df: pd.DataFrame, *, target_accuracy: float | None = None, max_gmacs: float | None = None,
                 max_escalated: float | None = None) -> pd.Series | None:
    """The frontier row that best meets the constraints (all given ones must hold).

    With target_accuracy: the cheapest row reaching it. Otherwise: the most accurate row within
    max_gmacs / max_escalated. None when no row qualifies.
    """
    _check_frame(frontier_df, ["accuracy", "avg_gmacs"] + (["escalated_fraction"] if max_escalated is not None else []))
    if target_accuracy is None and max_gmacs is None and max_escalated is None:
        raise UsageError("best_cascade needs a target: target_accuracy, max_gmacs or max_escalated")
    for name, value in (("target_accuracy", target_accuracy), ("max_escalated", max_escalated)):
        if value is not None:
            check_number(value, name)
            if not 0 <= value <= 1:
                raise UsageError(f"{name} is a fraction in [0, 1], got {value}")
    if max_gmacs is not None:
        max_gmacs = check_number(max_gmacs, "max_gmacs", minimum=0.0, allow_inf=True)   # inf: no budget
    ok = np.ones(len(frontier_df), dtype=bool)
    accuracy = frontier_df["accuracy"].to_numpy(dtype=float)
    cost = frontier_df["avg_gmacs"].to_numpy(dtype=float)
    if target_accuracy is not None:
        ok &= accuracy >= target_accuracy - 1e-12
    if max_gmacs is not None:
        ok &= cost <= max_gmacs + 1e-12
    if max_escalated is not None:
        ok &= frontier_df["escalated_fraction"].to_numpy(dtype=float) <= max_escalated + 1e-12
    candidates = np.flatnonzero(ok)
    if len(candidates) == 0:
        return None
    if target_accuracy is not None:
        order = np.lexsort((-accuracy[candidates], cost[candidates]))       # cheapest, then most accurate
    else:
        order = np.lexsort((cost[candidates], -accuracy[candidates]))       # most accurate, then cheapest
    return frontier_df.iloc[candidates[order[0]]]


def headline_cascade(frontier_df: pd.DataFrame, best_single_accuracy: float, *,
                     tolerance: float = 0.01) -> pd.Series | None:
    """The cascade to lead with: the largest speed-up at equal accuracy among frontier rows within
    `tolerance` (accuracy points as a fraction) of the best single model.

    Speed-up alone would favour cheap, inaccurate cascades, and "at least as accurate as the best
    single model" can pick a cascade that is the cheap model alone (when the big models tie, as on
    the default bank); within one point of the best model is where a user would deploy instead of it.
    Falls back to the cheapest row reaching `best_single_accuracy`, then to the largest speed-up.
    """
    _check_frame(frontier_df, ["accuracy", "avg_gmacs", "speedup"], allow_bare_empty=True)
    tolerance = check_fraction(tolerance, "tolerance")
    best_single_accuracy = check_fraction(best_single_accuracy, "best_single_accuracy")
    if frontier_df.empty:
        return None
    accuracy = frontier_df["accuracy"].to_numpy(dtype=float)
    import pandas as pd

    speedup = pd.to_numeric(frontier_df["speedup"], errors="coerce").to_numpy(dtype=float)
    near = np.flatnonzero((accuracy >= best_single_accuracy - tolerance - 1e-12) & np.isfinite(speedup))
    if len(near):
        return frontier_df.iloc[near[np.argmax(speedup[near])]]
    reaching = best_cascade(frontier_df, target_accuracy=min(1.0, float(best_single_accuracy)))
    if reaching is not None:
        return reaching
    finite = np.flatnonzero(np.isfinite(speedup))
    return frontier_df.iloc[finite[np.argmax(speedup[finite])]] if len(finite) else None

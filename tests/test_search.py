"""Pair search, 3-model search and best-for-target against brute force over every threshold."""

import math
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from cascade_explorer.core.curves import cascade_curve, pareto_front, single_model_hull
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core import search
from cascade_explorer.core.search import COLUMNS, best_cascade, pair_frontier, three_model_frontier
from cascade_explorer.core.signals import ModelSignals
from reference import ref_best_cascade, ref_ordered_pair_curves, ref_pair_frontier, ref_pareto


@st.composite
def banks(draw, min_models=2, max_models=5):
    n_models = draw(st.integers(min_models, max_models))
    n = draw(st.integers(1, 25))
    tied = draw(st.booleans())
    values = st.sampled_from([0.1, 0.4, 0.5, 0.9]) if tied else st.floats(0, 1)
    signals, gmacs = {}, {}
    for m in range(n_models):
        conf = draw(arrays(np.float64, (n,), elements=values))
        correct = draw(arrays(bool, (n,)))
        signals[f"m{m}"] = ModelSignals(conf, np.zeros(n, dtype=np.int32), correct)
        gmacs[f"m{m}"] = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 7.5]))
    return signals, gmacs


def _check_rows(frame, signals, gmacs, ms=None):
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    for row in frame.itertuples():
        stages = [signals[m] for m in row.models]
        result = evaluate_cascade(stages, list(row.thresholds), [gmacs[m] for m in row.models],
                                  None if ms is None else [ms[m] for m in row.models])
        assert row.accuracy == pytest.approx(result.accuracy, abs=1e-12)
        assert row.avg_gmacs == pytest.approx(result.avg_gmacs, rel=1e-12, abs=1e-12)
        assert row.escalated_fraction == pytest.approx(result.exit_fractions[-1], abs=1e-12)
        np.testing.assert_allclose(row.exit_fractions, result.exit_fractions, atol=1e-12)
        if ms is not None:
            assert row.avg_ms == pytest.approx(result.avg_ms, rel=1e-12)
        assert gmacs[row.models[0]] <= gmacs[row.models[-1]]


@settings(max_examples=120, deadline=None)
@given(banks())
def test_pair_frontier_equals_brute_force(bank):
    signals, gmacs = bank
    ms = {m: 3 * g + 1 for m, g in gmacs.items()}
    frame = pair_frontier(signals, gmacs, ms)
    want = ref_pair_frontier(signals, gmacs)
    got_points = sorted((round(c, 9), round(a, 9)) for c, a in zip(frame.avg_gmacs, frame.accuracy))
    want_points = sorted((round(p[0], 9), round(p[1], 9)) for p in want)
    assert got_points == want_points
    _check_rows(frame, signals, gmacs, ms)
    assert np.all(np.diff(frame.avg_gmacs.to_numpy()) > 0)


@settings(max_examples=80, deadline=None)
@given(banks(min_models=3, max_models=6), st.sampled_from([1, 2, 3, 8]), st.sampled_from([1, 2, 4]))
def test_pair_frontier_with_small_blocks_and_row_groups(bank, block, row_group):
    """Block pruning and row groups at sizes that split these small banks many ways."""
    signals, gmacs = bank
    with patch.object(search, "BLOCK", block), patch.object(search, "ROW_GROUP", row_group):
        frame = pair_frontier(signals, gmacs)
        per_pair = pair_frontier(signals, gmacs, per_pair=True)
    want = ref_pair_frontier(signals, gmacs)
    got_points = sorted((round(c, 9), round(a, 9)) for c, a in zip(frame.avg_gmacs, frame.accuracy))
    assert got_points == sorted((round(p[0], 9), round(p[1], 9)) for p in want)
    _check_rows(frame, signals, gmacs)
    reference = pair_frontier(signals, gmacs, per_pair=True)
    assert sorted(zip(per_pair.models, per_pair.avg_gmacs, per_pair.accuracy)) == \
        sorted(zip(reference.models, reference.avg_gmacs, reference.accuracy))


def test_pair_frontier_on_a_larger_bank_equals_brute_force():
    rng = np.random.default_rng(5)
    n = 700   # several blocks of 256 positions
    signals, gmacs = {}, {}
    for m in range(4):
        conf = np.round(rng.random(n), 2 if m == 1 else 6)   # model 1 has many ties
        correct = rng.random(n) < 0.3 + 0.15 * m + 0.3 * conf
        signals[f"m{m}"] = ModelSignals(conf, np.zeros(n, np.int32), correct)
        gmacs[f"m{m}"] = [0.1, 0.3, 0.3, 2.0][m]
    frame = pair_frontier(signals, gmacs)
    want = ref_pair_frontier(signals, gmacs)
    assert sorted(zip(np.round(frame.avg_gmacs, 9), np.round(frame.accuracy, 9))) == \
        sorted((round(p[0], 9), round(p[1], 9)) for p in want)
    _check_rows(frame, signals, gmacs)


@settings(max_examples=60, deadline=None)
@given(banks(max_models=4))
def test_per_pair_points_are_each_pairs_pareto_set(bank):
    signals, gmacs = bank
    frame = pair_frontier(signals, gmacs, per_pair=True)
    _check_rows(frame, signals, gmacs)
    for a, b, curve in ref_ordered_pair_curves(signals, gmacs):
        points = list(curve.values())
        want = {(round(points[i][1], 9), round(points[i][0], 9))
                for i in ref_pareto([p[1] for p in points], [p[0] for p in points])}
        mine = frame[frame.models == (a, b)]
        assert {(round(c, 9), round(x, 9)) for c, x in zip(mine.avg_gmacs, mine.accuracy)} == want
    front = frame[frame.on_frontier]
    assert len(front) == len(pair_frontier(signals, gmacs))


def test_pair_frontier_speedup_and_columns():
    rng = np.random.default_rng(0)
    n = 2000
    difficulty = rng.random(n)
    signals, gmacs = {}, {}
    for m, (skill, cost) in enumerate([(0.3, 0.1), (0.6, 0.5), (0.9, 4.0)]):
        conf = np.clip(skill - difficulty + rng.normal(0, 0.2, n), -1, 2)
        correct = rng.random(n) < 1 / (1 + np.exp(-6 * (skill - difficulty + 0.2)))
        signals[f"m{m}"] = ModelSignals(conf, np.zeros(n, np.int32), correct)
        gmacs[f"m{m}"] = cost
    frame = pair_frontier(signals, gmacs)
    hull = single_model_hull(list(gmacs.values()), [s.correct.mean() for s in signals.values()])
    np.testing.assert_allclose(frame.speedup, hull.cost_at(frame.accuracy) / frame.avg_gmacs)
    best_single = max(s.correct.mean() for s in signals.values())
    assert frame.speedup[frame.accuracy > best_single].isna().all()
    assert frame.speedup.max() > 1.0    # confident-first cascades beat random switching here
    assert frame.avg_ms.isna().all()
    assert all(len(t) == 1 for t in frame.thresholds)


@settings(max_examples=30, deadline=None)
@given(banks(min_models=3, max_models=4), st.integers(1, 6))
def test_three_model_frontier_rows_are_exact_and_undominated(bank, grid_size):
    signals, gmacs = bank
    names = list(signals)
    frame = three_model_frontier(signals, gmacs, names, grid_size=grid_size)
    _check_rows(frame, signals, gmacs)
    assert all(len(m) == 3 and len(t) == 2 for m, t in zip(frame.models, frame.thresholds))
    ordered = sorted(names, key=lambda m: (gmacs[m], m))
    costs, accs = [], []
    from itertools import combinations
    for chain in combinations(ordered, 3):
        curve = cascade_curve([signals[m] for m in chain], [gmacs[m] for m in chain], grid_size=grid_size)
        costs.extend(curve.avg_gmacs)
        accs.extend(curve.accuracy)
    best = pareto_front(costs, accs)
    assert sorted(np.round(frame.avg_gmacs, 9)) == sorted(np.round(np.asarray(costs)[best], 9))


def test_three_model_frontier_bad_shortlist():
    s = ModelSignals(np.array([0.5]), np.array([0]), np.array([True]))
    signals = {"a": s, "b": s, "c": s}
    with pytest.raises(ValueError, match="unknown model"):
        three_model_frontier(signals, {"a": 1, "b": 2, "c": 3}, ["a", "b", "zz"])
    with pytest.raises(ValueError, match="at least 3 distinct"):
        three_model_frontier(signals, {"a": 1, "b": 2, "c": 3}, ["a", "b", "a"])


def test_pair_frontier_bad_input():
    s = ModelSignals(np.array([0.5, 0.2]), np.array([0, 1]), np.array([True, False]))
    with pytest.raises(ValueError, match="no gmacs for model 'b'"):
        pair_frontier({"a": s, "b": s}, {"a": 1})
    with pytest.raises(ValueError, match="same samples"):
        pair_frontier({"a": s, "b": s.subset([0])}, {"a": 1, "b": 2})
    with pytest.raises(ValueError, match="at least 2 models"):
        pair_frontier({"a": s}, {"a": 1})


def _frontier_table():
    return pd.DataFrame({
        "models": [("a", "b")] * 4, "thresholds": [(0.1,), (0.5,), (0.8,), (math.inf,)],
        "accuracy": [0.6, 0.7, 0.8, 0.85], "avg_gmacs": [1.0, 2.0, 3.0, 5.0], "avg_ms": [None] * 4,
        "escalated_fraction": [0.0, 0.2, 0.5, 1.0], "exit_fractions": [(1, 0), (0.8, 0.2), (0.5, 0.5), (0, 1)],
        "speedup": [1.0, 1.2, 1.5, 1.0]})


def test_best_cascade_targets():
    table = _frontier_table()
    assert best_cascade(table, target_accuracy=0.7).avg_gmacs == 2.0
    assert best_cascade(table, target_accuracy=0.71).avg_gmacs == 3.0
    assert best_cascade(table, target_accuracy=0.9) is None
    assert best_cascade(table, max_gmacs=2.5).accuracy == 0.7
    assert best_cascade(table, max_escalated=0.5).accuracy == 0.8
    assert best_cascade(table, target_accuracy=0.8, max_escalated=0.4) is None
    assert best_cascade(table, max_gmacs=0.5) is None
    with pytest.raises(ValueError, match="needs a target"):
        best_cascade(table)
    with pytest.raises(ValueError, match="fraction in"):
        best_cascade(table, target_accuracy=80)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.5, 0.6, 0.7, 0.8]), st.sampled_from([1.0, 2.0, 3.0]),
                          st.sampled_from([0.0, 0.3, 1.0])), min_size=0, max_size=12),
       st.one_of(st.none(), st.sampled_from([0.55, 0.6, 0.8, 0.9])),
       st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.5])),
       st.one_of(st.none(), st.sampled_from([0.0, 0.3, 0.5])))
def test_best_cascade_matches_reference(rows, target, budget, escalated):
    if target is None and budget is None and escalated is None:
        target = 0.6
    table = pd.DataFrame({"models": [("a", "b")] * len(rows), "thresholds": [(0.5,)] * len(rows),
                          "accuracy": [r[0] for r in rows], "avg_gmacs": [r[1] for r in rows],
                          "avg_ms": [None] * len(rows), "escalated_fraction": [r[2] for r in rows],
                          "exit_fractions": [(1 - r[2], r[2]) for r in rows], "speedup": [1.0] * len(rows)})
    got = best_cascade(table, target_accuracy=target, max_gmacs=budget, max_escalated=escalated)
    want = ref_best_cascade(rows, target, budget, escalated)
    if want is None:
        assert got is None
    else:
        assert (got.accuracy, got.avg_gmacs) == (rows[want][0], rows[want][1])
        assert got.escalated_fraction <= (escalated if escalated is not None else 1)


def _headline_table(rows):
    return pd.DataFrame(rows, columns=["models", "thresholds", "accuracy", "avg_gmacs", "escalated_fraction", "speedup"])


def test_headline_cascade_prefers_largest_speedup_near_the_best_single_model():
    table = _headline_table([
        (("a", "b"), (0.1,), 0.70, 0.05, 0.1, 3.0),     # big speed-up, far below the best model
        (("a", "c"), (0.5,), 0.825, 0.20, 0.3, 2.0),    # within one point: chosen
        (("a", "c"), (0.7,), 0.828, 0.25, 0.4, 1.8),
        (("b", "c"), (0.9,), 0.835, 0.40, 0.9, float("nan")),  # above the best single model
    ])
    from cascade_explorer.core.search import headline_cascade
    assert headline_cascade(table, 0.834)["speedup"] == 2.0
    # nothing within tolerance with a speed-up: the cheapest row reaching the best model
    assert headline_cascade(table, 0.834, tolerance=0.0)["avg_gmacs"] == 0.40
    # nothing reaches it either: the largest speed-up anywhere
    assert headline_cascade(table, 0.95, tolerance=0.0)["speedup"] == 3.0
    assert headline_cascade(table.iloc[:0], 0.8) is None
    with pytest.raises(ValueError, match="tolerance"):
        headline_cascade(table, 0.8, tolerance=2)


def test_pair_frontier_drops_point_one_rounding_error_cheaper():
    """Found by hypothesis in CI: 0 + 5/18 * 3 and 0.5 + 2/18 * 3 are the same cost, summed to
    different last bits; the less accurate of the two must not stay on the frontier."""
    n = 18
    zeros = np.zeros(n, dtype=np.int32)
    signals = {
        "m0": ModelSignals(np.full(n, 0.1), zeros, np.ones(n, dtype=bool)),
        "m1": ModelSignals(np.array([0.1] * 5 + [0.4] * 13), zeros, np.zeros(n, dtype=bool)),
        "m2": ModelSignals(np.array([0.1] * 2 + [0.4] * 16), zeros, np.zeros(n, dtype=bool)),
    }
    gmacs = {"m0": 3.0, "m1": 0.0, "m2": 0.5}
    frame = pair_frontier(signals, gmacs)
    assert np.all(np.diff(frame.avg_gmacs.to_numpy()) > 1e-9)
    want = ref_pair_frontier(signals, gmacs)
    assert sorted((round(c, 9), round(a, 9)) for c, a in zip(frame.avg_gmacs, frame.accuracy)) == \
        sorted((round(p[0], 9), round(p[1], 9)) for p in want)
    assert (round(5 / 18 * 3, 9), round(2 / 18, 9)) not in \
        {(round(c, 9), round(a, 9)) for c, a in zip(frame.avg_gmacs, frame.accuracy)}


def _three_model_frontier_in_one_pass(signals, gmacs, grid_size):
    """The 3-model search as it was before it pruned chain by chain: every chain's curve kept, one
    pareto_front over all of them (the reference for the memory-bounded search)."""
    from itertools import combinations

    ordered = sorted(signals, key=lambda m: (gmacs[m], m))
    blocks = [(chain, cascade_curve([signals[m] for m in chain], [gmacs[m] for m in chain], grid_size=grid_size,
                                    pareto_only=True)) for chain in combinations(ordered, 3)]
    cost = np.concatenate([c.avg_gmacs for _, c in blocks])
    acc = np.concatenate([c.accuracy for _, c in blocks])
    owner = np.concatenate([np.full(len(c), b) for b, (_, c) in enumerate(blocks)])
    local = np.concatenate([np.arange(len(c)) for _, c in blocks])
    best = pareto_front(cost, acc)
    return [(blocks[owner[i]][0], tuple(blocks[owner[i]][1].thresholds[local[i]]), acc[i], cost[i]) for i in best]


@settings(max_examples=60, deadline=None)
@given(banks(min_models=3, max_models=5), st.integers(1, 6))
def test_three_model_frontier_pruned_per_chain_equals_one_pass(bank, grid_size):
    signals, gmacs = bank
    frame = three_model_frontier(signals, gmacs, list(signals), grid_size=grid_size)
    got = [(tuple(m), tuple(t), a, c) for m, t, a, c in zip(frame.models, frame.thresholds, frame.accuracy,
                                                          frame.avg_gmacs)]
    want = _three_model_frontier_in_one_pass(signals, gmacs, grid_size)
    assert sorted(got, key=lambda r: (r[3], -r[2])) == sorted(want, key=lambda r: (r[3], -r[2]))


def test_pair_frontier_bound_prunes_most_pairs_and_changes_nothing():
    """The pair search drops pairs whose upper bound (from the samples both models get right) cannot
    beat the frontier before it gathers their correctness. Same frame to the last row and model name
    as the search without that bound, with 1 or 2 threads, while many pairs are never gathered."""
    from cascade_explorer.core.synthetic import make_synthetic_bank

    synthetic = make_synthetic_bank(80, 6000, 50, seed=3)
    signals = synthetic.all_signals()
    seen = []
    real = search._may_reach_frontier

    def counting(i, second_models, *args):
        kept = real(i, second_models, *args)
        seen.append((len(second_models), len(kept)))
        return kept

    with patch.object(search, "_may_reach_frontier", counting):
        pruned = {workers: pair_frontier(signals, synthetic.gmacs, synthetic.ms, workers=workers) for workers in (1, 2)}
    with patch.object(search, "_may_reach_frontier", lambda i, second_models, *args: second_models), \
            patch.object(search, "_seeds", lambda *args: (np.empty(0), np.empty(0, dtype=np.int64))):
        unpruned = pair_frontier(signals, synthetic.gmacs, synthetic.ms, workers=1)
    for frame in pruned.values():
        pd.testing.assert_frame_equal(frame, unpruned)
    considered, kept = (sum(column) for column in zip(*seen))
    assert kept < 0.6 * considered, (kept, considered)   # 100% without the bound; ~20% at 500 x 50,000

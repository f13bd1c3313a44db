"""Exact threshold curves, Pareto fronts, the single-model hull and speed-ups against loop references."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from cascade_explorer.core.curves import (cascade_curve, exact_threshold_sweep, pareto_front,
                                          single_model_hull, speedup_at_equal_accuracy)
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.signals import ModelSignals
from reference import ref_evaluate, ref_hull_accuracy_at, ref_hull_cost_at, ref_pair_curve, ref_pareto

SETTINGS = settings(max_examples=100, deadline=None)


@st.composite
def stage_signals(draw, n_stages, n=None):
    n = n or draw(st.integers(1, 30))
    values = st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.8, 0.95]) if draw(st.booleans()) else st.floats(0, 1)
    out = []
    for _ in range(n_stages):
        conf = draw(arrays(np.float64, (n,), elements=values))
        correct = draw(arrays(bool, (n,)))
        out.append(ModelSignals(conf, np.zeros(n, dtype=np.int32), correct))
    return out


@SETTINGS
@given(stage_signals(2), st.floats(0.01, 5), st.floats(0.01, 50))
def test_pair_curve_has_every_distinct_threshold(stages, g0, g1):
    curve = cascade_curve(stages, [g0, g1], ms=[2 * g0, 2 * g1])
    want = ref_pair_curve(stages[0].confidence, stages[0].correct, stages[1].correct, [g0, g1])
    assert len(curve) == len(want)
    assert curve.thresholds.shape == (len(want), 1)
    assert list(curve.thresholds[:, 0]) == sorted(want)          # ascending, ends with +inf
    assert curve.thresholds[-1, 0] == math.inf
    for t, acc, cost, ms in zip(curve.thresholds[:, 0], curve.accuracy, curve.avg_gmacs, curve.avg_ms):
        assert acc == pytest.approx(want[t][0], abs=1e-12)
        assert cost == pytest.approx(want[t][1], rel=1e-12)
        assert ms == pytest.approx(2 * want[t][1], rel=1e-12)
    np.testing.assert_allclose(curve.exit_fractions.sum(axis=1), 1.0)
    assert np.all(np.diff(curve.avg_gmacs) >= -1e-12)             # cost grows with the threshold


@settings(max_examples=40, deadline=None)
@given(st.one_of(stage_signals(3), stage_signals(4)), st.integers(1, 8))
def test_multi_stage_curve_points_match_evaluate(stages, grid_size):
    gmacs = [0.5, 1.0, 4.0, 9.0][: len(stages)]
    curve = cascade_curve(stages, gmacs, grid_size=grid_size)
    assert curve.thresholds.shape[1] == len(stages) - 1
    for row in range(len(curve)):
        t = list(curve.thresholds[row])
        acc, cost, fractions = ref_evaluate([s.confidence for s in stages], [s.correct for s in stages], t, gmacs)
        assert curve.accuracy[row] == pytest.approx(acc, abs=1e-12)
        assert curve.avg_gmacs[row] == pytest.approx(cost, rel=1e-12)
        np.testing.assert_allclose(curve.exit_fractions[row], fractions, atol=1e-12)
    # the last threshold is exact: for each early threshold every distinct remaining confidence appears
    for early in np.unique(curve.thresholds[:, :-1], axis=0):
        remaining = np.ones(len(stages[0].confidence), dtype=bool)
        for i, t in enumerate(early):
            remaining &= ~((stages[i].confidence >= t) & (t != math.inf))
        block = curve.thresholds[(curve.thresholds[:, :-1] == early).all(axis=1), -1]
        assert set(block) == set(stages[-2].confidence[remaining]) | {math.inf}
    pruned = cascade_curve(stages, gmacs, grid_size=grid_size, pareto_only=True)
    assert len(pruned) <= len(curve)
    best = pareto_front(curve.avg_gmacs, curve.accuracy)
    best_pruned = pareto_front(pruned.avg_gmacs, pruned.accuracy)
    np.testing.assert_allclose(curve.avg_gmacs[best], pruned.avg_gmacs[best_pruned])


def test_single_stage_curve_and_single_sample():
    s = ModelSignals(np.array([0.4]), np.array([1]), np.array([True]))
    one = cascade_curve([s], [2.0])
    assert len(one) == 1 and one.accuracy[0] == 1.0 and one.avg_gmacs[0] == 2.0
    pair = cascade_curve([s, s], [1.0, 3.0])
    np.testing.assert_array_equal(pair.thresholds[:, 0], [0.4, np.inf])
    np.testing.assert_allclose(pair.avg_gmacs, [1.0, 4.0])


def test_curve_with_all_ties_has_two_points():
    first = ModelSignals(np.full(5, 0.5), np.zeros(5), np.array([1, 0, 1, 0, 1], bool))
    second = ModelSignals(np.full(5, 0.5), np.zeros(5), np.ones(5, bool))
    curve = cascade_curve([first, second], [1, 2])
    np.testing.assert_array_equal(curve.thresholds[:, 0], [0.5, np.inf])
    np.testing.assert_allclose(curve.accuracy, [0.6, 1.0])
    result = evaluate_cascade([first, second], [0.5], [1, 2])
    assert result.accuracy == curve.accuracy[0]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.0, 3.5]), st.sampled_from([0.1, 0.5, 0.7, 0.9])),
                min_size=0, max_size=25))
def test_pareto_front_matches_reference(points):
    cost = [p[0] for p in points]
    acc = [p[1] for p in points]
    got = pareto_front(cost, acc)
    assert sorted(got.tolist()) == ref_pareto(cost, acc)
    assert np.all(np.diff(np.asarray(cost)[got]) > 0) if len(got) else True


def test_pareto_front_drops_nan():
    assert pareto_front([1.0, np.nan, 2.0], [0.5, 0.9, 0.6]).tolist() == [0, 2]


@SETTINGS
@given(st.lists(st.tuples(st.floats(0.01, 20), st.floats(0.0, 1.0)), min_size=1, max_size=8),
       st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10))
def test_hull_cost_at_is_cheapest_random_switching(models, targets):
    costs = [m[0] for m in models]
    accs = [m[1] for m in models]
    hull = single_model_hull(costs, accs)
    assert np.all(np.diff(hull.costs) > 0) and np.all(np.diff(hull.accuracies) > 0)
    got = hull.cost_at(targets)
    for target, value in zip(targets, got):
        want = ref_hull_cost_at(costs, accs, target)
        if math.isnan(want):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_hull_skips_models_below_the_chord_and_accuracy_at():
    hull = single_model_hull([1, 2, 3, 4, 5], [0.5, 0.55, 0.8, 0.7, 0.8])
    np.testing.assert_allclose(hull.costs, [1, 3])
    np.testing.assert_allclose(hull.accuracy_at([0.5, 1, 2, 3, 10]), [np.nan, 0.5, 0.65, 0.8, 0.8])
    np.testing.assert_allclose(hull.cost_at([0.1, 0.65, 0.81]), [1, 2, np.nan])


def test_speedup_at_equal_accuracy():
    hull = single_model_hull([1, 3], [0.5, 0.8])
    speedup = speedup_at_equal_accuracy([1.0, 1.0, 2.0], [0.65, 0.8, 0.9], hull)
    np.testing.assert_allclose(speedup, [2.0, 3.0, np.nan])


def test_exact_threshold_sweep_empty_subset():
    t, n_exit, n_correct = exact_threshold_sweep(np.empty(0), np.empty(0, bool), np.empty(0, bool))
    assert t.tolist() == [np.inf] and n_exit.tolist() == [0] and n_correct.tolist() == [0]


@SETTINGS
@given(st.lists(st.tuples(st.floats(0.01, 20), st.floats(0.0, 1.0)), min_size=1, max_size=8),
       st.lists(st.floats(0.0, 30.0), min_size=1, max_size=10))
def test_hull_accuracy_at_is_best_random_switching(models, budgets):
    costs = [m[0] for m in models]
    accs = [m[1] for m in models]
    got = single_model_hull(costs, accs).accuracy_at(budgets)
    for budget, value in zip(budgets, got):
        want = ref_hull_accuracy_at(costs, accs, budget)
        if math.isnan(want):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(want, rel=1e-9, abs=1e-12)


@SETTINGS
@given(st.lists(st.tuples(st.floats(0.01, 20), st.floats(0.0, 1.0)), min_size=1, max_size=6),
       st.lists(st.tuples(st.floats(0.01, 30), st.floats(0.0, 1.0)), min_size=1, max_size=6))
def test_speedup_matches_reference(models, cascades):
    costs = [m[0] for m in models]
    accs = [m[1] for m in models]
    hull = single_model_hull(costs, accs)
    got = speedup_at_equal_accuracy([c[0] for c in cascades], [c[1] for c in cascades], hull)
    for (cost, acc), value in zip(cascades, got):
        want = ref_hull_cost_at(costs, accs, acc)
        if math.isnan(want):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(want / cost, rel=1e-9)


def test_curve_with_infinite_confidences_matches_evaluate():
    first = ModelSignals(np.array([np.inf, np.inf, 0.5, 0.2]), np.zeros(4), np.array([True, False, True, False]))
    second = ModelSignals(np.zeros(4), np.zeros(4), np.array([False, True, False, True]))
    curve = cascade_curve([first, second], [1.0, 2.0])
    assert curve.thresholds[-1, 0] == np.inf and np.isfinite(curve.thresholds[:-1]).all()
    for t, acc, fractions in zip(curve.thresholds[:, 0], curve.accuracy, curve.exit_fractions):
        result = evaluate_cascade([first, second], [t], [1.0, 2.0])
        assert result.accuracy == acc
        np.testing.assert_allclose(result.exit_fractions, fractions)
    assert len(curve) == 4


def test_ensemble_logit_margin_is_finite_when_runner_up_underflows():
    from cascade_explorer.core.criteria import confidence_from_probs
    conf = confidence_from_probs(np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]), "logit_margin")
    assert np.isfinite(conf).all() and conf[0] > 700 and conf[1] == 0

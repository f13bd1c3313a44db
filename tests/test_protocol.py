"""Protocol: calibration split, threshold fitting, bootstrap, shift — against slow references."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from cascade_explorer.core import intervals, protocol
from cascade_explorer.core.curves import single_model_hull
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.signals import ModelSignals

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- calibration split

def test_calibration_mask_is_deterministic_and_seedable():
    ids = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(2000)]
    first = protocol.calibration_mask(ids, 0.5, seed=0)
    assert first.dtype == bool and first.shape == (2000,)
    np.testing.assert_array_equal(first, protocol.calibration_mask(ids, 0.5, seed=0))
    other_seed = protocol.calibration_mask(ids, 0.5, seed=1)
    assert (first != other_seed).mean() > 0.3  # a different seed gives a different split


@SETTINGS
@given(ids=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=60, unique=True),
       fraction=st.floats(0.05, 0.95), seed=st.integers(0, 2**31), data=st.data())
def test_calibration_mask_independent_of_row_order_and_other_samples(ids, fraction, seed, data):
    mask = protocol.calibration_mask(ids, fraction, seed)
    permutation = data.draw(st.permutations(range(len(ids))))
    shuffled = [ids[i] for i in permutation]
    np.testing.assert_array_equal(protocol.calibration_mask(shuffled, fraction, seed), mask[permutation])
    # membership of an id does not depend on which other ids are present
    keep = data.draw(st.lists(st.integers(0, len(ids) - 1), unique=True))
    np.testing.assert_array_equal(protocol.calibration_mask([ids[i] for i in keep], fraction, seed), mask[keep])


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8])
def test_calibration_mask_respects_fraction(fraction):
    n = 20_000
    mask = protocol.calibration_mask(np.arange(n).astype(str), fraction, seed=7)
    tolerance = 5 * np.sqrt(fraction * (1 - fraction) / n)
    assert abs(mask.mean() - fraction) < tolerance


def test_calibration_mask_is_nested_in_fraction():
    # a larger fraction only adds samples to the calibration part (same hash, higher cut)
    ids = np.arange(500).astype(str)
    small = protocol.calibration_mask(ids, 0.3, seed=2)
    large = protocol.calibration_mask(ids, 0.6, seed=2)
    assert not (small & ~large).any()


@pytest.mark.parametrize("fraction", [0, 1, -0.5, 1.5])
def test_calibration_mask_rejects_bad_fraction(fraction):
    with pytest.raises(UsageError, match="between 0 and 1"):
        protocol.calibration_mask(["a", "b"], fraction)


# ----------------------------------------------------------------------------- bootstrap

def _bootstrap_reference(cost, n_bootstrap, seed, level):
    """Percentile bootstrap of the mean cost, by a loop, widened to contain the mean."""
    rng = np.random.default_rng(seed)
    costs = []
    for _ in range(n_bootstrap):
        index = rng.integers(0, len(cost), size=len(cost))
        costs.append(sum(float(cost[i]) for i in index) / len(index))
    tail = (1 - level) / 2
    low, high = np.quantile(costs, [tail, 1 - tail])
    mean = sum(float(c) for c in cost) / len(cost)
    return min(low, mean), max(high, mean)


@settings(max_examples=40, deadline=None)
@given(pairs=st.lists(st.tuples(st.booleans(), st.floats(0, 50)), min_size=1, max_size=40),
       n_bootstrap=st.integers(1, 60), seed=st.integers(0, 1000), level=st.sampled_from([0.5, 0.9, 0.95]))
def test_bootstrap_matches_loop_reference(pairs, n_bootstrap, seed, level):
    correct = np.array([p[0] for p in pairs])
    cost = np.array([p[1] for p in pairs])
    got = protocol.bootstrap_ci(correct, cost, n_bootstrap=n_bootstrap, seed=seed, level=level)
    # accuracy: the exact binomial interval, which does not depend on the resamples
    exact = binomtest(int(correct.sum()), len(correct)).proportion_ci(level, method="exact")
    np.testing.assert_allclose(got["accuracy"], (exact.low, exact.high), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got["avg_gmacs"], _bootstrap_reference(cost, n_bootstrap, seed, level),
                               rtol=1e-12, atol=1e-12)
    assert got["avg_gmacs"][0] <= intervals.bootstrap_mean_interval(cost, level, n_bootstrap, seed).estimate \
        <= got["avg_gmacs"][1]
    assert "Clopper-Pearson" in got["methods"]["accuracy"] and "bootstrap" in got["methods"]["avg_gmacs"]


def test_bootstrap_chunking_does_not_change_the_draws(monkeypatch):
    rng = np.random.default_rng(0)
    correct, cost = rng.random(300) < 0.7, rng.random(300)
    whole = protocol.bootstrap_ci(correct, cost, n_bootstrap=50, seed=3)
    monkeypatch.setattr(intervals, "BOOTSTRAP_CHUNK_ELEMENTS", 700)  # 2 rows per chunk
    assert protocol.bootstrap_ci(correct, cost, n_bootstrap=50, seed=3) == whole


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small = rng.random(100) < 0.6
    large = rng.random(10_000) < 0.6
    ci_small = protocol.bootstrap_ci(small, np.ones(100), n_bootstrap=400)["accuracy"]
    ci_large = protocol.bootstrap_ci(large, np.ones(10_000), n_bootstrap=400)["accuracy"]
    assert ci_small[0] <= small.mean() <= ci_small[1]
    assert ci_large[1] - ci_large[0] < ci_small[1] - ci_small[0]
    # constant cost: no uncertainty at all
    assert protocol.bootstrap_ci(small, np.full(100, 2.5))["avg_gmacs"] == (2.5, 2.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(correct=[], cost=[]), "at least one sample"),
    (dict(correct=[True], cost=[1.0, 2.0]), "1 samples but cost has 2"),
    (dict(correct=[True], cost=[1.0], n_bootstrap=0), "n_bootstrap"),
    (dict(correct=[True], cost=[1.0], level=1.0), "level"),
])
def test_bootstrap_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        protocol.bootstrap_ci(**kwargs)


# ----------------------------------------------------------------------------- threshold fitting

def _signals(confidence, correct, prediction=None):
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if prediction is None:
        prediction = np.where(correct, 0, 1)
    return ModelSignals(confidence=confidence, prediction=np.asarray(prediction, dtype=np.int32), correct=correct)


def _brute_force_pair(conf0, correct0, correct1, gmacs):
    """Every distinct threshold (and +inf) evaluated from scratch: (accuracy, cost, escalated) per point."""
    points = []
    for threshold in list(np.unique(conf0)) + [np.inf]:
        exits = conf0 >= threshold
        accuracy = np.where(exits, correct0, correct1).mean()
        escalated = 1 - exits.mean()
        cost = gmacs[0] + escalated * gmacs[1]
        points.append((accuracy, cost, escalated))
    return points


def _brute_force_choice(points, target_accuracy=None, max_gmacs=None, max_escalated=None):
    if target_accuracy is not None:
        ok = [p for p in points if p[0] >= target_accuracy - 1e-12]
        return min(ok, key=lambda p: (p[1], -p[0])) if ok else None
    if max_gmacs is not None:
        ok = [p for p in points if p[1] <= max_gmacs * (1 + 1e-9) + 1e-15]
    else:
        ok = [p for p in points if p[2] <= max_escalated + 1e-12]
    return max(ok, key=lambda p: (p[0], -p[1])) if ok else None


pair_data = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0]), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
))


@SETTINGS
@given(data=pair_data, gmacs=st.tuples(st.floats(0.01, 1.0), st.floats(1.0, 10.0)),
       target_kind=st.sampled_from(["target_accuracy", "max_gmacs", "max_escalated"]),
       target_level=st.floats(0.0, 1.0))
def test_fit_thresholds_matches_brute_force_for_pairs(data, gmacs, target_kind, target_level):
    conf0, correct0, correct1 = (np.asarray(x) for x in data)
    stages = [_signals(conf0, correct0), _signals(np.zeros(len(conf0)), correct1)]
    target = {"target_accuracy": target_level,
              "max_gmacs": gmacs[0] + target_level * gmacs[1],
              "max_escalated": target_level}[target_kind]
    want = _brute_force_choice(_brute_force_pair(conf0, correct0, correct1, gmacs), **{target_kind: target})
    if want is None:
        with pytest.raises(UsageError, match="achievable"):
            protocol.fit_thresholds(stages, list(gmacs), **{target_kind: target})
        return
    thresholds = protocol.fit_thresholds(stages, list(gmacs), **{target_kind: target})
    assert len(thresholds) == 1
    result = evaluate_cascade(stages, thresholds, list(gmacs))
    assert result.accuracy == pytest.approx(want[0], abs=1e-12)
    assert result.avg_gmacs == pytest.approx(want[1], rel=1e-9, abs=1e-12)


def test_fit_thresholds_three_stages_meets_each_target():
    rng = np.random.default_rng(5)
    n = 400
    stages = []
    for skill in (0.5, 0.7, 0.9):
        correct = rng.random(n) < skill
        confidence = np.clip(rng.normal(np.where(correct, 0.7, 0.4), 0.15), 0, 1)
        stages.append(_signals(confidence, correct))
    gmacs = [0.1, 0.5, 4.0]
    thresholds = protocol.fit_thresholds(stages, gmacs, target_accuracy=0.75)
    assert len(thresholds) == 2
    assert evaluate_cascade(stages, thresholds, gmacs).accuracy >= 0.75
    thresholds = protocol.fit_thresholds(stages, gmacs, max_gmacs=1.0)
    assert evaluate_cascade(stages, thresholds, gmacs).avg_gmacs <= 1.0 + 1e-12
    thresholds = protocol.fit_thresholds(stages, gmacs, max_escalated=0.2)
    assert evaluate_cascade(stages, thresholds, gmacs).exit_fractions[-1] <= 0.2 + 1e-12


def test_fit_thresholds_error_names_best_achievable():
    stages = [_signals([0.9, 0.2], [True, False]), _signals([0.0, 0.0], [True, False])]
    with pytest.raises(UsageError, match=r"best achievable is 0\.5000"):
        protocol.fit_thresholds(stages, [1.0, 2.0], target_accuracy=0.9)
    with pytest.raises(UsageError, match=r"cheapest achievable is 1 GMACs"):
        protocol.fit_thresholds(stages, [1.0, 2.0], max_gmacs=0.5)


@pytest.mark.parametrize("targets", [{}, {"target_accuracy": 0.5, "max_gmacs": 1.0}])
def test_fit_thresholds_needs_exactly_one_target(targets):
    stages = [_signals([0.9], [True]), _signals([0.0], [True])]
    with pytest.raises(UsageError, match="exactly one target"):
        protocol.fit_thresholds(stages, [1.0, 2.0], **targets)


def test_select_operating_point_tie_breaks():
    accuracy = [0.8, 0.9, 0.9, 0.7]
    cost = [1.0, 2.0, 3.0, 0.5]
    escalated = [0.3, 0.5, 0.6, 0.0]
    assert protocol.select_operating_point(accuracy, cost, escalated, target_accuracy=0.85) == 1
    assert protocol.select_operating_point(accuracy, cost, escalated, max_gmacs=2.5) == 1
    assert protocol.select_operating_point(accuracy, cost, escalated, max_escalated=0.3) == 0
    assert protocol.select_operating_point(accuracy, cost, escalated, max_escalated=0.0) == 3


# ----------------------------------------------------------------------------- temperatures, shift

def test_fit_temperatures_uses_only_the_calibration_rows():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=200)
    logits = rng.normal(size=(200, 5)).astype(np.float32)
    logits[np.arange(200), labels] += 2.0
    mask = np.zeros(200, dtype=bool)
    mask[:100] = True
    spoiled = logits.copy()
    spoiled[100:] *= -5  # the held-out rows must not influence the fit
    assert protocol.fit_temperatures([logits], labels, mask) == protocol.fit_temperatures([spoiled], labels, mask)
    with pytest.raises(UsageError, match="calibration part is empty"):
        protocol.fit_temperatures([logits], labels, np.zeros(200, dtype=bool))


def test_shift_report_side_by_side():
    source = [_signals([0.9, 0.9, 0.2, 0.2], [True, True, False, False]), _signals([0, 0, 0, 0], [True] * 4)]
    target = [_signals([0.9, 0.2, 0.2, 0.2], [False, False, False, False]), _signals([0, 0, 0, 0], [True, True, True, False])]
    hull = single_model_hull(np.array([1.0, 3.0]), np.array([0.5, 1.0]))
    report = protocol.shift_report(source, target, (0.5,), [1.0, 2.0], hull, hull)
    summary = report.to_dict()
    assert summary["source"]["exit_fractions"] == [0.5, 0.5]
    assert summary["target"]["exit_fractions"] == [0.25, 0.75]
    assert summary["source"]["accuracy"] == 1.0 and summary["target"]["accuracy"] == 0.5
    assert summary["delta"]["accuracy"] == -0.5
    assert summary["source"]["speedup"] == pytest.approx(3.0 / 2.0)  # hull cost at acc 1.0 = 3, cascade 1 + 0.5*2
    assert summary["target"]["speedup"] == pytest.approx(1.0 / 2.5)  # hull cost at acc 0.5 = 1, cascade 1 + 0.75*2
    applied = protocol.apply_thresholds(target, (0.5,), [1.0, 2.0])
    assert applied.accuracy == report.target.accuracy

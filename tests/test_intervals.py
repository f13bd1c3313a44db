"""Intervals: proportions against scipy's binomtest, coverage computed exactly, cost intervals that
contain their estimate at the edges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, binomtest

from cascade_explorer.core import intervals
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.signals import ModelSignals

COUNTS = [(k, n) for n in (1, 2, 3, 5, 10, 21, 50, 137, 1000) for k in sorted({0, 1, n // 3, n // 2, n - 1, n})
          if 0 <= k <= n]
LEVELS = [0.5, 0.9, 0.95, 0.99]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("method", ["exact", "wilson"])
def test_proportion_intervals_match_scipy(method, level):
    for k, n in COUNTS:
        want = binomtest(k, n).proportion_ci(confidence_level=level, method=method)
        low, high = (intervals.clopper_pearson if method == "exact" else intervals.wilson)(k, n, level)
        assert low == pytest.approx(want.low, abs=1e-10), (k, n)
        assert high == pytest.approx(want.high, abs=1e-10), (k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0


def test_all_right_is_not_certainty():
    assert intervals.clopper_pearson(21, 21) == pytest.approx((0.8389, 1.0), abs=1e-4)
    assert intervals.clopper_pearson(0, 21) == pytest.approx((0.0, 0.1611), abs=1e-4)
    interval = intervals.proportion_interval(21, 21)
    assert interval.estimate == 1.0 and interval.low < 0.84 and interval.high == 1.0
    assert interval.method == "Clopper-Pearson exact binomial"
    assert intervals.proportion_interval(21, 21, method="wilson").method == "Wilson score"


@pytest.mark.parametrize("n", [7, 40])
def test_clopper_pearson_coverage_is_at_least_the_level(n):
    # the exact coverage at a true proportion p: sum of P(k) over the k whose interval holds p
    bounds = np.array([intervals.clopper_pearson(k, n, 0.9) for k in range(n + 1)])
    for p in np.linspace(0.001, 0.999, 181):
        covered = (bounds[:, 0] <= p) & (p <= bounds[:, 1])
        assert binom.pmf(np.arange(n + 1), n, p)[covered].sum() >= 0.9 - 1e-12, p


@pytest.mark.parametrize("args, message", [
    ((5, 4), "successes must be <= n"),
    ((-1, 4), "successes must be >= 0"),
    ((1, 0), "n must be >= 1"),
    ((1.5, 4), "successes must be a whole number"),
    ((1, 4, 95), r"level must be strictly between 0 and 1 \(e.g. 0.95\)"),
])
def test_proportion_interval_rejects_bad_input(args, message):
    with pytest.raises(UsageError, match=message):
        intervals.clopper_pearson(*args)
    with pytest.raises(UsageError, match=message):
        intervals.wilson(*args)


def test_proportion_interval_rejects_unknown_method():
    with pytest.raises(UsageError, match=r"method must be one of \['exact', 'wilson'\]"):
        intervals.proportion_interval(1, 2, method="bootstrap")


@pytest.mark.parametrize("cost", [
    [0.1] * 7, [1 / 3] * 50, [2.5] * 100, [0.3],   # constant: no uncertainty, the interval is the point
])
def test_constant_cost_interval_is_the_estimate(cost):
    interval = intervals.bootstrap_mean_interval(cost, n_bootstrap=200, seed=1)
    assert interval.low == interval.estimate == interval.high
    assert interval.estimate == pytest.approx(cost[0], rel=1e-15)


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.sampled_from([0.1, 0.3, 1 / 3, 2.7, 1e-3, 7.1]), min_size=1, max_size=30),
       level=st.sampled_from([0.5, 0.9, 0.99]), n_bootstrap=st.integers(1, 50), seed=st.integers(0, 100))
def test_cost_interval_contains_its_estimate(values, level, n_bootstrap, seed):
    cost = np.array(values)
    interval = intervals.bootstrap_mean_interval(cost, level, n_bootstrap, seed)
    assert interval.low <= interval.estimate <= interval.high
    assert interval.estimate == pytest.approx(cost.mean(), rel=1e-12)


def test_cost_interval_two_values_and_skew():
    # two values, one rare: most resamples never see the dear one
    cost = np.array([0.0] * 29 + [1000.0])
    interval = intervals.bootstrap_mean_interval(cost, level=0.5, n_bootstrap=400)
    assert interval.low <= 1000 / 30 <= interval.high
    assert "bootstrap" in interval.method and "contain the estimate" in interval.method


def test_cost_interval_contains_the_engines_average():
    # the estimate callers show (CascadeResult.avg_gmacs) is inside, for chains with costs > 0
    rng = np.random.default_rng(0)
    for trial in range(300):
        n_stages, n = int(rng.integers(2, 5)), int(rng.integers(1, 60))
        gmacs = rng.choice([0.1, 0.3, 1 / 3, 2.7, 0.05, 7.1], size=n_stages)
        stages = [ModelSignals(rng.random(n), np.zeros(n, int), rng.random(n) < 0.5) for _ in range(n_stages)]
        result = evaluate_cascade(stages, list(rng.random(n_stages - 1)), gmacs)
        interval = intervals.bootstrap_mean_interval(result.cost_gmacs, n_bootstrap=20, seed=trial)
        assert interval.estimate == result.avg_gmacs
        assert interval.low <= result.avg_gmacs <= interval.high


def test_cascade_intervals_names_each_method():
    correct = np.array([True] * 21)
    cost = np.full(21, 0.25)
    escalated = np.array([False] * 20 + [True])
    out = intervals.cascade_intervals(correct, cost, escalated, level=0.95, n_bootstrap=100)
    assert out["accuracy"] == 1.0 and out["accuracy_ci"] == pytest.approx((0.8389, 1.0), abs=1e-4)
    assert out["avg_gmacs"] == 0.25 and out["avg_gmacs_ci"] == (0.25, 0.25)
    want = binomtest(1, 21).proportion_ci(0.95, method="exact")
    assert out["escalated"] == pytest.approx(1 / 21)
    assert out["escalated_ci"] == pytest.approx((want.low, want.high), abs=1e-10)
    assert out["methods"] == {"accuracy": "Clopper-Pearson exact binomial",
                              "avg_gmacs": "percentile bootstrap (100 resamples, seed 0), widened to contain "
                                           "the estimate",
                              "escalated": "Clopper-Pearson exact binomial"}
    assert out["n_samples"] == 21 and out["level"] == 0.95
    wilson = intervals.cascade_intervals(correct, cost, proportion_method="wilson", n_bootstrap=10)
    assert wilson["methods"]["accuracy"] == "Wilson score" and wilson["escalated_ci"] is None
    assert wilson["methods"]["escalated"] is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(correct=[], cost=[]), "at least one sample"),
    (dict(cost=[1.0, 2.0]), "correct has 3 samples but cost has 2"),
    (dict(escalated=[True, False]), "escalated must have 3 entries"),
    (dict(escalated=[2, 0, 1]), "escalated must be 0/1"),
    (dict(cost=[1.0, -1.0, 1.0]), "cost must be >= 0"),
    (dict(n_bootstrap=0), "n_bootstrap must be >= 1"),
    (dict(level=1.0), "level must be strictly between 0 and 1"),
    (dict(proportion_method="exactly"), "method must be one of"),
])
def test_cascade_intervals_rejects_bad_input(kwargs, message):
    args = dict(correct=[1, 0, 1], cost=[1.0, 2.0, 1.0])
    with pytest.raises(UsageError, match=message):
        intervals.cascade_intervals(**{**args, **kwargs})

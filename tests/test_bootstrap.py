"""The cost interval's bootstrap drawn as counts per distinct cost (what the dashboard uses on every
slider move) against the same bootstrap drawn as resampled indices (independent slow reference)."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_explorer.core import intervals
from cascade_explorer.core.errors import UsageError


def _cascade_costs(n, seed=0):
    rng = np.random.default_rng(seed)
    stage = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    return np.array([0.06, 0.46, 1.3])[stage]            # cost fixed by the exit stage


@pytest.mark.parametrize("n", [40, 2_000])
def test_counts_match_the_index_bootstrap_within_monte_carlo_noise(n):
    cost = _cascade_costs(n)
    fast = intervals.bootstrap_mean_interval(cost, n_bootstrap=4000, seed=1, draws="counts")
    slow = intervals.bootstrap_mean_interval(cost, n_bootstrap=4000, seed=2, draws="indices")
    span = slow.high - slow.low
    assert span > 0 and fast.estimate == slow.estimate
    for a, b in ((fast.low, slow.low), (fast.high, slow.high)):
        # percentile ends are discrete at small n: one sample's step more is noise
        assert abs(a - b) <= 0.08 * span + 1.3 / n + 1e-12, (fast, slow)
    assert fast.low <= fast.estimate <= fast.high and "value counts" in fast.method


def test_counts_degenerate_reproducible_and_checked():
    constant = intervals.bootstrap_mean_interval(np.full(50, 2.5), draws="counts")
    assert (constant.low, constant.estimate, constant.high) == (2.5, 2.5, 2.5)
    cost = _cascade_costs(500)
    assert intervals.bootstrap_mean_interval(cost, seed=4, draws="counts") == \
        intervals.bootstrap_mean_interval(cost, seed=4, draws="counts")
    with pytest.raises(UsageError, match="^draws must be one of"):
        intervals.bootstrap_mean_interval(cost, draws="magic")


def test_many_distinct_values_are_drawn_as_indices():
    values = np.random.default_rng(0).random(intervals.MAX_COUNT_CATEGORIES + 10)
    got = intervals.bootstrap_mean_interval(values, n_bootstrap=200, seed=3, draws="counts")
    assert got == intervals.bootstrap_mean_interval(values, n_bootstrap=200, seed=3, draws="indices")

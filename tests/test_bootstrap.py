"""core.bootstrap.counts_bootstrap_ci: the same bootstrap distribution as protocol.bootstrap_ci
(independent slow reference: resampling indices), drawn as multinomial category counts."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_explorer.core import protocol
from cascade_explorer.core.bootstrap import counts_bootstrap_ci
from cascade_explorer.core.errors import UsageError


def _cascade_outcome(n, seed=0):
    rng = np.random.default_rng(seed)
    stage = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    costs = np.array([0.06, 0.46, 1.3])[stage]            # cost fixed by the exit stage
    correct = rng.random(n) < np.array([0.9, 0.7, 0.55])[stage]
    return correct, costs


@pytest.mark.parametrize("n", [40, 2_000])
def test_counts_match_the_index_bootstrap_within_monte_carlo_noise(n):
    correct, cost = _cascade_outcome(n)
    fast = counts_bootstrap_ci(correct, cost, n_bootstrap=4000, seed=1)
    slow = protocol.bootstrap_ci(correct, cost, n_bootstrap=4000, seed=2)
    width = slow["accuracy"][1] - slow["accuracy"][0]
    assert width > 0
    for key in ("accuracy", "avg_gmacs"):
        span = slow[key][1] - slow[key][0]
        for a, b in zip(fast[key], slow[key]):
            # percentile ends are discrete at small n: one sample's step more is noise
            assert abs(a - b) <= 0.08 * span + (1.0 if key == "accuracy" else 1.3) / n + 1e-12, (key, fast[key], slow[key])
    # the interval holds the observed means
    assert fast["accuracy"][0] <= correct.mean() <= fast["accuracy"][1]
    assert fast["avg_gmacs"][0] <= cost.mean() <= fast["avg_gmacs"][1]


def test_degenerate_and_reproducible():
    assert counts_bootstrap_ci(np.ones(50, bool), np.full(50, 2.5)) == {"accuracy": (1.0, 1.0),
                                                                       "avg_gmacs": (2.5, 2.5)}
    correct, cost = _cascade_outcome(500)
    assert counts_bootstrap_ci(correct, cost, seed=4) == counts_bootstrap_ci(correct, cost, seed=4)
    with pytest.raises(UsageError, match="^correct has 3 samples but cost has 2"):
        counts_bootstrap_ci(np.ones(3, bool), np.ones(2))
    with pytest.raises(UsageError, match="^n_bootstrap"):
        counts_bootstrap_ci(np.ones(3, bool), np.ones(3), n_bootstrap=0)


def test_many_distinct_costs_fall_back_to_the_index_bootstrap():
    rng = np.random.default_rng(0)
    correct, cost = rng.random(6000) < 0.7, rng.random(6000)     # > MAX_CATEGORIES distinct pairs
    assert counts_bootstrap_ci(correct, cost, n_bootstrap=50, seed=3) == protocol.bootstrap_ci(
        correct, cost, n_bootstrap=50, seed=3)

"""Confidence intervals that stay honest at the edges, each naming its method.

- A share of samples (accuracy, escalated share) is a binomial proportion: it gets an exact
  Clopper-Pearson interval (or Wilson's score interval on request). 21 of 21 right gives
  [0.839, 1.0] at 95%, where a bootstrap says [1, 1].
- A mean cost (GMACs per sample) gets a percentile bootstrap interval, widened when needed so it
  always contains the estimate (resampled means can miss a constant cost by one rounding step).

Plain arrays in, plain results out; every function raises UsageError (a ValueError) for bad input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .signals import check_correct
from .validate import check_array, check_int, check_number

PROPORTION_METHODS = ("exact", "wilson")

# Resampled indices held at once (rows x N); bounds memory for large N.
BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A two-sided interval [low, high] at confidence `level` around `estimate`, made by `method`."""

    estimate: float
    low: float
    high: float
    level: float
    method: str

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.low, self.high)

    def to_dict(self) -> dict:
        return {"estimate": float(self.estimate), "low": float(self.low), "high": float(self.high),
                "level": float(self.level), "method": self.method}


def check_level(level, name: str = "level") -> float:
    """A confidence level strictly between 0 and 1 (0.95, not 95)."""
    value = check_number(level, name)
    if not 0.0 < value < 1.0:
        raise UsageError(f"{name} must be strictly between 0 and 1 (e.g. 0.95), got {value:g}")
    return value


def _check_counts(successes, n) -> tuple[int, int]:
    n = check_int(n, "n", minimum=1)
    successes = check_int(successes, "successes", minimum=0)
    if successes > n:
        raise UsageError(f"successes must be <= n ({n}), got {successes}")
    return successes, n


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion: `successes` of `n`.

    Each tail holds at most (1 - level) / 2: low = Beta^-1((1-level)/2; k, n-k+1) (0 when k = 0),
    high = Beta^-1((1+level)/2; k+1, n-k) (1 when k = n). Never shorter than it should be: its
    coverage is >= level for every true proportion. Same as
    scipy.stats.binomtest(k, n).proportion_ci(level, method="exact").
    """
    from scipy import special   # imported when used: scipy.stats alone takes seconds to import

    k, n = _check_counts(successes, n)
    level = check_level(level)
    tail = (1.0 - level) / 2.0
    low = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, tail))
    high = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1.0 - tail))
    return low, high


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (no continuity correction) for `successes` of `n`.

    centre (k + z^2/2) / (n + z^2), half-width z / (n + z^2) * sqrt(k (n - k) / n + z^2 / 4) with
    z = Phi^-1((1 + level) / 2). Shorter than Clopper-Pearson and never degenerate at k = 0 or n, but
    its coverage can dip below `level` for some proportions. Same as scipy's method="wilson".
    """
    from scipy import stats   # imported when used: scipy.stats alone takes seconds to import

    k, n = _check_counts(successes, n)
    level = check_level(level)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    denominator = n + z * z
    centre = (k + z * z / 2.0) / denominator
    half = z / denominator * math.sqrt(k * (n - k) / n + z * z / 4.0)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def proportion_interval(successes: int, n: int, level: float = 0.95, method: str = "exact") -> Interval:
    """Interval for a proportion, named: method "exact" (Clopper-Pearson) or "wilson"."""
    if method not in PROPORTION_METHODS:
        raise UsageError(f"method must be one of {list(PROPORTION_METHODS)}, got {method!r}")
    k, n = _check_counts(successes, n)
    low, high = (clopper_pearson if method == "exact" else wilson)(k, n, level)
    name = "Clopper-Pearson exact binomial" if method == "exact" else "Wilson score"
    return Interval(k / n, low, high, check_level(level), name)


def _distinct_mean(values: np.ndarray, counts: np.ndarray, n: int):
    """sum(count x value) / n: a cascade's cost takes few distinct values (one per exit stage), and
    CascadeResult.avg_gmacs is computed the same way, so a constant cost averages to itself exactly."""
    return (counts * values).sum(axis=-1) / n   # row by row: the same sum whatever the chunking


BOOTSTRAP_DRAWS = ("indices", "counts")
# More distinct values than this: drawing counts per value is no cheaper than drawing the indices.
MAX_COUNT_CATEGORIES = 4096


def bootstrap_mean_interval(values, level: float = 0.95, n_bootstrap: int = 1000, seed: int = 0,
                            name: str = "values", draws: str = "indices") -> Interval:
    """Percentile bootstrap interval of the mean of `values` (1-D, finite), containing the estimate.

    Replicate b resamples N values with the b-th draw of `rng.integers(0, N, size=N)` from
    `np.random.default_rng(seed)` (the same draws as protocol's bootstrap always used). The percentile
    interval is widened to the estimate when it misses it (a rounding step for a constant cost, or a
    very skewed sample), so low <= estimate <= high always. The estimate is the mean computed from the
    distinct values and their counts, as CascadeResult.avg_gmacs is.

    draws="counts": the same bootstrap distribution drawn another way. A resample's mean depends only
    on how many draws fall on each distinct value, and those counts are Multinomial(N, observed
    shares); drawing them (B x K numbers) instead of B x N indices is about N/K times faster (a
    cascade's cost takes one value per exit stage: 1,000 replicates at N = 50,000 in ~1 ms instead of
    ~1 s, what a dashboard slider move can afford). Another random stream: the ends differ from
    draws="indices" by Monte Carlo noise. With more than MAX_COUNT_CATEGORIES distinct values the
    indices are drawn.
    """
    values = check_array(values, name, finite=True)
    n = values.size
    if n == 0:
        raise UsageError(f"{name} needs at least one sample")
    level = check_level(level)
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if draws not in BOOTSTRAP_DRAWS:
        raise UsageError(f"draws must be one of {', '.join(BOOTSTRAP_DRAWS)}, got {draws!r}", parameter="draws")
    distinct, inverse = np.unique(values, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_distinct = distinct.size
    observed = np.bincount(inverse, minlength=n_distinct)
    estimate = float(_distinct_mean(distinct, observed, n))
    rng = np.random.default_rng(seed)
    tail = (1.0 - level) / 2.0
    if draws == "counts" and n_distinct <= MAX_COUNT_CATEGORIES:
        means = _distinct_mean(distinct, rng.multinomial(n, observed / n, size=n_bootstrap), n)
        low, high = (float(q) for q in np.quantile(means, [tail, 1.0 - tail]))
        return Interval(estimate, min(low, estimate), max(high, estimate), level,
                        f"percentile bootstrap ({n_bootstrap} resamples drawn as value counts, seed {seed}), "
                        "widened to contain the estimate")
    means = np.empty(n_bootstrap)
    rows = max(1, BOOTSTRAP_CHUNK_ELEMENTS // n)
    for start in range(0, n_bootstrap, rows):
        stop = min(n_bootstrap, start + rows)
        # Row-major draw of (rows, n) consumes the stream like `rows` draws of size n.
        index = rng.integers(0, n, size=(stop - start, n))
        codes = inverse[index] + n_distinct * np.arange(stop - start)[:, None]
        counts = np.bincount(codes.ravel(), minlength=(stop - start) * n_distinct).reshape(-1, n_distinct)
        means[start:stop] = _distinct_mean(distinct, counts, n)
    low, high = (float(q) for q in np.quantile(means, [tail, 1.0 - tail]))
    low, high = min(low, estimate), max(high, estimate)
    return Interval(estimate, low, high, level,
                    f"percentile bootstrap ({n_bootstrap} resamples, seed {seed}), widened to contain the estimate")


def cascade_intervals(correct, cost, escalated=None, *, level: float = 0.95, n_bootstrap: int = 1000,
                      seed: int = 0, proportion_method: str = "exact", draws: str = "indices") -> dict:
    """Estimates and intervals of a cascade's accuracy, mean cost and escalated share on N samples.

    correct: (N,) bool (or 0/1), the cascade's answer was right; cost: (N,) GMACs spent per sample
    (finite, >= 0); escalated: (N,) bool, the sample reached the last stage, or None to skip.
    Accuracy and escalated share get `proportion_method` ("exact" = Clopper-Pearson, or "wilson");
    the mean cost a percentile bootstrap that always contains its estimate (see
    bootstrap_mean_interval; replicate draws depend only on N, n_bootstrap and seed).

    Returns {"accuracy", "accuracy_ci": (lo, hi), "avg_gmacs", "avg_gmacs_ci", "escalated",
    "escalated_ci" (None when escalated is None), "level", "n_samples", "methods": {"accuracy",
    "avg_gmacs", "escalated"}}: fractions in [0, 1], GMACs per sample. Report these estimates (or
    CascadeResult's, computed the same way) next to the intervals.
    Raises UsageError for empty or mismatched inputs, a level outside (0, 1), n_bootstrap < 1.
    """
    correct = check_correct(correct, "correct")
    cost = check_array(cost, "cost", finite=True, minimum=0.0)
    n = correct.size
    if cost.size != n:
        raise UsageError(f"correct has {n} samples but cost has {cost.size}; pass one cost per sample")
    if n == 0:
        raise UsageError("intervals need at least one sample")
    if escalated is not None:
        escalated = check_correct(escalated, "escalated", length=n)
    level = check_level(level)
    accuracy = proportion_interval(int(np.count_nonzero(correct)), n, level, proportion_method)
    avg_gmacs = bootstrap_mean_interval(cost, level, n_bootstrap, seed, name="cost", draws=draws)
    share = None if escalated is None else proportion_interval(int(np.count_nonzero(escalated)), n, level,
                                                                 proportion_method)
    return {
        "accuracy": accuracy.estimate, "accuracy_ci": accuracy.bounds,
        "avg_gmacs": avg_gmacs.estimate, "avg_gmacs_ci": avg_gmacs.bounds,
        "escalated": None if share is None else share.estimate,
        "escalated_ci": None if share is None else share.bounds,
        "level": level, "n_samples": int(n),
        "methods": {"accuracy": accuracy.method, "avg_gmacs": avg_gmacs.method,
                    "escalated": None if share is None else share.method},
    }

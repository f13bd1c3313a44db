"""Certified thresholds: a target that holds on new data, not just on the calibration samples.

`protocol.fit_thresholds` picks the cheapest thresholds that meet a target on the calibration
samples; on new data from the same distribution they miss it about half the time, since the fit
sits right at the edge. `certify_thresholds` picks thresholds for which, with probability
>= 1 - delta over the draw of the calibration samples, the target holds in expectation on new
samples from the same distribution:

    Learn then Test (Angelopoulos, Bates, Candes, Jordan, Lei 2021, "Learn then Test: Calibrating
    Predictive Algorithms to Achieve Risk Control", arXiv:2110.01052). Each candidate threshold
    setting lambda gets the null hypothesis H_lambda: R(lambda) = E[loss] > alpha and a valid
    p-value; the candidates are walked in a fixed order from the most conservative on, each is
    rejected while its p-value is <= delta, and the walk stops at the first that is not
    (fixed-sequence testing, family-wise error <= delta). Every rejected candidate is certified at
    once; the best of them on the calibration samples is returned.

Targets and the loss whose mean is held below alpha (all losses lie in [0, 1]):

    target_accuracy a     loss = 1[cascade wrong]                              alpha = 1 - a
    max_accuracy_drop e   loss = 1[last stage right and cascade wrong]         alpha = e
                          (accuracy(last) - accuracy(cascade) <= E[loss], so the drop is at most e;
                          conservative: the cascade being right where the last stage is wrong is
                          not credited)
    max_escalated e       loss = 1[sample reaches the last stage]              alpha = e
    max_gmacs c           loss = GMACs spent on the sample / GMACs of all stages  alpha = c / that

p-values (LTT section 3.1): a 0/1 loss with k losses among n samples gets the exact binomial tail
p = P(Bin(n, alpha) <= k). A loss in [0, 1] with mean r gets Hoeffding-Bentkus (LTT eq. 8 / Bates
et al. 2021 "Distribution-free, risk-controlling prediction sets"):
p = min(exp(-n h1(min(r, alpha), alpha)), e * P(Bin(n, alpha) <= ceil(n r))),
h1(a, b) = a log(a/b) + (1-a) log((1-a)/(1-b)). The cost loss of a chain whose cumulative costs
take only two values (any 2-stage chain) is an affine image of a 0/1 loss, so "auto" uses the exact
binomial for it too; Hoeffding-Bentkus for 3+ distinct costs.

The guarantee is about the expected loss on the distribution the calibration samples were drawn
from (i.i.d.); a finite batch of new data still scatters around it, and a shifted distribution
voids it. Plain arrays in, a frozen Certificate out; caller mistakes raise UsageError (a ValueError).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .curves import cascade_curve, finite_threshold, pareto_front
from .engine import check_costs, check_stages, evaluate_cascade
from .errors import UsageError
from .jsonsafe import json_float
from .signals import ModelSignals
from .validate import check_array, check_fraction, check_int, check_number

TARGETS = ("target_accuracy", "max_accuracy_drop", "max_escalated", "max_gmacs")
P_VALUES = ("auto", "binomial", "hoeffding_bentkus")

LOSSES = {
    "target_accuracy": "1[cascade wrong] (alpha = 1 - target accuracy)",
    "max_accuracy_drop": "1[last stage right and cascade wrong], an upper bound of the accuracy drop",
    "max_escalated": "1[sample reaches the last stage]",
    "max_gmacs": "GMACs spent on the sample / GMACs of the whole chain",
}

# Losses summed over at most 2**53 samples are whole numbers exactly; this absorbs the rounding of
# a float loss sum before ceil() in the Bentkus term (a 3.0000000000004 must not count as 4).
_SUM_ROUND = 1e-9
# Candidate rows x samples evaluated at once for 3+ stages; bounds memory for large N.
_CHUNK_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------------------
# p-values and fixed-sequence testing
# --------------------------------------------------------------------------------------

def binomial_p_value(n_losses, n: int, alpha: float):
    """Exact p-value of H: risk > alpha for a 0/1 loss: P(Bin(n, alpha) <= n_losses).

    n_losses: a count or an array of counts in [0, n]; n: samples (>= 1); alpha: the risk limit
    (<= 0: 1, nothing can be certified; >= 1: 0, the null cannot hold). Valid (super-uniform under
    the null) because P(Bin(n, r) <= k) falls as r grows. Returns a float or an array like n_losses.
    """
    n = check_int(n, "n", minimum=1)
    alpha = check_number(alpha, "alpha", allow_inf=True)
    k = check_array(n_losses, "n_losses", ndim=np.ndim(n_losses), minimum=0.0, maximum=float(n))
    p = _binomial(np.floor(k + _SUM_ROUND), n, alpha)
    return float(p) if np.ndim(n_losses) == 0 else p


def _settled(values: np.ndarray, alpha: float) -> np.ndarray | None:
    """The p-values of H: risk > alpha when alpha alone settles it (alpha >= 1: H is impossible, p = 0;
    alpha <= 0: H holds for any loss above 0, p = 1), else None."""
    if alpha >= 1.0:
        return np.zeros_like(values, dtype=np.float64)
    if alpha <= 0.0:
        return np.ones_like(values, dtype=np.float64)
    return None


def _binomial(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    from scipy import stats   # imported when used: scipy.stats alone takes seconds to import

    settled = _settled(k, alpha)
    if settled is not None:
        return settled
    return np.minimum(stats.binom.cdf(k, n, alpha), 1.0)


def hoeffding_bentkus_p_value(risk, n: int, alpha: float):
    """Hoeffding-Bentkus p-value of H: risk > alpha for a loss in [0, 1] with observed mean `risk`
    over n samples (LTT eq. 8): min(exp(-n h1(min(risk, alpha), alpha)), e P(Bin(n, alpha) <= ceil(n risk))).

    risk: a mean loss or an array of them, in [0, 1]; alpha <= 0 gives 1, alpha >= 1 gives 0.
    """
    n = check_int(n, "n", minimum=1)
    alpha = check_number(alpha, "alpha", allow_inf=True)
    r = check_array(risk, "risk", ndim=np.ndim(risk), minimum=0.0, maximum=1.0)
    p = _hoeffding_bentkus(r, n, alpha)
    return float(p) if np.ndim(risk) == 0 else p


def _hoeffding_bentkus(r: np.ndarray, n: int, alpha: float) -> np.ndarray:
    from scipy import special, stats   # imported when used: scipy.stats alone takes seconds to import

    settled = _settled(r, alpha)
    if settled is not None:
        return settled
    a = np.minimum(r, alpha)
    h1 = special.rel_entr(a, alpha) + special.rel_entr(1.0 - a, 1.0 - alpha)
    hoeffding = np.exp(-n * h1)
    bentkus = math.e * stats.binom.cdf(np.ceil(n * r - _SUM_ROUND), n, alpha)
    return np.minimum(np.minimum(hoeffding, bentkus), 1.0)


def fixed_sequence_test(p_values, delta: float) -> int:
    """How many leading hypotheses fixed-sequence testing rejects: H_1, H_2, ... in the given order,
    each rejected while p <= delta, stopping at the first p > delta (or NaN). Family-wise error
    <= delta when the order does not depend on the data behind the p-values."""
    p = check_array(p_values, "p_values")
    delta = _check_delta(delta)
    failing = np.flatnonzero(~(p <= delta))
    return int(failing[0]) if failing.size else int(p.size)


def _check_delta(delta) -> float:
    if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, (int, float, np.number)) \
            or not 0.0 < float(delta) < 1.0:
        raise UsageError(f"delta must be in (0, 1) (the chance the guarantee fails, e.g. 0.05), got {delta!r}")
    return float(delta)


# --------------------------------------------------------------------------------------
# The certificate
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Certificate:
    """Thresholds from `certify_thresholds` and what was (or could not be) certified.

    thresholds: one per non-final stage (+inf: never exit there, -inf: always exit). When
    certified, with probability >= 1 - delta over the calibration draw the target holds in
    expectation on new samples from the calibration distribution. When not, they are the most
    conservative candidate and carry no guarantee (see message and samples_needed).
    target / target_value: which target and its value (fractions in [0, 1]; GMACs per sample).
    loss / risk_limit: the loss whose mean is held <= risk_limit (alpha; see the module docstring).
    observed_risk: that loss's mean on the testing samples at these thresholds; p_value: its p-value.
    n_calibration: samples given; n_testing: samples behind the p-values (all of them for 2
    stages, the testing part for 3+); n_candidates: candidates in the sequence; n_tested: how many
    the walk tested before it stopped (the last one failed unless all were rejected).
    accuracy, avg_gmacs (GMACs per sample), escalated_fraction, exit_fractions: on all calibration
    samples at these thresholds (optimistic, like any in-sample figure; the guarantee is the point).
    samples_needed: when nothing is certified but the most conservative candidate's observed risk
    is below the limit, roughly how many calibration samples would certify it if that observed risk
    stayed the same (the smallest n whose p-value at that risk is <= delta; for 3+ stages scaled up by
    the split); None otherwise.
    """

    thresholds: tuple[float, ...]
    certified: bool
    target: str
    target_value: float
    delta: float
    loss: str
    risk_limit: float
    observed_risk: float
    p_value: float
    method: str
    n_calibration: int
    n_testing: int
    n_candidates: int
    n_tested: int
    accuracy: float
    avg_gmacs: float
    escalated_fraction: float
    exit_fractions: tuple[float, ...]
    samples_needed: int | None
    message: str

    def to_dict(self) -> dict:
        """JSON-ready (thresholds of +-inf as "inf"/"-inf", NaN as None)."""
        return {
            "thresholds": [json_float(t) for t in self.thresholds], "certified": bool(self.certified),
            "target": self.target, "target_value": json_float(self.target_value), "delta": float(self.delta),
            "loss": self.loss, "risk_limit": json_float(self.risk_limit),
            "observed_risk": json_float(self.observed_risk), "p_value": json_float(self.p_value),
            "method": self.method, "n_calibration": int(self.n_calibration), "n_testing": int(self.n_testing),
            "n_candidates": int(self.n_candidates), "n_tested": int(self.n_tested),
            "accuracy": json_float(self.accuracy), "avg_gmacs": json_float(self.avg_gmacs),
            "escalated_fraction": json_float(self.escalated_fraction),
            "exit_fractions": [json_float(f) for f in self.exit_fractions],
            "samples_needed": None if self.samples_needed is None else int(self.samples_needed),
            "message": self.message,
        }


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------

def _one_target(values: dict) -> tuple[str, float]:
    given = [name for name in TARGETS if values[name] is not None]
    if len(given) != 1:
        raise UsageError("give exactly one target: target_accuracy, max_accuracy_drop, max_escalated or "
                         f"max_gmacs (got {', '.join(given) or 'none'})")
    kind = given[0]
    if kind == "max_gmacs":
        return kind, check_number(values[kind], kind, minimum=0.0)
    return kind, check_fraction(values[kind], kind)


@dataclass
class _Loss:
    """Per-sample loss of each exit stage, and how its p-values are computed.

    table: (S, N) loss in [0, 1] if sample i exits at stage s; alpha: the limit on its mean.
    indicator (S, N) and alpha01: the same loss as 0/1 with its limit, when loss = low + (high - low)
    * indicator with low, high known before seeing data (None: the loss takes 3+ values).
    use_binomial: p-values by the exact binomial on the indicator, else Hoeffding-Bentkus on table.
    """

    table: np.ndarray
    alpha: float
    indicator: np.ndarray | None
    alpha01: float
    use_binomial: bool


def _loss(kind: str, value: float, stages: list[ModelSignals], cum: np.ndarray, p_value: str) -> _Loss:
    correct = np.stack([s.correct for s in stages])           # (S, N)
    n_stages, n = correct.shape
    if kind == "target_accuracy":
        table, alpha = (~correct).astype(np.float64), 1.0 - value
    elif kind == "max_accuracy_drop":
        table = (correct[-1][None, :] & ~correct).astype(np.float64)   # 0 at the last stage itself
        alpha = value
    elif kind == "max_escalated":
        table = np.zeros((n_stages, n))
        table[-1] = 1.0
        alpha = value
    else:
        worst = float(cum[-1])
        per_stage = cum / worst if worst > 0 else np.zeros(n_stages)
        table = np.repeat(per_stage[:, None], n, axis=1)
        alpha = value / worst if worst > 0 else math.inf
    indicator, alpha01 = table, alpha
    if kind == "max_gmacs":
        levels = np.unique(table[:, 0])
        if len(levels) > 2:
            indicator = None
        elif len(levels) == 1:   # every setting costs the same: certain, no data needed
            indicator = np.zeros_like(table)
            alpha01 = math.inf if levels[0] <= alpha else -math.inf
        else:
            low, high = levels
            indicator = (table == high).astype(np.float64)
            alpha01 = (alpha - low) / (high - low)
    if p_value == "binomial" and indicator is None:
        raise UsageError("p_value='binomial' needs a 0/1 loss, but this chain's cost takes "
                         f"{len(np.unique(cum))} values; use 'hoeffding_bentkus' or 'auto'")
    use_binomial = indicator is not None and p_value != "hoeffding_bentkus"
    return _Loss(table, alpha, indicator, alpha01, use_binomial)


def _p_values(loss: _Loss, loss_sums: np.ndarray, indicator_sums: np.ndarray, n: int) -> np.ndarray:
    if loss.use_binomial:
        return _binomial(np.floor(indicator_sums + _SUM_ROUND), n, loss.alpha01)
    return _hoeffding_bentkus(np.clip(loss_sums / n, 0.0, 1.0), n, loss.alpha)


def _p_value_name(loss: _Loss, kind: str) -> str:
    if not loss.use_binomial:
        return "Hoeffding-Bentkus p-value (LTT eq. 8)"
    if kind == "max_gmacs":
        return "exact binomial p-value (the cost takes two values: an affine image of a 0/1 loss)"
    return "exact binomial p-value"


# --------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------

@dataclass
class _Walk:
    """The fixed-sequence walk: candidates in test order, the ones it evaluated, and what it found.

    thresholds: (T, S-1), the candidates the walk evaluated (T <= n_candidates: the 3+ stage walk
    stops evaluating at the first failure); loss_sums, indicator_sums, p_values: (T,), over the
    testing samples; n_rejected: the leading candidates rejected (certified); correct, cost: (R,)
    sums over all calibration samples for the rejected ones (for choosing among them).
    """

    thresholds: np.ndarray
    loss_sums: np.ndarray
    indicator_sums: np.ndarray
    p_values: np.ndarray
    n_candidates: int
    n_rejected: int
    correct: np.ndarray
    cost: np.ndarray
    first_known: bool


def _risk_grows_with_exits(kind: str) -> bool:
    """accuracy and drop: the risk grows as more samples exit early (conservative = escalate all);
    escalated share and cost: it grows as more samples are escalated (conservative = exit all)."""
    return kind in ("target_accuracy", "max_accuracy_drop")


def _first_known_risk(kind: str, loss: _Loss) -> float | None:
    """The most conservative setting's risk when it is known without data: nothing escalated (0
    escalated, the first stage's cost) or, for the drop, everything escalated (the last stage's own
    answers: no loss); None for the accuracy target (the last stage's error is unknown)."""
    if kind == "max_accuracy_drop" or kind == "max_escalated":
        return 0.0
    if kind == "max_gmacs":
        return float(loss.table[0, 0])
    return None


def _test(loss: _Loss, kind: str, loss_sums, indicator_sums, n: int, includes_first: bool) -> np.ndarray:
    """p-values of a run of candidates; the first candidate's, when its risk is known, is 0 or 1."""
    p_values = _p_values(loss, loss_sums, indicator_sums, n)
    known = _first_known_risk(kind, loss)
    if includes_first and known is not None:   # the null surely holds or surely not
        p_values[0] = 0.0 if known <= loss.alpha else 1.0
    return p_values


def _pair_walk(stages, cum, kind: str, loss: _Loss, delta: float) -> _Walk:
    """2 stages: every distinct confidence of stage 0 (and +inf) is a threshold, by one sort.

    The walk over these points is the walk over every real threshold: between two neighbouring
    confidences nothing changes on the calibration samples, so each point stands for the interval of
    thresholds just below it, and the order (by threshold) does not depend on the data. Descending
    from +inf (escalate everything) for the accuracy and drop targets; for the budgets ascending from
    -inf (exit everything, its risk known without data) to +inf.
    """
    conf = stages[0].confidence
    n = len(conf)
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    ends = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    n_exit = np.concatenate([[0], ends + 1])                        # thresholds descending from +inf
    thresholds = np.concatenate([[np.inf], finite_threshold(sorted_conf[ends])])

    def sums(per_stage):   # (2, N) -> sum over samples at each threshold
        exit_part = np.concatenate([[0.0], np.cumsum(per_stage[0][order])])
        next_part = np.concatenate([[0.0], np.cumsum(per_stage[1][order])])
        return exit_part[n_exit] + (next_part[-1] - next_part[n_exit])

    correct = sums(np.stack([s.correct for s in stages]).astype(np.float64))
    loss_sums = sums(loss.table)
    indicator_sums = sums(loss.indicator) if loss.indicator is not None else loss_sums
    cost = n_exit * cum[0] + (n - n_exit) * cum[1]
    if not _risk_grows_with_exits(kind):
        # -inf exits everything, as the lowest confidence does on these samples
        thresholds = np.concatenate([[-np.inf], thresholds[::-1]])
        loss_sums, indicator_sums, correct, cost = (np.concatenate([a[-1:], a[::-1]]) for a in
                                                    (loss_sums, indicator_sums, correct, cost))
    p_values = _test(loss, kind, loss_sums, indicator_sums, n, includes_first=True)
    n_rejected = fixed_sequence_test(p_values, delta)
    return _Walk(thresholds[:, None], loss_sums, indicator_sums, p_values, len(thresholds), n_rejected,
                 correct[:n_rejected], cost[:n_rejected], _first_known_risk(kind, loss) is not None)


def _evaluate_settings(conf: np.ndarray, thresholds: np.ndarray, tables: np.ndarray) -> np.ndarray:
    """(P, K) sums over samples of tables (S, N, K) at each sample's exit stage, for each row of
    thresholds (P, S-1); chunked over rows, one matrix product per stage."""
    n_stages, n = conf.shape
    out = np.empty((len(thresholds), tables.shape[2]))
    rows = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, len(thresholds), rows):
        t = thresholds[start:start + rows]
        remaining = np.ones((len(t), n), dtype=bool)
        total = np.zeros((len(t), tables.shape[2]))
        for s in range(n_stages - 1):
            exits = remaining & (conf[s][None, :] >= t[:, s:s + 1]) & (t[:, s:s + 1] != np.inf)
            total += exits.astype(np.float64) @ tables[s]
            remaining &= ~exits
        out[start:start + len(t)] = total + remaining.astype(np.float64) @ tables[-1]
    return out


def _pareto_path(stages_opt, gmacs, cum, kind: str, grid_size: int) -> np.ndarray:
    """Pareto Testing, stage 1 (Laufer-Goldshtein, Fisch, Barzilay, Jaakkola, ICLR 2023, "Efficiently
    Controlling Multiple Risks with Pareto Testing"): on the optimisation part, the candidates of
    cascade_curve (earlier thresholds on a quantile grid, the last free one exact) that are Pareto
    optimal in (risk, objective), ordered by risk ascending. Objective: cost for the accuracy and
    drop targets, accuracy for the escalated-share and cost targets."""
    if kind == "max_accuracy_drop":   # 1 - accuracy of these signals is the drop loss
        last = stages_opt[-1].correct
        stages_opt = [ModelSignals(s.confidence, s.prediction, s.correct | ~last) for s in stages_opt[:-1]] \
            + [ModelSignals(stages_opt[-1].confidence, stages_opt[-1].prediction, np.ones_like(last))]
    curve = cascade_curve(stages_opt, gmacs, grid_size=grid_size)
    if kind in ("target_accuracy", "max_accuracy_drop"):
        risk, better = 1.0 - curve.accuracy, -curve.avg_gmacs
    elif kind == "max_escalated":
        risk, better = curve.escalated_fraction, curve.accuracy
    else:
        risk, better = curve.avg_gmacs / cum[-1] if cum[-1] > 0 else np.zeros(len(curve)), curve.accuracy
    return curve.thresholds[pareto_front(risk, better)]


def _chain_walk(stages, cum, kind: str, loss: _Loss, delta: float, testing: np.ndarray,
                path: np.ndarray) -> _Walk:
    """3+ stages: the most conservative setting, then the Pareto path, tested on the testing
    samples in growing blocks until the first failure (the rest is never evaluated)."""
    n_stages = len(stages)
    first = np.full((1, n_stages - 1), np.inf if _risk_grows_with_exits(kind) else -np.inf)
    thresholds = np.concatenate([first, path])
    conf = np.stack([s.confidence for s in stages])
    indicator = loss.indicator if loss.indicator is not None else loss.table
    test_tables = np.stack([loss.table[:, testing], indicator[:, testing]], axis=2)
    test_conf = conf[:, testing]
    sums, p_values = [], []
    start, block, n_rejected = 0, 64, 0
    while start < len(thresholds):
        stop = min(len(thresholds), start + block)
        block_sums = _evaluate_settings(test_conf, thresholds[start:stop], test_tables)
        block_p = _test(loss, kind, block_sums[:, 0], block_sums[:, 1], len(testing), includes_first=start == 0)
        sums.append(block_sums)
        p_values.append(block_p)
        passed = fixed_sequence_test(block_p, delta)
        n_rejected += passed
        if passed < stop - start:
            break
        start, block = stop, min(4 * block, 4096)
    sums = np.concatenate(sums)
    n = conf.shape[1]
    objective = _evaluate_settings(conf, thresholds[:n_rejected], np.stack(
        [np.stack([s.correct for s in stages]).astype(np.float64), np.repeat(cum[:, None], n, axis=1)], axis=2))
    return _Walk(thresholds[:len(sums)], sums[:, 0], sums[:, 1], np.concatenate(p_values), len(thresholds),
                 n_rejected, objective[:, 0], objective[:, 1], _first_known_risk(kind, loss) is not None)


# --------------------------------------------------------------------------------------
# certify_thresholds
# --------------------------------------------------------------------------------------

def certify_thresholds(stages: list[ModelSignals], gmacs, *, target_accuracy=None, max_accuracy_drop=None,
                       max_escalated=None, max_gmacs=None, delta: float = 0.05, p_value: str = "auto",
                       grid_size: int = 64, optimization_fraction: float = 0.5, seed: int = 0) -> Certificate:
    """Thresholds whose target holds on new data with probability >= 1 - delta (Learn then Test).

    stages: ModelSignals per stage (S >= 2), all over the same N calibration samples, which must be
    an i.i.d. sample of the data the cascade will meet (exchangeable with it). gmacs: S costs
    (GMACs per sample, finite, >= 0). Exactly one target: target_accuracy (fraction in [0, 1]),
    max_accuracy_drop (fraction: accuracy of the last stage minus the cascade's), max_escalated
    (fraction of samples reaching the last stage) or max_gmacs (average GMACs per sample).
    delta in (0, 1): the chance the guarantee may fail. p_value: "auto" (exact binomial for 0/1
    losses, Hoeffding-Bentkus otherwise), "binomial" or "hoeffding_bentkus" (valid for every target,
    less powerful for 0/1 losses).

    2 stages: Learn then Test over every distinct stage-0 confidence (+ +inf), walked from
    "escalate everything" down (accuracy, drop) or from "exit everything" up (escalated share,
    cost), with fixed-sequence testing; the cheapest certified setting is returned for the accuracy
    and drop targets, the most accurate one on the calibration samples for the budgets.

    3+ stages: Pareto Testing (Laufer-Goldshtein et al., ICLR 2023), a conservative reduction to
    one ordered sequence: the samples are split at random (`seed`) into an optimisation part
    (`optimization_fraction`) and a testing part. On the optimisation part, the cascade_curve
    candidates (`grid_size` values of each earlier threshold, the last free one exact) that are
    Pareto optimal in (risk, objective) are ordered by their risk; the most conservative setting
    goes first. Fixed-sequence testing then runs on the testing part only, so the order does not
    depend on the samples behind the p-values. The guarantee is the same; it needs more samples.

    Nothing certified (even the most conservative setting fails): certified=False, thresholds =
    that most conservative setting (for the accuracy target: the last stage alone), the reason in
    message and, when more data could help, an estimate in samples_needed.

    Returns a Certificate. Raises UsageError for fewer than 2 stages, stages of different lengths or
    no samples, costs that are not one finite number >= 0 per stage, not exactly one target, a
    target out of range, delta not in (0, 1), an unknown p_value, p_value="binomial" for a cost that
    takes 3+ values, or 3+ stages with fewer than 2 samples.
    """
    kind, value = _one_target({"target_accuracy": target_accuracy, "max_accuracy_drop": max_accuracy_drop,
                               "max_escalated": max_escalated, "max_gmacs": max_gmacs})
    delta = _check_delta(delta)
    if p_value not in P_VALUES:
        raise UsageError(f"p_value must be one of {list(P_VALUES)}, got {p_value!r}")
    stages = check_stages(stages)
    n_stages = len(stages)
    if n_stages < 2:
        raise UsageError("certifying thresholds needs a cascade of at least 2 stages, got 1")
    n = len(stages[0])
    if n == 0 or any(len(s) != n for s in stages):
        raise UsageError(f"all stages must cover the same non-empty set of calibration samples, got lengths "
                         f"{[len(s) for s in stages]}")
    costs = check_costs(gmacs, n_stages, "gmacs")
    cum = np.cumsum(costs)
    grid_size = check_int(grid_size, "grid_size", minimum=1)
    optimization_fraction = check_fraction(optimization_fraction, "optimization_fraction", open_interval=True)
    seed = check_int(seed, "seed", minimum=0)
    loss = _loss(kind, value, stages, cum, p_value)

    if n_stages == 2:
        testing = np.arange(n)
        walk = _pair_walk(stages, cum, kind, loss, delta)
        procedure = ("Learn then Test (Angelopoulos et al. 2021): fixed-sequence testing over every "
                     "threshold of the first stage")
    else:
        if n < 2:
            raise UsageError(f"certifying a {n_stages}-stage cascade splits the calibration samples in two "
                             f"(Pareto Testing); it needs at least 2 samples, got {n}")
        permutation = np.random.default_rng(seed).permutation(n)
        n_opt = min(max(1, int(round(optimization_fraction * n))), n - 1)
        optimization, testing = np.sort(permutation[:n_opt]), np.sort(permutation[n_opt:])
        path = _pareto_path([s.subset(optimization) for s in stages], costs, cum, kind, grid_size)
        walk = _chain_walk(stages, cum, kind, loss, delta, testing, path)
        procedure = (f"Learn then Test with Pareto Testing (Laufer-Goldshtein et al. 2023): candidates ordered "
                     f"on {n_opt} samples, fixed-sequence testing on the other {len(testing)}")
    n_testing = len(testing)
    n_rejected = walk.n_rejected
    n_tested = min(n_rejected + 1, walk.n_candidates)
    method = f"{procedure}, {_p_value_name(loss, kind)}, family-wise error <= delta"
    chosen = _best(walk.correct, walk.cost, kind) if n_rejected else 0
    thresholds = tuple(float(t) for t in walk.thresholds[chosen])
    result = evaluate_cascade(stages, list(thresholds), costs)
    observed = float(walk.loss_sums[chosen] / n_testing)
    samples_needed = None
    if not n_rejected:
        needed = _samples_needed(loss, walk, n_testing, delta)
        if needed is not None and n_stages > 2:
            needed = int(math.ceil(needed * n / n_testing))
        samples_needed = needed
    certificate = dict(
        thresholds=thresholds, certified=bool(n_rejected), target=kind, target_value=value, delta=delta,
        loss=LOSSES[kind], risk_limit=loss.alpha, observed_risk=observed, p_value=float(walk.p_values[chosen]),
        method=method, n_calibration=n, n_testing=n_testing, n_candidates=walk.n_candidates, n_tested=n_tested,
        accuracy=result.accuracy, avg_gmacs=result.avg_gmacs, escalated_fraction=result.escalated_fraction,
        exit_fractions=tuple(float(f) for f in result.exit_fractions), samples_needed=samples_needed)
    return Certificate(**certificate, message=_message(certificate, kind, n_stages))


def _best(correct: np.ndarray, cost: np.ndarray, kind: str) -> int:
    """Among the rejected (certified) candidates, given their correct and cost sums: the cheapest
    (ties: more accurate, then earlier) for the accuracy and drop targets, the most accurate (ties:
    cheaper, then earlier) for the budgets."""
    index = np.arange(len(cost))
    if _risk_grows_with_exits(kind):
        order = np.lexsort((index, -correct, cost))
    else:
        order = np.lexsort((index, cost, -correct))
    return int(order[0])


def _samples_needed(loss: _Loss, walk: _Walk, n: int, delta: float) -> int | None:
    """Smallest m whose p-value at the first candidate's observed risk is <= delta (doubling, then
    bisection; the floor in the binomial makes it rough); None when that risk is not below alpha."""
    if walk.first_known:
        return None
    if loss.use_binomial:
        rate, alpha = walk.indicator_sums[0] / n, loss.alpha01

        def p_at(m):
            return float(_binomial(np.floor(np.array(m * rate) + _SUM_ROUND), m, alpha))
    else:
        rate, alpha = walk.loss_sums[0] / n, loss.alpha

        def p_at(m):
            return float(_hoeffding_bentkus(np.array(min(max(rate, 0.0), 1.0)), m, alpha))
    if not rate < alpha or alpha <= 0:
        return None
    high = max(1, n)
    while p_at(high) > delta:
        high *= 2
        if high > 2 ** 40:
            return None
    low = high // 2 if high > max(1, n) else 0
    while high - low > 1:
        middle = (low + high) // 2
        if p_at(middle) <= delta:
            high = middle
        else:
            low = middle
    return int(high)


_TARGET_WORDS = {
    "target_accuracy": "accuracy >= {v:.4g}",
    "max_accuracy_drop": "an accuracy drop of at most {v:.4g} against the last stage",
    "max_escalated": "at most {v:.4g} of samples escalated to the last stage",
    "max_gmacs": "an average cost of at most {v:.4g} GMACs per sample",
}


def _message(c: dict, kind: str, n_stages: int) -> str:
    target = _TARGET_WORDS[kind].format(v=c["target_value"])
    confidence = f"{100 * (1 - c['delta']):.4g}%"
    thresholds = "(" + ", ".join(f"{t:.6g}" for t in c["thresholds"]) + ")"
    if c["certified"]:
        return (f"Certified: with probability >= {confidence} over the calibration draw, thresholds {thresholds} "
                f"give {target} in expectation over new data from the calibration samples' distribution "
                f"({c['n_tested']} of {c['n_candidates']} "
                f"candidates tested on {c['n_testing']} samples; p-value {c['p_value']:.3g} <= delta "
                f"{c['delta']:g}).")
    conservative = ("every sample escalated to the last stage" if _risk_grows_with_exits(kind)
                    else "every sample answered by the first stage")
    head = (f"Not certified: even the most conservative setting ({conservative}, thresholds {thresholds}) "
            f"cannot be shown to give {target} with probability >= {confidence}")
    if c["observed_risk"] >= c["risk_limit"] or c["risk_limit"] <= 0:
        return (f"{head}: its observed loss {c['observed_risk']:.4g} on {c['n_testing']} samples is not below the "
                f"limit {c['risk_limit']:.4g}, so more data of this kind would not help; relax the target. "
                "The thresholds returned carry no guarantee.")
    needed = c["samples_needed"]
    estimate = ("" if needed is None else
                f" About {needed} calibration samples would be needed if the observed loss stayed at "
                f"{c['observed_risk']:.4g} (the smallest sample size whose p-value at that loss is <= delta"
                f"{', scaled up for the Pareto Testing split' if n_stages > 2 else ''}).")
    return (f"{head} from {c['n_testing']} samples (p-value {c['p_value']:.3g} > delta {c['delta']:g})."
            f"{estimate} The thresholds returned carry no guarantee.")

"""Certified thresholds (Learn then Test): p-values against loops and scipy, the fixed-sequence walk
against a from-scratch reference, and coverage on synthetic populations whose truth is known."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from cascade_explorer.core import certify, protocol
from cascade_explorer.core.certify import certify_thresholds
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.signals import ModelSignals

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _signals(confidence, correct):
    correct = np.asarray(correct, dtype=bool)
    return ModelSignals(np.asarray(confidence, dtype=np.float64), np.where(correct, 0, 1), correct)


# ----------------------------------------------------------------------------- p-values

def _binomial_loop(k, n, alpha):
    """P(Bin(n, alpha) <= k) by summing the probability of each count."""
    if alpha >= 1:
        return 0.0
    if alpha <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, j) * alpha ** j * (1 - alpha) ** (n - j) for j in range(int(k) + 1)))


def _hoeffding_bentkus_loop(risk, n, alpha):
    """LTT eq. 8 written out: min(exp(-n h1(min(r, a), a)), e P(Bin(n, a) <= ceil(n r)))."""
    if alpha >= 1:
        return 0.0
    if alpha <= 0:
        return 1.0
    a = min(risk, alpha)
    h1 = (a * math.log(a / alpha) if a > 0 else 0.0) + (1 - a) * math.log((1 - a) / (1 - alpha))
    return min(1.0, math.exp(-n * h1), math.e * _binomial_loop(math.ceil(round(n * risk, 9)), n, alpha))


@pytest.mark.parametrize("n", [1, 2, 7, 30, 120])
@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.1, 0.37, 0.9, 1.0])
def test_p_values_match_loops(n, alpha):
    counts = np.arange(n + 1)
    got = certify.binomial_p_value(counts, n, alpha)
    np.testing.assert_allclose(got, [_binomial_loop(k, n, alpha) for k in counts], rtol=1e-9, atol=1e-14)
    if 0 < alpha < 1:
        np.testing.assert_allclose(got, binom.cdf(counts, n, alpha), rtol=1e-12)
    risks = np.linspace(0, 1, 23)
    np.testing.assert_allclose(certify.hoeffding_bentkus_p_value(risks, n, alpha),
                               [_hoeffding_bentkus_loop(r, n, alpha) for r in risks], rtol=1e-9, atol=1e-14)
    assert isinstance(certify.binomial_p_value(0, n, alpha), float)


@pytest.mark.parametrize("n, alpha", [(20, 0.1), (100, 0.05), (333, 0.2)])
@pytest.mark.parametrize("delta", [0.05, 0.1])
def test_p_values_are_valid_at_the_boundary(n, alpha, delta):
    # a 0/1 loss with risk exactly alpha: P(p <= delta) summed exactly over the counts
    counts = np.arange(n + 1)
    weight = binom.pmf(counts, n, alpha)
    assert weight[certify.binomial_p_value(counts, n, alpha) <= delta].sum() <= delta + 1e-12
    assert weight[certify.hoeffding_bentkus_p_value(counts / n, n, alpha) <= delta].sum() <= delta + 1e-12
    # a three-valued loss {0, 1/2, 1} with mean alpha (Hoeffding-Bentkus only): Monte Carlo
    rng = np.random.default_rng(n)
    draws = rng.choice([0.0, 0.5, 1.0], p=[1 - 1.5 * alpha, alpha, 0.5 * alpha], size=(4000, n)).mean(axis=1)
    rate = (certify.hoeffding_bentkus_p_value(draws, n, alpha) <= delta).mean()
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / 4000)


def test_fixed_sequence_test_stops_at_the_first_failure():
    assert certify.fixed_sequence_test([0.01, 0.02, 0.5, 0.001], 0.05) == 2
    assert certify.fixed_sequence_test([0.01, 0.05, 0.04], 0.05) == 3       # p == delta is rejected
    assert certify.fixed_sequence_test([0.2, 0.0, 0.0], 0.05) == 0
    assert certify.fixed_sequence_test([0.0, np.nan, 0.0], 0.05) == 1       # NaN stops the walk
    assert certify.fixed_sequence_test([], 0.05) == 0
    with pytest.raises(UsageError, match=r"delta must be in \(0, 1\)"):
        certify.fixed_sequence_test([0.1], 1.5)


# ----------------------------------------------------------------------------- the walk, from scratch

def _reference_pair(conf0, correct0, correct1, gmacs, kind, value, delta, p_value):
    """Learn then Test for 2 stages, by loops: every candidate evaluated sample by sample."""
    n, worst = len(conf0), gmacs[0] + gmacs[1]
    alpha = {"target_accuracy": 1 - value, "max_accuracy_drop": value, "max_escalated": value,
             "max_gmacs": value / worst}[kind]

    def evaluate(t):
        losses, n_right, n_escalated = [], 0, 0
        for i in range(n):
            exits = t != math.inf and conf0[i] >= t
            right = correct0[i] if exits else correct1[i]
            n_right += right
            n_escalated += not exits
            losses.append({"target_accuracy": float(not right),
                           "max_accuracy_drop": float(correct1[i] and not right),
                           "max_escalated": float(not exits),
                           "max_gmacs": (gmacs[0] if exits else worst) / worst}[kind])
        return losses, n_right, n_escalated

    def p_of(losses, n_escalated):
        if kind == "max_gmacs" and p_value == "auto":   # two costs: the escalated count is the 0/1 loss
            return _binomial_loop(n_escalated, n, (value - gmacs[0]) / gmacs[1])
        if p_value == "hoeffding_bentkus":
            return _hoeffding_bentkus_loop(sum(losses) / n, n, alpha)
        return _binomial_loop(sum(losses), n, alpha)

    distinct = sorted(set(float(c) for c in conf0))
    if kind in ("target_accuracy", "max_accuracy_drop"):
        order = [math.inf] + distinct[::-1]
    else:
        order = [-math.inf] + distinct + [math.inf]
    rejected, tested, p_values = [], 0, []
    for position, t in enumerate(order):
        losses, n_right, n_escalated = evaluate(t)
        if position == 0 and kind != "target_accuracy":   # known without data: 0 (or the first cost)
            known = gmacs[0] / worst if kind == "max_gmacs" else 0.0
            p = 0.0 if known <= alpha else 1.0
        else:
            p = p_of(losses, n_escalated)
        tested += 1
        p_values.append(p)
        if p > delta:
            break
        cost = (n - n_escalated) * gmacs[0] + n_escalated * worst
        rejected.append((position, t, n_right, cost))
    if not rejected:
        return order[0], False, tested, p_values[0]
    if kind in ("target_accuracy", "max_accuracy_drop"):
        best = min(rejected, key=lambda r: (r[3], -r[2], r[0]))
    else:
        best = min(rejected, key=lambda r: (-r[2], r[3], r[0]))
    return best[1], True, tested, p_values[best[0]]


pair_cases = st.integers(1, 25).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0]), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n)))


@SETTINGS
@given(case=pair_cases, kind=st.sampled_from(certify.TARGETS), level=st.floats(0.0, 1.0),
       delta=st.sampled_from([0.05, 0.3, 0.6, 0.9]), p_value=st.sampled_from(["auto", "hoeffding_bentkus"]))
def test_pair_walk_matches_reference(case, kind, level, delta, p_value):
    conf0, correct0, correct1 = case
    gmacs = [0.25, 1.0]
    value = gmacs[0] + level * gmacs[1] if kind == "max_gmacs" else level
    stages = [_signals(conf0, correct0), _signals(np.zeros(len(conf0)), correct1)]
    got = certify_thresholds(stages, gmacs, delta=delta, p_value=p_value, **{kind: value})
    want_t, want_certified, want_tested, want_p = _reference_pair(conf0, correct0, correct1, gmacs, kind, value,
                                                                  delta, p_value)
    assert got.thresholds == (want_t,)
    assert got.certified == want_certified
    assert got.n_tested == want_tested
    assert got.p_value == pytest.approx(want_p, rel=1e-9, abs=1e-14)
    assert (got.p_value <= delta) == got.certified
    result = evaluate_cascade(stages, got.thresholds, gmacs)
    assert (got.accuracy, got.avg_gmacs, got.exit_fractions) == (result.accuracy, result.avg_gmacs,
                                                                 tuple(result.exit_fractions))
    assert got.n_candidates == len(set(conf0)) + (1 if kind in ("target_accuracy", "max_accuracy_drop") else 2)


# ----------------------------------------------------------------------------- coverage, 2 stages
#
# A population whose truth is known at every threshold t (exit when confidence >= t): confidence
# ~ U(0, 1), the cheap model is right with probability A0 + B0 * confidence, the last model with
# probability Q, independently. Then accuracy(t) = A0 (1-t) + B0 (1-t^2)/2 + Q t, escalated share
# = t, cost = g0 + t g1, drop loss P(last right, cascade wrong) = Q ((1-A0)(1-t) - B0 (1-t^2)/2).

A0, B0, Q = 0.3, 0.65, 0.9


def _integral(a, b, t):
    """Integral of a + b c over c in [t, 1]."""
    return a * (1 - t) + b * (1 - t * t) / 2


def _population_pair(t, gmacs):
    t = min(max(t, 0.0), 1.0)
    accuracy = _integral(A0, B0, t) + Q * t
    return {"target_accuracy": accuracy, "max_accuracy_drop": Q - accuracy, "max_escalated": t,
            "max_gmacs": gmacs[0] + t * gmacs[1],
            "drop_loss": Q * ((1 - t) - _integral(A0, B0, t))}


def _misses(kind, value, truth):
    return truth[kind] < value if kind == "target_accuracy" else truth[kind] > value + 1e-12


def test_certified_pair_meets_targets_in_coverage_and_the_plain_fit_does_not():
    draws, n, delta, gmacs = 500, 1000, 0.05, [0.2, 1.0]
    rng = np.random.default_rng(2024)
    confidence = rng.random((draws, n))
    cheap_right = rng.random((draws, n)) < A0 + B0 * confidence
    last_right = rng.random((draws, n)) < Q
    targets = {"accuracy": ("target_accuracy", 0.85, "auto"), "drop": ("max_accuracy_drop", 0.03, "auto"),
               "escalated": ("max_escalated", 0.4, "auto"), "cost": ("max_gmacs", 0.6, "auto"),
               "cost, Hoeffding-Bentkus": ("max_gmacs", 0.6, "hoeffding_bentkus")}
    certified_miss = dict.fromkeys(targets, 0)
    plain_miss = dict.fromkeys(targets, 0)
    certified = dict.fromkeys(targets, 0)
    drop_loss_miss = 0
    for d in range(draws):
        stages = [_signals(confidence[d], cheap_right[d]), _signals(np.zeros(n), last_right[d])]
        for name, (kind, value, p_value) in targets.items():
            got = certify_thresholds(stages, gmacs, delta=delta, p_value=p_value, **{kind: value})
            if kind == "max_accuracy_drop":   # the plain fit: the last model's calibration accuracy - e
                plain = protocol.fit_thresholds_detailed(stages, gmacs, target_accuracy=last_right[d].mean() - value)
            else:
                plain = protocol.fit_thresholds_detailed(stages, gmacs, **{kind: value})
            truth = _population_pair(got.thresholds[0], gmacs)
            certified[name] += got.certified
            certified_miss[name] += got.certified and _misses(kind, value, truth)
            plain_miss[name] += _misses(kind, value, _population_pair(plain.thresholds[0], gmacs))
            if kind == "max_accuracy_drop":
                drop_loss_miss += got.certified and truth["drop_loss"] > value
    bound = delta + 3 * math.sqrt(delta * (1 - delta) / draws)
    report = {name: (certified_miss[name] / draws, plain_miss[name] / draws, certified[name] / draws)
              for name in targets}
    print("certified miss, plain miss, certified share:", report, "drop loss miss:", drop_loss_miss / draws)
    for name in targets:
        assert certified[name] >= 0.9 * draws, (name, report)
        assert certified_miss[name] <= bound * draws, (name, report)
        assert plain_miss[name] >= 0.25 * draws, (name, report)
    assert drop_loss_miss <= bound * draws   # what is certified: the drop loss bounds the drop


# ----------------------------------------------------------------------------- coverage, 3 stages
#
# Two independent confidences ~ U(0, 1); stage 0 right with probability A0 + B0 c0, stage 1 with
# A1 + B1 c1, the last with Q. At thresholds (t1, t2): accuracy = I0(t1) + t1 (I1(t2) + Q t2),
# escalated share = t1 t2, cost = g0 + t1 g1 + t1 t2 g2.

A1, B1 = 0.55, 0.4


def _population_chain(t1, t2, gmacs):
    t1, t2 = (min(max(t, 0.0), 1.0) for t in (t1, t2))
    accuracy = _integral(A0, B0, t1) + t1 * (_integral(A1, B1, t2) + Q * t2)
    return {"target_accuracy": accuracy, "max_escalated": t1 * t2,
            "max_gmacs": gmacs[0] + t1 * gmacs[1] + t1 * t2 * gmacs[2]}


def _chain_draw(rng, n):
    c0, c1 = rng.random(n), rng.random(n)
    return [_signals(c0, rng.random(n) < A0 + B0 * c0), _signals(c1, rng.random(n) < A1 + B1 * c1),
            _signals(np.zeros(n), rng.random(n) < Q)]


def test_certified_chain_meets_targets_in_coverage_and_the_plain_fit_does_not():
    draws, n, delta, gmacs = 150, 1000, 0.1, [0.1, 0.3, 1.0]
    rng = np.random.default_rng(11)
    targets = {"target_accuracy": 0.85, "max_escalated": 0.2, "max_gmacs": 0.45}
    certified_miss = dict.fromkeys(targets, 0)
    plain_miss = dict.fromkeys(targets, 0)
    certified = dict.fromkeys(targets, 0)
    for d in range(draws):
        stages = _chain_draw(rng, n)
        for kind, value in targets.items():
            got = certify_thresholds(stages, gmacs, delta=delta, grid_size=16, seed=d, **{kind: value})
            plain = protocol.fit_thresholds_detailed(stages, gmacs, grid_size=16, **{kind: value})
            certified[kind] += got.certified
            certified_miss[kind] += got.certified and _misses(kind, value, _population_chain(*got.thresholds, gmacs))
            plain_miss[kind] += _misses(kind, value, _population_chain(*plain.thresholds, gmacs))
            assert len(got.thresholds) == 2 and "Pareto Testing" in got.method
            assert got.n_testing == n // 2 and got.n_calibration == n
    bound = delta + 3 * math.sqrt(delta * (1 - delta) / draws)
    report = {kind: (certified_miss[kind] / draws, plain_miss[kind] / draws, certified[kind] / draws)
              for kind in targets}
    print("certified miss, plain miss, certified share:", report)
    for kind in targets:
        assert certified[kind] >= 0.8 * draws, (kind, report)
        assert certified_miss[kind] <= bound * draws, (kind, report)
        assert plain_miss[kind] >= 0.25 * draws, (kind, report)


def test_chain_falls_back_to_the_last_stage_when_too_few_samples():
    stages = _chain_draw(np.random.default_rng(3), 24)
    got = certify_thresholds(stages, [0.1, 0.3, 1.0], target_accuracy=0.85)
    assert not got.certified and got.thresholds == (math.inf, math.inf)
    assert got.samples_needed is not None and got.samples_needed > 24
    assert "Not certified" in got.message and "Pareto Testing split" in got.message
    assert got.n_tested == 1 and got.p_value > 0.05
    # a budget falls back to answering everything at the first stage, which is certain
    got = certify_thresholds(stages, [0.1, 0.3, 1.0], max_escalated=0.0)
    assert got.certified and got.thresholds == (-math.inf, -math.inf) and got.escalated_fraction == 0.0
    with pytest.raises(UsageError, match="at least 2 samples"):
        certify_thresholds([s.subset([0]) for s in stages], [0.1, 0.3, 1.0], target_accuracy=0.5)


def test_chain_binomial_needs_a_two_valued_cost():
    stages = _chain_draw(np.random.default_rng(4), 50)
    with pytest.raises(UsageError, match="p_value='binomial' needs a 0/1 loss.*'hoeffding_bentkus'"):
        certify_thresholds(stages, [0.1, 0.3, 1.0], max_gmacs=0.5, p_value="binomial")
    got = certify_thresholds(stages, [0.1, 0.0, 1.0], max_gmacs=0.5, p_value="binomial")  # two costs
    assert "exact binomial" in got.method


# ----------------------------------------------------------------------------- not certifiable, edges

def test_too_few_samples_says_how_many_would_do():
    n = 30
    last = np.ones(n, dtype=bool)
    last[:2] = False   # observed error 2/30 against a limit of 0.15
    stages = [_signals(np.linspace(0, 1, n), np.zeros(n, dtype=bool)), _signals(np.zeros(n), last)]
    got = certify_thresholds(stages, [0.2, 1.0], target_accuracy=0.85)
    assert not got.certified and got.thresholds == (math.inf,)
    assert got.p_value == pytest.approx(binom.cdf(2, n, 0.15))
    assert got.samples_needed is not None and got.samples_needed > n
    assert f"About {got.samples_needed} calibration samples" in got.message
    # the estimate: at the same observed error rate, that many samples do certify, and half as many do not
    for m, certified in ((got.samples_needed, True), (got.samples_needed // 2, False)):
        right = np.ones(m, dtype=bool)
        right[:int(m * 2 / n + 1e-9)] = False
        bigger = [_signals(np.linspace(0, 1, m), np.zeros(m, dtype=bool)), _signals(np.zeros(m), right)]
        assert certify_thresholds(bigger, [0.2, 1.0], target_accuracy=0.85).certified == certified


def test_unreachable_target_says_more_data_would_not_help():
    stages = [_signals([0.9, 0.1, 0.5, 0.7], [True, False, True, True]),
              _signals(np.zeros(4), [True, False, True, False])]
    got = certify_thresholds(stages, [0.2, 1.0], target_accuracy=0.9)
    assert not got.certified and got.samples_needed is None
    assert "would not help; relax the target" in got.message
    got = certify_thresholds(stages, [0.2, 1.0], max_gmacs=0.1)   # below the first stage's cost
    assert not got.certified and got.samples_needed is None and got.observed_risk > got.risk_limit


def test_certain_settings_need_no_data():
    stages = [_signals([0.9, 0.1], [True, False]), _signals([0.0, 0.0], [True, True])]
    got = certify_thresholds(stages, [0.2, 1.0], max_accuracy_drop=0.0)
    assert got.certified and got.thresholds == (math.inf,) and got.p_value == 0.0
    got = certify_thresholds(stages, [0.2, 1.0], max_escalated=0.0)
    assert got.certified and got.thresholds == (-math.inf,)
    got = certify_thresholds(stages, [0.2, 1.0], max_gmacs=5.0)   # above the whole chain's cost
    assert got.certified and got.accuracy == 1.0


def test_certificate_to_dict_is_strict_json():
    stages = [_signals([0.9, 0.1], [True, False]), _signals([0.0, 0.0], [True, True])]
    got = certify_thresholds(stages, [0.2, 1.0], max_accuracy_drop=0.0)
    data = json.loads(json.dumps(got.to_dict(), allow_nan=False))
    assert data["thresholds"] == ["inf"] and data["certified"] is True and data["target"] == "max_accuracy_drop"
    assert set(data) == {f for f in certify.Certificate.__dataclass_fields__}
    assert "Learn then Test" in data["method"] and "fixed-sequence" in data["method"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(), "exactly one target"),
    (dict(target_accuracy=0.8, max_gmacs=1.0), "exactly one target"),
    (dict(target_accuracy=1.5), "target_accuracy must be <= 1"),
    (dict(max_accuracy_drop=-0.1), "max_accuracy_drop must be >= 0"),
    (dict(max_gmacs=float("nan")), "max_gmacs must be a finite number"),
    (dict(target_accuracy=0.8, delta=1.5), r"delta must be in \(0, 1\).*got 1.5"),
    (dict(target_accuracy=0.8, delta=0), r"delta must be in \(0, 1\)"),
    (dict(target_accuracy=0.8, delta="0.05"), r"delta must be in \(0, 1\)"),
    (dict(target_accuracy=0.8, p_value="exact"), "p_value must be one of"),
    (dict(target_accuracy=0.8, gmacs=[1.0]), "one gmacs value per stage"),
    (dict(target_accuracy=0.8, stages="one"), "stages must be a list"),
    (dict(target_accuracy=0.8, optimization_fraction=1.0), "optimization_fraction must be < 1"),
    (dict(target_accuracy=0.8, seed=-1), "seed must be >= 0"),
])
def test_certify_rejects_bad_arguments(kwargs, message):
    args = dict(stages=[_signals([0.9, 0.1], [True, False]), _signals([0.0, 0.0], [True, True])], gmacs=[0.2, 1.0])
    with pytest.raises(UsageError, match=message):
        certify_thresholds(**{**args, **kwargs})


def test_certify_rejects_bad_stages():
    one = _signals([0.9, 0.1], [True, False])
    with pytest.raises(UsageError, match="at least 2 stages"):
        certify_thresholds([one], [1.0], target_accuracy=0.5)
    with pytest.raises(UsageError, match="same non-empty set of calibration samples"):
        certify_thresholds([one, _signals([0.1], [True])], [1.0, 2.0], target_accuracy=0.5)


def test_walk_stops_at_the_first_failure_even_when_later_settings_would_pass():
    # accuracy target 0.5 (alpha = 0.5), 20 samples, delta 0.05: P(Bin(20, 0.5) <= 5) = 0.021 passes,
    # <= 6 (0.058) fails. Everything escalated: 5 errors, passes. The most confident sample exits next
    # and is wrong where the last stage was right: 6 errors, fails. The next three are right where the
    # last stage was wrong (5, 4, 3 errors: they would pass), but the walk has stopped.
    conf = np.linspace(0.95, 0.0, 20)
    cheap = np.zeros(20, dtype=bool)
    cheap[1:4] = True
    last = np.ones(20, dtype=bool)
    last[1:6] = False
    stages = [_signals(conf, cheap), _signals(np.zeros(20), last)]
    got = certify_thresholds(stages, [0.2, 1.0], target_accuracy=0.5, delta=0.05)
    assert got.certified and got.thresholds == (math.inf,) and got.n_tested == 2
    assert got.p_value == pytest.approx(binom.cdf(5, 20, 0.5))
    p_values = [binom.cdf(k, 20, 0.5) for k in (5, 6, 5, 4, 3)]
    assert certify.fixed_sequence_test(p_values, 0.05) == 1
    # a larger delta lets the walk go on through those settings to cheaper ones
    further = certify_thresholds(stages, [0.2, 1.0], target_accuracy=0.5, delta=0.06)
    assert further.thresholds[0] < conf[3] and further.n_tested > 5

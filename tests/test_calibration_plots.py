"""core/calibration_plots.py: the figures carry the numbers of brute-force loops (bins, counts,
risk-coverage points), and the threshold line sits at the threshold."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade_explorer.core import calibration_plots as cp
from cascade_explorer.core.errors import UsageError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _trace(fig, name):
    matches = [t for t in fig.data if t.name == name]
    assert len(matches) == 1, [t.name for t in fig.data]
    return matches[0]


def brute_reliability(conf, correct, n_bins):
    """Per non-empty bin ((m-1)/M, m/M] (0 in the first): (mean confidence, accuracy, count), and the ECE."""
    rows, ece = [], 0.0
    for m in range(n_bins):
        members = [(c, ok) for c, ok in zip(conf, correct)
                   if (m / n_bins < c <= (m + 1) / n_bins) or (m == 0 and c == 0)]
        if members:
            mean_conf = sum(c for c, _ in members) / len(members)
            accuracy = sum(ok for _, ok in members) / len(members)
            rows.append((mean_conf, accuracy, len(members)))
            ece += len(members) / len(conf) * abs(accuracy - mean_conf)
    return rows, ece


def sample(n=400, seed=0):
    rng = np.random.default_rng(seed)
    conf = rng.beta(4, 1.5, n)
    correct = rng.random(n) < conf ** 2
    return conf, correct


# ----------------------------------------------------------------------------- (a) reliability

def test_reliability_traces_are_the_bins_with_ece_in_the_title():
    conf, correct = sample()
    after = conf ** 1.7           # a different set of confidences for the "after" trace
    fig = cp.from_reliability(conf, correct, confidence_after=after, temperature=1.7, n_bins=10, name="m1")
    assert isinstance(fig, go.Figure)
    for label, values in (("before temperature scaling (T = 1)", conf),
                          ("after temperature scaling (T = 1.7)", after)):
        trace = _trace(fig, label)
        rows, _ = brute_reliability(values, correct, 10)
        np.testing.assert_allclose(trace.x, [r[0] for r in rows], atol=1e-12)
        np.testing.assert_allclose(trace.y, [r[1] for r in rows], atol=1e-12)
        np.testing.assert_array_equal(np.asarray(trace.customdata)[:, 0], [r[2] for r in rows])
    _, ece_before = brute_reliability(conf, correct, 10)
    _, ece_after = brute_reliability(after, correct, 10)
    assert fig.layout.title.text == f"m1: ECE {ece_before:.1%} before, {ece_after:.1%} after (T = 1.7)"
    assert _trace(fig, "perfect calibration").x == (0, 1)


def test_reliability_without_after_has_one_trace_and_its_ece():
    conf, correct = sample(seed=1)
    fig = cp.from_reliability(conf, correct, name="m2")
    _, ece = brute_reliability(conf, correct, 15)
    assert fig.layout.title.text == f"m2: ECE {ece:.1%}"
    assert [t.name for t in fig.data] == ["perfect calibration", "before temperature scaling (T = 1)"]


def test_reliability_refuses_confidences_outside_0_1():
    with pytest.raises(UsageError, match="confidence must be <= 1"):
        cp.from_reliability(np.array([0.5, 1.5]), np.array([True, False]))
    with pytest.raises(UsageError, match="correct must have 2 entries"):
        cp.from_reliability(np.array([0.5, 0.7]), np.array([True]))


# ----------------------------------------------------------------------------- (b) threshold counts

def brute_counts(conf, correct, threshold):
    out = dict(right_escalated=0, right_kept=0, wrong_kept=0, wrong_escalated=0)
    for c, ok in zip(conf, correct):
        kept = threshold != math.inf and c >= threshold
        out[("right_" if ok else "wrong_") + ("kept" if kept else "escalated")] += 1
    return out


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.5, 0.9, 2.0, -1.0]) | st.floats(-3, 3), st.booleans()),
                min_size=0, max_size=50),
       st.sampled_from([0.5, 0.1, math.inf, -math.inf]) | st.floats(-3, 3))
def test_threshold_counts_match_a_loop(pairs, threshold):
    conf = np.array([c for c, _ in pairs], dtype=float)
    correct = np.array([ok for _, ok in pairs], dtype=bool)
    got = cp.threshold_counts(conf, correct, threshold)
    want = brute_counts(conf, correct, threshold)
    assert {k: got[k] for k in want} == want
    assert got["n_right"] == sum(correct) and got["n_wrong"] == len(pairs) - sum(correct)
    n_escalated = want["right_escalated"] + want["wrong_escalated"]
    assert got["escalated"] == (n_escalated / len(pairs) if pairs else None)
    assert got["right_escalated_share"] == (want["right_escalated"] / sum(correct) if sum(correct) else None)


def test_confidence_split_draws_the_threshold_and_states_the_counts():
    conf, correct = sample(seed=2)
    fig = cp.from_confidence_split(conf, correct, 0.7, bins=20, name="stage 1")
    right, wrong = _trace(fig, "stage 1: right"), _trace(fig, "stage 1: wrong")
    assert sum(right.y) == correct.sum() and sum(wrong.y) == (~correct).sum()
    edges = np.linspace(conf.min(), conf.max(), 21)
    np.testing.assert_array_equal(right.y, np.histogram(conf[correct], edges)[0])
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 0.7
    counts = brute_counts(conf, correct, 0.7)
    (note,) = fig.layout.annotations
    assert note.text.startswith("threshold 0.7 escalates ")
    assert f"escalates {counts['right_escalated']} of {correct.sum()} right answers" in note.text
    assert f"keeps {counts['wrong_kept']} of {(~correct).sum()} wrong answers" in note.text
    assert fig.layout.barmode == "overlay"


def test_confidence_split_with_threshold_outside_the_data_or_infinite():
    conf, correct = sample(seed=3)
    fig = cp.from_confidence_split(conf, correct, 1.5)          # the axis is widened to show the line
    assert fig.layout.shapes[0].x0 == 1.5
    assert max(_trace(fig, "stage 1: right").x) < 1.5
    never = cp.from_confidence_split(conf, correct, math.inf)
    assert not never.layout.shapes
    assert f"escalates {correct.sum()} of {correct.sum()} right answers (100.0%)" in never.layout.annotations[0].text
    assert not cp.from_confidence_split(conf, correct).layout.annotations
    with pytest.raises(UsageError, match="threshold must be a number"):
        cp.from_confidence_split(conf, correct, "0.5")


# ----------------------------------------------------------------------------- (c) risk-coverage

def brute_risk_coverage(conf, correct):
    points = []
    for t in sorted(set(conf), reverse=True):
        answered = [ok for c, ok in zip(conf, correct) if c >= t]
        points.append((t, len(answered) / len(conf), sum(not ok for ok in answered) / len(answered)))
    return points


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([0.2, 0.5, 0.8]) | st.floats(0, 1), st.booleans()),
                min_size=1, max_size=50))
def test_risk_coverage_matches_a_loop(pairs):
    conf = np.array([c for c, _ in pairs])
    correct = np.array([ok for _, ok in pairs])
    got = cp.risk_coverage(conf, correct)
    want = brute_risk_coverage(conf.tolist(), correct.tolist())
    np.testing.assert_allclose(np.column_stack([got["threshold"], got["coverage"], got["risk"]]), want, atol=1e-12)


def test_risk_coverage_figure_has_one_curve_per_model_and_the_threshold_point():
    a, b = sample(seed=4), sample(seed=5)
    fig = cp.from_risk_coverage({"small": a, "large": b}, thresholds={"small": 0.6})
    for name, (conf, correct) in (("small", a), ("large", b)):
        trace = _trace(fig, name)
        want = brute_risk_coverage(conf.tolist(), correct.tolist())
        np.testing.assert_allclose(trace.x, [w[1] for w in want])
        np.testing.assert_allclose(trace.y, [w[2] for w in want])
        np.testing.assert_allclose(np.asarray(trace.customdata).ravel(), [w[0] for w in want])
    star = _trace(fig, "small: threshold")
    conf, correct = a
    kept = conf >= 0.6
    assert star.x[0] == pytest.approx(kept.mean()) and star.y[0] == pytest.approx((~correct[kept]).mean())
    with pytest.raises(UsageError, match="non-empty dict"):
        cp.from_risk_coverage({})
    with pytest.raises(UsageError, match=r"models\['x'\] must be a \(confidence, correct\) pair"):
        cp.from_risk_coverage({"x": np.ones(3)})

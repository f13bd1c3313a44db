"""Cascade evaluation against the loop reference: exits, ties, extreme thresholds, N=1, costs."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from cascade_explorer.core.engine import evaluate_cascade, exit_stages
from cascade_explorer.core.signals import ModelSignals, chain_signals
from reference import ref_evaluate, ref_exit_stages

SETTINGS = settings(max_examples=100, deadline=None)
# few distinct values so ties with thresholds happen often
conf_values = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 0.1, 0.9])


@st.composite
def cascades(draw, min_stages=1, max_stages=4):
    n_stages = draw(st.integers(min_stages, max_stages))
    n = draw(st.integers(1, 25))
    stages = []
    for _ in range(n_stages):
        conf = draw(arrays(np.float64, (n,), elements=conf_values))
        pred = draw(arrays(np.int32, (n,), elements=st.integers(0, 3)))
        correct = draw(arrays(bool, (n,)))
        stages.append(ModelSignals(conf, pred, correct))
    thresholds = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, np.inf, -np.inf, 0.3]),
                               min_size=n_stages - 1, max_size=n_stages - 1))
    gmacs = draw(st.lists(st.floats(0, 10), min_size=n_stages, max_size=n_stages))
    return stages, thresholds, gmacs


@SETTINGS
@given(cascades())
def test_evaluate_matches_reference(case):
    stages, thresholds, gmacs = case
    result = evaluate_cascade(stages, thresholds, gmacs, ms=[g * 2 for g in gmacs])
    confs = [s.confidence for s in stages]
    corrects = [s.correct for s in stages]
    acc, cost, fractions = ref_evaluate(confs, corrects, thresholds, gmacs)
    want_stage = ref_exit_stages(confs, thresholds)
    np.testing.assert_array_equal(result.exit_stage, want_stage)
    np.testing.assert_array_equal(exit_stages(np.stack(confs), thresholds), want_stage)
    assert result.accuracy == pytest.approx(acc, abs=1e-12)
    assert result.avg_gmacs == pytest.approx(cost, rel=1e-12, abs=1e-12)
    assert result.avg_ms == pytest.approx(2 * cost, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(result.exit_fractions, fractions)
    assert result.worst_gmacs == pytest.approx(sum(gmacs))
    for i, stage in enumerate(want_stage):
        assert result.prediction[i] == stages[stage].prediction[i]
        assert result.correct[i] == stages[stage].correct[i]
        assert result.cost_gmacs[i] == pytest.approx(sum(gmacs[: stage + 1]))
    assert result.n_samples == len(stages[0].confidence)


def _two_stage():
    first = ModelSignals(np.array([0.2, 0.5, 0.5, 0.9]), np.array([0, 1, 2, 3]), np.array([False, True, False, True]))
    second = ModelSignals(np.array([0.7, 0.7, 0.7, 0.7]), np.array([5, 1, 2, 3]), np.array([True, True, True, True]))
    return [first, second]


def test_confidence_exactly_at_threshold_exits():
    result = evaluate_cascade(_two_stage(), [0.5], [1.0, 10.0], models=("small", "big"))
    np.testing.assert_array_equal(result.exit_stage, [1, 0, 0, 0])
    assert result.accuracy == pytest.approx(3 / 4)
    np.testing.assert_allclose(result.exit_fractions, [0.75, 0.25])
    assert result.avg_gmacs == pytest.approx((3 * 1 + 11) / 4)
    np.testing.assert_array_equal(result.prediction, [5, 1, 2, 3])
    just_above = evaluate_cascade(_two_stage(), [np.nextafter(0.5, 1)], [1.0, 10.0])
    np.testing.assert_array_equal(just_above.exit_stage, [1, 1, 1, 0])


def test_threshold_above_every_confidence_never_exits_and_below_always_exits():
    stages = _two_stage()
    never = evaluate_cascade(stages, [1.5], [1.0, 10.0])
    assert never.accuracy == 1.0 and never.avg_gmacs == 11.0
    np.testing.assert_array_equal(never.exit_fractions, [0, 1])
    always = evaluate_cascade(stages, [0.0], [1.0, 10.0])
    assert always.accuracy == 0.5 and always.avg_gmacs == 1.0
    np.testing.assert_array_equal(always.exit_fractions, [1, 0])
    assert evaluate_cascade(stages, [np.inf], [1, 10]).accuracy == 1.0
    assert evaluate_cascade(stages, [-np.inf], [1, 10]).accuracy == 0.5


def test_single_sample_and_single_model():
    one = [s.subset([3]) for s in _two_stage()]
    result = evaluate_cascade(one, [0.95], [1, 2])
    assert result.n_samples == 1 and result.exit_stage.tolist() == [1]
    alone = evaluate_cascade(_two_stage()[:1], [], [1.0], ms=[3.0], models=["small"])
    assert alone.accuracy == 0.5 and alone.avg_gmacs == 1.0 and alone.worst_ms == 3.0
    np.testing.assert_array_equal(alone.exit_fractions, [1.0])


def test_three_stage_ensemble_from_logits():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    logits = [rng.normal(size=(200, 2)) for _ in range(3)]
    stages = chain_signals(logits, labels, "softmax_margin", ensemble=True)
    result = evaluate_cascade(stages, [0.3, 0.2], [0.1, 0.5, 2.0])
    acc, cost, fractions = ref_evaluate([s.confidence for s in stages], [s.correct for s in stages],
                                        [0.3, 0.2], [0.1, 0.5, 2.0])
    assert result.accuracy == pytest.approx(acc) and result.avg_gmacs == pytest.approx(cost)


def test_to_dict_is_strict_json():
    result = evaluate_cascade(_two_stage(), [np.inf], [1, 10], models=["a", "b"])
    summary = result.to_dict()
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["thresholds"] == ["inf"]
    assert set(summary) >= {"accuracy", "avg_gmacs", "worst_gmacs", "exit_fractions", "n_samples", "models"}
    assert summary["avg_ms"] is None


def test_bad_cascades_raise_clear_errors():
    stages = _two_stage()
    with pytest.raises(ValueError, match="needs 1 threshold"):
        evaluate_cascade(stages, [0.5, 0.5], [1, 2])
    with pytest.raises(ValueError, match="one gmacs value per stage"):
        evaluate_cascade(stages, [0.5], [1])
    with pytest.raises(ValueError, match="gmacs must be finite and >= 0"):
        evaluate_cascade(stages, [0.5], [1, -2])
    with pytest.raises(ValueError, match="thresholds must be numbers"):
        evaluate_cascade(stages, [np.nan], [1, 2])
    with pytest.raises(ValueError, match="same samples"):
        evaluate_cascade([stages[0], stages[1].subset([0])], [0.5], [1, 2])
    with pytest.raises(ValueError, match="2 model names for 1 stages|1 model names for 2 stages"):
        evaluate_cascade(stages, [0.5], [1, 2], models=["a"])


def test_exit_stages_accepts_matrix():
    conf = np.array([[0.9, 0.1, 0.5], [0.9, 0.9, 0.1], [0, 0, 0]])
    np.testing.assert_array_equal(exit_stages(conf, [0.5, 0.5]), [0, 1, 0])


def test_infinite_confidence_never_exits_at_infinite_threshold():
    stages = [ModelSignals(np.array([np.inf, 0.5, -np.inf]), np.zeros(3), np.array([True, False, False])),
              ModelSignals(np.zeros(3), np.zeros(3), np.array([False, True, True]))]
    np.testing.assert_array_equal(evaluate_cascade(stages, [np.inf], [1, 2]).exit_stage, [1, 1, 1])
    np.testing.assert_array_equal(evaluate_cascade(stages, [-np.inf], [1, 2]).exit_stage, [0, 0, 0])
    np.testing.assert_array_equal(evaluate_cascade(stages, [np.finfo(float).max], [1, 2]).exit_stage, [0, 1, 1])

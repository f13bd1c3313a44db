"""Criteria, softmax, signals and temperature fitting against the loop reference (tests/reference.py)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from cascade_explorer.core.criteria import (CRITERIA, confidence, confidence_from_probs, fit_temperature,
                                            negative_log_likelihood, softmax)
from cascade_explorer.core.signals import ModelSignals, chain_signals, model_signals
from reference import (ref_chain, ref_confidence, ref_confidence_from_probs_row, ref_nll, ref_softmax_row)

SETTINGS = settings(max_examples=80, deadline=None)
finite = st.floats(-30, 30, allow_nan=False, width=32)


@st.composite
def logits_and_labels(draw, max_rows=12, max_classes=7):
    n = draw(st.integers(1, max_rows))
    c = draw(st.integers(2, max_classes))
    logits = draw(arrays(np.float32, (n, c), elements=finite))
    labels = draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return logits, labels


temperatures = st.floats(0.05, 20)


@SETTINGS
@given(logits_and_labels(), st.sampled_from(CRITERIA), temperatures)
def test_confidence_matches_reference(data, criterion, temperature):
    logits, _ = data
    got = confidence(logits, criterion, temperature)
    assert got.dtype == np.float64 and got.shape == (len(logits),)
    np.testing.assert_allclose(got, ref_confidence(logits, criterion, temperature), rtol=1e-9, atol=1e-12)


@SETTINGS
@given(logits_and_labels(), temperatures)
def test_softmax_matches_reference_and_sums_to_one(data, temperature):
    logits, _ = data
    probs = softmax(logits.astype(np.float64), temperature)
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs, [ref_softmax_row(r, temperature) for r in logits], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    assert softmax(logits, temperature).dtype == np.float32


def test_softmax_is_stable_for_huge_logits():
    logits = np.array([[1e4, 1e4 - 1, -1e4], [-1e4, -1e4, -1e4]], dtype=np.float32)
    probs = softmax(logits)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[1], 1 / 3, rtol=1e-6)
    conf = confidence(logits, "max_softmax")
    np.testing.assert_allclose(conf, [1 / (1 + math.exp(-1)), 1 / 3], rtol=1e-12)
    assert np.isfinite(confidence(logits, "entropy")).all()


@SETTINGS
@given(logits_and_labels(), st.sampled_from(CRITERIA))
def test_confidence_from_probs_matches_reference(data, criterion):
    logits, _ = data
    probs = softmax(logits.astype(np.float64))
    got = confidence_from_probs(probs, criterion)
    want = [ref_confidence_from_probs_row(p, criterion) for p in probs]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_criteria_directions_on_known_rows():
    logits = np.array([[5.0, 0.0, 0.0], [1.0, 1.0, 0.0]])   # confident, then a tie between two classes
    for criterion in CRITERIA:
        conf = confidence(logits, criterion)
        assert conf[0] > conf[1], criterion
    np.testing.assert_allclose(confidence(logits, "logit_margin", 2.0), [2.5, 0.0])
    np.testing.assert_allclose(confidence(logits, "softmax_margin")[1], 0.0, atol=1e-15)
    uniform = confidence(np.zeros((1, 4)), "entropy")
    np.testing.assert_allclose(uniform, -math.log(4))


def test_two_classes_and_float16_equal_float32_of_same_values():
    rng = np.random.default_rng(1)
    half = rng.normal(size=(50, 2)).astype(np.float16)
    for criterion in CRITERIA:
        np.testing.assert_array_equal(confidence(half, criterion), confidence(half.astype(np.float32), criterion))


def test_bad_input_errors_are_specific():
    with pytest.raises(ValueError, match="unknown confidence criterion 'top1'"):
        confidence(np.zeros((2, 3)), "top1")
    with pytest.raises(ValueError, match="at least 2 classes"):
        confidence(np.zeros((2, 1)), "max_softmax")
    with pytest.raises(ValueError, match="temperature must be"):
        softmax(np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        model_signals(np.zeros((2, 3)), np.array([0, 3]), "max_softmax")
    with pytest.raises(ValueError, match="row 1 contains NaN"):
        model_signals(np.array([[0.0, 1.0], [np.nan, 0.0]]), np.array([0, 1]), "max_softmax")


@SETTINGS
@given(logits_and_labels(max_rows=30), st.sampled_from(CRITERIA), temperatures, st.integers(1, 7))
def test_model_signals_chunked_matches_reference(data, criterion, temperature, chunk_rows):
    logits, labels = data
    got = model_signals(logits.astype(np.float16), labels, criterion, temperature, chunk_rows=chunk_rows)
    conf, pred, correct = ref_chain([logits.astype(np.float16).astype(np.float32)], labels, criterion,
                                    [temperature], False)[0]
    np.testing.assert_allclose(got.confidence, conf, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got.prediction, pred)
    np.testing.assert_array_equal(got.correct, correct)
    assert got.prediction.dtype == np.int32 and got.correct.dtype == bool


@SETTINGS
@given(st.data(), st.sampled_from(CRITERIA), st.booleans(), st.integers(1, 5))
def test_chain_signals_matches_reference(data, criterion, ensemble, chunk_rows):
    n = data.draw(st.integers(1, 10))
    c = data.draw(st.integers(2, 6))
    n_stages = data.draw(st.integers(1, 3))
    logits = [data.draw(arrays(np.float32, (n, c), elements=st.floats(-8, 8, width=32))) for _ in range(n_stages)]
    labels = data.draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    temps = data.draw(st.lists(st.floats(0.2, 5), min_size=n_stages, max_size=n_stages))
    got = chain_signals(logits, labels, criterion, temps, ensemble=ensemble, chunk_rows=chunk_rows)
    want = ref_chain(logits, labels, criterion, temps, ensemble)
    for stage, (conf, pred, correct) in zip(got, want):
        np.testing.assert_allclose(stage.confidence, conf, rtol=1e-7, atol=1e-9)
        # predictions may differ only where the mean probabilities tie to rounding
        np.testing.assert_array_equal(stage.correct == np.array(correct), stage.prediction == np.array(pred))


def test_ensemble_stage_averages_probabilities():
    a = np.log(np.array([[0.6, 0.4]]))
    b = np.log(np.array([[0.1, 0.9]]))
    stages = chain_signals([a, b], np.array([1]), "max_softmax", ensemble=True)
    np.testing.assert_allclose(stages[1].confidence, [0.65])
    assert stages[1].prediction[0] == 1 and stages[0].prediction[0] == 0
    margin = chain_signals([a, b], np.array([1]), "logit_margin", ensemble=True)
    np.testing.assert_allclose(margin[1].confidence, [math.log(0.65 / 0.35)])


def test_model_signals_reads_memmap_in_chunks(tmp_path):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(1000, 20)).astype(np.float16)
    labels = rng.integers(0, 20, 1000)
    np.save(tmp_path / "l.npy", logits)
    mapped = np.load(tmp_path / "l.npy", mmap_mode="r", allow_pickle=False)
    a = model_signals(mapped, labels, "entropy", 1.5, chunk_rows=64)
    b = model_signals(logits, labels, "entropy", 1.5)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.prediction, b.prediction)


def test_signals_subset():
    s = ModelSignals(np.array([0.1, 0.5, 0.9]), np.array([1, 2, 3]), np.array([True, False, True]))
    sub = s.subset(np.array([True, False, True]))
    np.testing.assert_array_equal(sub.prediction, [1, 3])
    np.testing.assert_array_equal(s.subset([2, 0]).confidence, [0.9, 0.1])
    with pytest.raises(ValueError, match="mask has shape"):
        s.subset(np.array([True, False]))


@settings(max_examples=25, deadline=None)
@given(logits_and_labels(max_rows=8, max_classes=4), st.floats(0.1, 10))
def test_nll_matches_reference(data, temperature):
    logits, labels = data
    assert math.isclose(negative_log_likelihood(logits, labels, temperature),
                        ref_nll(logits, labels, temperature), rel_tol=1e-9, abs_tol=1e-12)


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(3)
    true_t = 2.5
    logits = rng.normal(scale=4.0, size=(4000, 5))
    probs = softmax(logits, true_t)
    labels = (probs.cumsum(axis=1) > rng.random((4000, 1))).argmax(axis=1)
    fitted = fit_temperature(logits.astype(np.float32), labels)
    assert abs(fitted - true_t) < 0.25
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 60))
    best_grid = min(negative_log_likelihood(logits, labels, t) for t in grid)
    assert negative_log_likelihood(logits, labels, fitted) <= best_grid + 1e-9


def test_fit_temperature_is_not_clipped():
    # the optimum runs to the search limits and is reported there (core.temperature flags it),
    # instead of being clipped to [0.05, 20] as before
    logits = np.array([[10.0, 0.0], [0.0, 10.0]])
    sharp = fit_temperature(logits, np.array([0, 1]))   # always right: sharpen (NLL plateaus at 0)
    assert sharp < 1e-3 and negative_log_likelihood(logits, np.array([0, 1]), sharp) < 1e-9
    assert fit_temperature(logits, np.array([1, 0])) > 1e3      # always wrong: flatten towards uniform
    with pytest.raises(ValueError, match="0 samples"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))

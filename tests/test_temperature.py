"""core/temperature.py: the NLL optimum over all T > 0 (no clipping), its flags, and the ECE,
against a dense grid search, the loop references of tests/reference.py and brute-force binning."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade_explorer.core import protocol
from cascade_explorer.core.criteria import negative_log_likelihood, softmax
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.signals import model_signals
from cascade_explorer.core.temperature import (PRACTICAL_RANGE, TemperatureFit, TemperatureFitWarning,
                                               expected_calibration_error, fit_temperature, reliability_bins)
from reference import ref_nll, ref_softmax_row

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- brute-force references

def brute_bins(confidence, correct, n_bins):
    """Guo et al.'s bins B_m = {i : (m-1)/M < conf_i <= m/M} (conf = 0 in B_1), one sample at a time."""
    members = [[] for _ in range(n_bins)]
    for c, ok in zip(confidence, correct):
        m = 0
        while m < n_bins - 1 and not c <= (m + 1) / n_bins:
            m += 1
        members[m].append((float(c), bool(ok)))
    return members


def brute_ece(confidence, correct, n_bins):
    n = len(confidence)
    total = 0.0
    for bucket in brute_bins(confidence, correct, n_bins):
        if bucket:
            acc = sum(ok for _, ok in bucket) / len(bucket)
            conf = sum(c for c, _ in bucket) / len(bucket)
            total += len(bucket) / n * abs(acc - conf)
    return total


def sampled_labels(logits, temperature, rng):
    """Labels drawn from softmax(logits / temperature): a model calibrated at that temperature."""
    probs = softmax(np.asarray(logits, dtype=np.float64), temperature)
    return (probs.cumsum(axis=1) > rng.random((len(logits), 1))).argmax(axis=1)


def overconfident(n=3000, n_classes=10, scale=60.0, seed=0):
    """A 10-class model whose logits were scaled up `scale` times: optimum T far above 20."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), labels] += 1.0
    return logits * scale, labels


# ----------------------------------------------------------------------------- ECE and bins

@SETTINGS
@given(st.lists(st.tuples(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.2, 0.5, 1 / 3, 14 / 15])),
                          st.booleans()), min_size=1, max_size=80),
       st.integers(1, 20))
def test_bins_and_ece_match_a_brute_force_loop(pairs, n_bins):
    conf = np.array([c for c, _ in pairs])
    correct = np.array([ok for _, ok in pairs])
    bins = reliability_bins(conf, correct, n_bins)
    members = brute_bins(conf, correct, n_bins)
    np.testing.assert_array_equal(bins.count, [len(b) for b in members])
    for m, bucket in enumerate(members):
        if bucket:
            assert bins.accuracy[m] == pytest.approx(sum(ok for _, ok in bucket) / len(bucket), abs=1e-12)
            assert bins.mean_confidence[m] == pytest.approx(sum(c for c, _ in bucket) / len(bucket), abs=1e-12)
        else:
            assert np.isnan(bins.accuracy[m]) and np.isnan(bins.mean_confidence[m])
    assert expected_calibration_error(conf, correct, n_bins) == pytest.approx(brute_ece(conf, correct, n_bins),
                                                                              abs=1e-12)


def test_ece_of_known_cases():
    # perfectly calibrated bins: ECE 0; always sure and always wrong: ECE 1
    conf = np.array([0.75] * 4 + [0.25] * 4)
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=bool)
    assert expected_calibration_error(conf, correct, 10) == pytest.approx(0.0, abs=1e-15)
    assert expected_calibration_error(np.ones(5), np.zeros(5, dtype=bool)) == 1.0
    assert np.isnan(expected_calibration_error(np.array([]), np.array([], dtype=bool)))


def test_ece_matches_netcal():
    pytest.importorskip("netcal.metrics")
    from netcal.metrics import ECE

    rng = np.random.default_rng(5)
    conf = rng.beta(5, 2, 5000)                # continuous: no value on a bin edge, where the
    correct = rng.random(5000) < conf ** 1.3   # two conventions ((a, b] here, [a, b) there) differ
    assert expected_calibration_error(conf, correct, 15) == pytest.approx(
        float(ECE(15).measure(conf, correct.astype(int))), rel=1e-9)


@pytest.mark.parametrize("conf, correct, n_bins, message", [
    ([0.2, 1.2], [True, False], 15, "confidence must be <= 1"),
    ([0.2, -0.1], [True, False], 15, "confidence must be >= 0"),
    ([0.2, np.nan], [True, False], 15, "confidence contains NaN"),
    ([0.2, 0.3], [True], 15, "correct must have 2 entries"),
    ([0.2, 0.3], [True, False], 0, "n_bins must be >= 1"),
])
def test_ece_names_bad_arguments(conf, correct, n_bins, message):
    with pytest.raises(UsageError, match=message):
        expected_calibration_error(np.array(conf), np.array(correct), n_bins)


# ----------------------------------------------------------------------------- temperature fit

def test_optimum_above_the_old_bound_is_found_not_clipped():
    logits, labels = overconfident()
    fit = fit_temperature(logits, labels)
    assert isinstance(fit, TemperatureFit) and fit.flags == () and fit.ok
    assert fit.temperature > 40                        # the old fit stopped at 20
    uniform = math.log(10)
    # at the old bound the model was worse than uniform prediction; at the optimum it is not
    assert negative_log_likelihood(logits, labels, 20.0) > uniform > fit.nll_after
    assert fit.nll_after < negative_log_likelihood(logits, labels, 20.0)
    assert fit.nll_before == pytest.approx(negative_log_likelihood(logits, labels, 1.0), rel=1e-12)
    assert fit.ece_after < fit.ece_before
    assert (fit.n, fit.n_classes, fit.uniform_nll) == (3000, 10, pytest.approx(uniform))


@pytest.mark.parametrize("case", ["overconfident", "calibrated", "underconfident"])
def test_optimum_matches_a_dense_grid_search(case):
    rng = np.random.default_rng(11)
    if case == "overconfident":
        logits, labels = overconfident(n=1500)
    else:
        logits = rng.normal(scale=3.0, size=(2000, 7))
        labels = sampled_labels(logits, 1.0 if case == "calibrated" else 0.4, rng)
    fit = fit_temperature(logits, labels)
    # dense grid in log T: coarse over (1e-3, 1e3), then 1e-5 steps around the coarse argmin
    coarse = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 601))
    t0 = coarse[np.argmin([negative_log_likelihood(logits, labels, t) for t in coarse])]
    fine = t0 * np.exp(np.linspace(-0.025, 0.025, 5001))
    values = np.array([negative_log_likelihood(logits, labels, t) for t in fine])
    t_grid = fine[np.argmin(values)]
    assert fit.temperature == pytest.approx(t_grid, rel=1e-4)
    assert fit.nll_after <= values.min() + 1e-12
    assert fit.flags == ()


def test_well_calibrated_model_keeps_t_near_one():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3.0, size=(20000, 10))
    labels = sampled_labels(logits, 1.0, rng)
    fit = fit_temperature(logits, labels)
    assert fit.temperature == pytest.approx(1.0, abs=0.05)
    assert fit.flags == () and fit.messages == ()
    assert fit.ece_before < 0.02 and fit.ece_after < 0.02
    assert fit.nll_after <= fit.nll_before


def test_worse_than_uniform_model_is_flagged():
    logits, labels = overconfident(n=1000, scale=1.0)
    fit = fit_temperature(-logits, labels)          # the true class's logit pushed down: anti-informative
    assert set(fit.flags) == {"at_bound", "worse_than_uniform"}
    assert fit.temperature > PRACTICAL_RANGE[1]
    assert fit.nll_after >= fit.uniform_nll
    assert len(fit.messages) == 2 and "no better than predicting 1/C" in fit.messages[1]
    assert "T -> infinity" in fit.messages[0] and "not clipped" in fit.messages[0]


def test_always_right_model_runs_to_the_lower_limit_and_is_flagged():
    logits = np.array([[10.0, 0.0], [0.0, 10.0]])
    fit = fit_temperature(logits, np.array([0, 1]))
    assert fit.flags == ("at_bound",) and fit.temperature < PRACTICAL_RANGE[0]
    assert "T -> 0" in fit.messages[0]
    assert fit.nll_after == 0.0


def test_nll_and_ece_fields_match_references():
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=2.0, size=(60, 4))
    labels = rng.integers(0, 4, 60)
    fit = fit_temperature(logits, labels, n_bins=10)
    assert fit.nll_before == pytest.approx(ref_nll(logits, labels, 1.0), rel=1e-12)
    assert fit.nll_after == pytest.approx(ref_nll(logits, labels, fit.temperature), rel=1e-12)
    for t, ece in ((1.0, fit.ece_before), (fit.temperature, fit.ece_after)):
        conf = [max(ref_softmax_row(row, t)) for row in logits]
        correct = logits.argmax(axis=1) == labels
        assert ece == pytest.approx(brute_ece(conf, correct, 10), abs=1e-12)
    assert fit.to_dict()["temperature"] == fit.temperature == float(fit)


def test_memmapped_float16_in_chunks_with_a_mask_equals_the_dense_selection(tmp_path):
    rng = np.random.default_rng(8)
    logits = (rng.normal(scale=4.0, size=(503, 12))).astype(np.float16)
    labels = sampled_labels(logits.astype(np.float64), 2.0, rng)
    mask = rng.random(503) < 0.5
    path = tmp_path / "logits.npy"
    np.save(path, logits)
    mapped = np.load(path, mmap_mode="r")
    chunked = fit_temperature(mapped, labels, mask, chunk_rows=7)
    dense = fit_temperature(logits[mask].astype(np.float64), labels[mask])
    assert chunked.temperature == pytest.approx(dense.temperature, rel=1e-6)
    assert chunked.nll_after == pytest.approx(dense.nll_after, rel=1e-12)
    assert chunked.ece_after == pytest.approx(dense.ece_after, abs=1e-6)
    assert chunked.n == mask.sum()
    # rows outside the mask are never used: not even a NaN there matters
    spoiled = logits.copy()
    spoiled[~mask] = np.nan
    assert fit_temperature(spoiled, labels, mask, chunk_rows=7).temperature == chunked.temperature
    # the ECE fields are the ECE of the signals at those temperatures
    for t, ece in ((1.0, chunked.ece_before), (chunked.temperature, chunked.ece_after)):
        signals = model_signals(logits[mask], labels[mask], "max_softmax", t)
        assert ece == pytest.approx(expected_calibration_error(signals.confidence, signals.correct), abs=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mask=np.zeros(6, dtype=bool)), "mask selects no rows"),
    (dict(mask=np.array([0, 1])), "mask must be a boolean mask"),
    (dict(n_bins=0), "n_bins must be >= 1"),
    (dict(chunk_rows=0), "chunk_rows must be >= 1"),
])
def test_fit_names_bad_arguments(kwargs, message):
    rng = np.random.default_rng(0)
    with pytest.raises(UsageError, match=message):
        fit_temperature(rng.normal(size=(6, 3)), rng.integers(0, 3, 6), **kwargs)


def test_fit_refuses_bad_logits_and_labels():
    logits = np.zeros((4, 3))
    logits[2, 1] = np.inf
    with pytest.raises(UsageError, match="logits row 2 contains NaN or inf"):
        fit_temperature(logits, np.zeros(4, dtype=int))
    with pytest.raises(UsageError, match="labels must lie in 0..2"):
        fit_temperature(np.zeros((4, 3)), np.array([0, 1, 2, 3]))
    with pytest.raises(UsageError, match="0 samples"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))


# ----------------------------------------------------------------------------- protocol delegates

def test_protocol_fit_temperatures_returns_the_unclipped_optimum_and_warns_on_flags():
    logits, labels = overconfident(n=600)
    mask = np.arange(600) % 2 == 0
    detailed = protocol.fit_temperatures_detailed([logits, -logits], labels, mask)
    assert detailed[0].temperature > 20 and detailed[0].flags == ()
    assert "worse_than_uniform" in detailed[1].flags
    with pytest.warns(TemperatureFitWarning, match="model 1 of logits_list: ") as record:
        temps = protocol.fit_temperatures([logits, -logits], labels, mask)
    assert [str(w.message) for w in record] == [f"model 1 of logits_list: {m}" for m in detailed[1].messages]
    assert temps == [d.temperature for d in detailed]
    assert all(type(t) is float for t in temps)

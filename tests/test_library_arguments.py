"""A caller's mistake in the engine/curves/search/protocol/signals functions raises a UsageError
that names the bad argument (never a bare numpy/Python error from deep inside, never a silently
wrong result). One test per finding of the argument audit."""

import math

import numpy as np
import pandas as pd
import pytest

from cascade_explorer.core import protocol, search
from cascade_explorer.core.curves import (cascade_curve, exact_threshold_sweep, single_model_hull,
                                          speedup_at_equal_accuracy)
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.signals import ModelSignals, chain_signals, model_signals


def _signals(n_models=4, n=40, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    return {f"m{i}": model_signals(rng.normal(size=(n, 5)) + i * np.eye(5)[labels], labels, "max_softmax")
            for i in range(n_models)}


GMACS = {"m0": 1.0, "m1": 2.0, "m2": 3.0, "m3": 4.0}


@pytest.fixture(scope="module")
def signals():
    return _signals()


@pytest.fixture(scope="module")
def frontier(signals):
    return search.pair_frontier(signals, GMACS)


# 1 ------------------------------------------------------------------------- fit_temperatures mask

@pytest.mark.parametrize("mask, message", [
    (np.array([0, 1, 2, 3]), "mask must be a boolean mask"),      # indices are not a mask
    (np.ones(30, dtype=bool), r"mask must have shape \(40,\)"),  # shorter
    (np.ones(50, dtype=bool), r"mask must have shape \(40,\)"),  # longer
])
def test_fit_temperatures_checks_the_mask(mask, message):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 40)
    with pytest.raises(UsageError, match=message):
        protocol.fit_temperatures([rng.normal(size=(40, 5))], labels, mask)


# 2 ------------------------------------------------------------------------- exact_threshold_sweep

@pytest.mark.parametrize("args, message", [
    (([0.1, 0.2, 0.3], [True, False], [True, True, True]), "correct_exit"),
    (([0.1, 0.2], [True, False, True], [True, True, False]), "correct_exit"),
    (([0.1, 0.2], [True, False], [True]), "correct_next"),
    (([0.1, np.nan, 0.3], [True, False, True], [True, True, True]), "confidence .*NaN"),
])
def test_exact_threshold_sweep_checks_its_inputs(args, message):
    with pytest.raises(UsageError, match=message):
        exact_threshold_sweep(*args)


# 3 ------------------------------------------------------------------------- shift_delta

def test_shift_delta_names_what_is_wrong():
    source = {"accuracy": 0.5, "avg_gmacs": 1.0, "exit_fractions": [0.5, 0.5], "speedup": None}
    with pytest.raises(UsageError, match="exit_fractions.*2.*1"):
        protocol.shift_delta(source, {**source, "exit_fractions": [1.0]})
    with pytest.raises(UsageError, match=r"target lacks .*avg_gmacs"):
        protocol.shift_delta(source, {"accuracy": 0.6})
    assert protocol.shift_delta(source, {**source, "accuracy": 0.75})["accuracy"] == 0.25


# 4 ------------------------------------------------------------------------- pair_frontier

def test_pair_frontier_checks_costs_latencies_and_signals(signals):
    with pytest.raises(UsageError, match=r"ms\['m1'\] must be >= 0"):
        search.pair_frontier(signals, GMACS, ms={"m0": 1, "m1": -5, "m2": 3, "m3": 4})
    with pytest.raises(UsageError, match=r"ms\['m1'\] must be a finite number"):
        search.pair_frontier(signals, GMACS, ms={"m0": 1, "m1": float("inf"), "m2": 3, "m3": 4})
    with pytest.raises(UsageError, match=r"gmacs\['m1'\] must be a number"):
        search.pair_frontier(signals, {**GMACS, "m1": "abc"})
    with pytest.raises(UsageError, match="gmacs must be a dict"):
        search.pair_frontier(signals, [1, 2, 3, 4])
    with pytest.raises(UsageError, match=r"signals\['a'\] must be ModelSignals"):
        search.pair_frontier({"a": np.ones(4), "b": np.ones(4)}, {"a": 1, "b": 2})


# 5 / 14 ------------------------------------------------------------------- bootstrap_ci

@pytest.mark.parametrize("kwargs, message", [
    (dict(cost=[1.0, np.nan, 1.0, 1.0]), "cost must be finite"),
    (dict(cost=[-1.0, -2.0, -1.0, -2.0]), "cost must be >= 0"),
    (dict(correct=[5, 5, 5, 5]), "correct must be 0/1"),
    (dict(correct=np.ones((2, 2))), "correct must be 1-dimensional"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(seed=1.7), "seed must be a whole number"),
    (dict(n_bootstrap=2.9), "n_bootstrap must be a whole number"),
    (dict(level=95), "level must be"),
])
def test_bootstrap_ci_checks_its_inputs(kwargs, message):
    args = dict(correct=[1, 0, 1, 1], cost=[1.0, 2.0, 1.0, 2.0], n_bootstrap=50)
    with pytest.raises(UsageError, match=message):
        protocol.bootstrap_ci(**{**args, **kwargs})


# 6 ------------------------------------------------------------------------- headline / best_cascade

@pytest.mark.parametrize("best", [float("nan"), 1.7, -3, "0.9"])
def test_headline_cascade_needs_a_fraction(frontier, best):
    with pytest.raises(UsageError, match="best_single_accuracy"):
        search.headline_cascade(frontier, best)


def test_headline_and_best_cascade_name_bad_frames_and_targets(frontier):
    with pytest.raises(UsageError, match=r"lacks column\(s\) \['speedup'\]"):
        search.headline_cascade(frontier.drop(columns=["speedup"]), 0.5)
    with pytest.raises(UsageError, match="frontier_df must be a pandas DataFrame"):
        search.headline_cascade([1, 2], 0.5)
    with pytest.raises(UsageError, match="frontier_df must be a pandas DataFrame"):
        search.best_cascade([1, 2], target_accuracy=0.5)
    with pytest.raises(UsageError, match="target_accuracy must be a number"):
        search.best_cascade(frontier, target_accuracy="0.5")
    with pytest.raises(UsageError, match="max_gmacs must be a number"):
        search.best_cascade(frontier, max_gmacs="1")
    assert search.headline_cascade(frontier, 0.5) is not None


# 7 ------------------------------------------------------------------------- fit_thresholds targets

@pytest.mark.parametrize("target, message", [
    (dict(target_accuracy=-0.2), "target_accuracy must be >= 0"),
    (dict(target_accuracy=1.5), "target_accuracy must be <= 1"),
    (dict(target_accuracy=float("nan")), "target_accuracy must be a finite number"),
    (dict(target_accuracy="0.5"), "target_accuracy must be a number"),
    (dict(max_escalated=3), "max_escalated must be <= 1"),
    (dict(max_escalated=-0.5), "max_escalated must be >= 0"),
    (dict(max_gmacs=-1), "max_gmacs must be >= 0"),
    (dict(max_gmacs=float("inf")), "max_gmacs must be a finite number"),
    (dict(target_accuracy=0.5, max_gmacs=1.5), "exactly one target"),
])
def test_fit_thresholds_checks_the_target(signals, target, message):
    with pytest.raises(UsageError, match=message):
        protocol.fit_thresholds([signals["m0"], signals["m1"]], [1, 2], **target)


# 8 ------------------------------------------------------------------------- hull and speed-up

def test_single_model_hull_and_speedup_check_their_inputs():
    with pytest.raises(UsageError, match="costs must be >= 0"):
        single_model_hull([-1, 2], [0.5, 0.6])
    with pytest.raises(UsageError, match="accuracies must be <= 1"):
        single_model_hull([1, 2], [0.5, 1.6])
    hull = single_model_hull([1, 2, 4], [0.5, 0.7, 0.8])
    with pytest.raises(UsageError, match="cascade_cost .*cascade_accuracy.*same"):
        speedup_at_equal_accuracy([1, 2, 3], [0.6, 0.7], hull)
    with pytest.raises(UsageError, match="cascade_cost must be >= 0"):
        speedup_at_equal_accuracy([-1.0], [0.6], hull)
    with pytest.raises(UsageError, match="hull must be a SingleModelHull"):
        speedup_at_equal_accuracy([1.0], [0.6], [1, 2])
    assert speedup_at_equal_accuracy([1.0], [0.6], hull)[0] == pytest.approx(1.5)


# 9 ------------------------------------------------------------------------- select_operating_point

def test_select_operating_point_needs_equal_lengths():
    with pytest.raises(UsageError, match="same length"):
        protocol.select_operating_point([0.5, 0.6], [1, 2, 3], [0.1], target_accuracy=0.55)


# 10 ------------------------------------------------------------------------ grid_size

@pytest.mark.parametrize("grid_size, message", [
    (0, "grid_size must be >= 1"), (-5, "grid_size must be >= 1"),
    (float("nan"), "grid_size must be a whole number"), (2.5, "grid_size must be a whole number"),
    ("8", "grid_size must be an integer"),
])
def test_grid_size_is_checked(signals, grid_size, message):
    stages = [signals["m0"], signals["m1"], signals["m2"]]
    with pytest.raises(UsageError, match=message):
        cascade_curve(stages, [1, 2, 3], grid_size=grid_size)
    with pytest.raises(UsageError, match=message):
        search.three_model_frontier(signals, GMACS, ["m0", "m1", "m2"], grid_size=grid_size)


# 11 ------------------------------------------------------------------------ thresholds / stages

@pytest.mark.parametrize("thresholds", [None, 0.5, float("nan"), "abc", np.float64(0.5)])
def test_evaluate_cascade_needs_a_list_of_thresholds(signals, thresholds):
    stages = [signals["m0"], signals["m1"]]
    with pytest.raises(UsageError, match="thresholds must be a list"):
        evaluate_cascade(stages, thresholds, [1, 2])
    with pytest.raises(UsageError, match="thresholds must be a list"):
        protocol.shift_report(stages, stages, thresholds, [1, 2])


def test_evaluate_cascade_needs_model_signals(signals):
    with pytest.raises(UsageError, match=r"stages\[0\] must be ModelSignals"):
        evaluate_cascade([np.ones(6), np.ones(6)], [0.5], [1, 2])
    with pytest.raises(UsageError, match=r"thresholds\[0\] must be a number"):
        evaluate_cascade([signals["m0"], signals["m1"]], [[0.5]], [1, 2])
    with pytest.raises(UsageError, match="stages_target has 3 stages but stages_source has 2"):
        stages = [signals["m0"], signals["m1"]]
        protocol.shift_report(stages, stages + [signals["m2"]], [0.5], [1, 2])


# 12 ------------------------------------------------------------------------ temperatures

def test_temperatures_are_named():
    logits = np.random.default_rng(0).normal(size=(6, 4))
    labels = np.array([0, 1, 2, 3, 0, 1])
    with pytest.raises(UsageError, match="temperatures must be a list"):
        chain_signals([logits, logits], labels, "max_softmax", temperatures=2.0)
    with pytest.raises(UsageError, match=r"temperatures\[1\] must be a finite number > 0"):
        chain_signals([logits, logits], labels, "max_softmax", temperatures=[1.0, float("nan")])
    for bad in (None, "abc", 0, -1, float("inf")):
        with pytest.raises(UsageError, match="temperature must be a finite number > 0"):
            model_signals(logits, labels, "max_softmax", bad)


# 13 ------------------------------------------------------------------------ ModelSignals, calibration_mask

def test_model_signals_refuse_non_integer_predictions():
    with pytest.raises(UsageError, match="prediction must hold whole numbers"):
        ModelSignals([0.5], [1.7], [True])
    with pytest.raises(UsageError, match="correct must be 0/1"):
        ModelSignals([0.5, 0.6], [1, 2], [2, 0])
    assert ModelSignals([0.5], [1.0], [1]).prediction.tolist() == [1]   # whole floats are fine


def test_calibration_mask_names_fraction_and_seed():
    ids = [f"s{i}" for i in range(10)]
    with pytest.raises(UsageError, match="calibration_fraction must be a number"):
        protocol.calibration_mask(ids, "half")
    with pytest.raises(UsageError, match="seed must be an integer"):
        protocol.calibration_mask(ids, 0.5, seed="x")
    with pytest.raises(UsageError, match="seed must be a whole number"):
        protocol.calibration_mask(ids, 0.5, seed=1.7)
    with pytest.raises(UsageError, match="sample_ids must be a list"):
        protocol.calibration_mask("abc", 0.5)
    assert not math.isnan(protocol.calibration_mask(ids, 0.5, seed=1.0).mean())

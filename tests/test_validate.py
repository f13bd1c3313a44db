"""core.validate: each check names the argument, refuses what would be silently coerced."""

import math

import numpy as np
import pytest

from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.validate import (check_array, check_bool, check_fraction, check_int, check_mask,
                                            check_number, check_sequence)


@pytest.mark.parametrize("value", ["false", 0, 1, None, "no"])
def test_check_bool_refuses_truthy_non_bools(value):
    with pytest.raises(UsageError, match="ensemble must be True or False"):
        check_bool(value, "ensemble")


def test_check_bool_accepts_bools():
    assert check_bool(np.bool_(True), "x") is True and check_bool(False, "x") is False


@pytest.mark.parametrize("value, message", [(1.7, "whole number"), ("3", "integer"), (True, "integer"),
                                            (math.nan, "whole number"), (-1, ">= 0")])
def test_check_int(value, message):
    with pytest.raises(UsageError, match=f"seed must be.*{message}|seed must be an {message}"):
        check_int(value, "seed", minimum=0)


def test_check_int_accepts_whole_floats_and_numpy():
    assert check_int(2.0, "n") == 2 and check_int(np.int64(5), "n", maximum=5) == 5


@pytest.mark.parametrize("value", [math.nan, "0.5", None, 1.5, -0.1])
def test_check_fraction(value):
    with pytest.raises(UsageError, match="target_accuracy"):
        check_fraction(value, "target_accuracy")


def test_check_number_bounds_and_inf():
    assert check_number(math.inf, "t", allow_inf=True) == math.inf
    with pytest.raises(UsageError, match="finite"):
        check_number(math.inf, "t")
    with pytest.raises(UsageError, match="> 0"):
        check_number(0, "temperature", minimum=0, exclusive_minimum=True)


@pytest.mark.parametrize("value", [0.5, None, "ab", np.zeros((2, 2))])
def test_check_sequence_refuses_scalars_strings_and_2d(value):
    with pytest.raises(UsageError, match="thresholds"):
        check_sequence(value, "thresholds")


def test_check_array_and_mask():
    with pytest.raises(UsageError, match="costs must be >= 0"):
        check_array([1, -1], "costs", minimum=0)
    with pytest.raises(UsageError, match="must have 3 entries"):
        check_array([1, 2], "correct", length=3)
    with pytest.raises(UsageError, match="boolean mask"):
        check_mask(np.array([0, 1, 2]), "mask", 3)
    with pytest.raises(UsageError, match=r"shape \(4,\)"):
        check_mask(np.ones(3, bool), "mask", 4)
    assert check_mask([True, False], "mask", 2).tolist() == [True, False]

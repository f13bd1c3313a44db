"""Argument checks for the library's public functions: each names the bad argument and says what
was expected (scikit-learn style), instead of letting numpy fail deep inside or round silently.

All raise UsageError (a ValueError), so the CLI prints them as one line.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import UsageError


def check_bool(value, name: str) -> bool:
    """A real bool (numpy's too): 'false', 0 or None are refused, because bool('false') is True."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise UsageError(f"{name} must be True or False, got {value!r}")


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A whole number (1.0 is fine, 1.7 and '1' are not), within [minimum, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        whole = int(value)
    elif math.isfinite(value) and float(value).is_integer():
        whole = int(value)
    else:
        raise UsageError(f"{name} must be a whole number, got {value!r}")
    if minimum is not None and whole < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {whole}")
    if maximum is not None and whole > maximum:
        raise UsageError(f"{name} must be <= {maximum}, got {whole}")
    return whole


def check_number(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False, exclusive_maximum: bool = False,
                 allow_inf: bool = False) -> float:
    """A real number (not a string, not NaN; +-inf only with allow_inf) within the given bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise UsageError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (number <= minimum if exclusive_minimum else number < minimum):
        raise UsageError(f"{name} must be {'>' if exclusive_minimum else '>='} {minimum}, got {number:g}")
    if maximum is not None and (number >= maximum if exclusive_maximum else number > maximum):
        raise UsageError(f"{name} must be {'<' if exclusive_maximum else '<='} {maximum}, got {number:g}")
    return number


def check_fraction(value, name: str, *, open_interval: bool = False) -> float:
    """A number in [0, 1] (or (0, 1) with open_interval)."""
    return check_number(value, name, minimum=0.0, maximum=1.0, exclusive_minimum=open_interval,
                        exclusive_maximum=open_interval)


def check_sequence(values, name: str) -> list:
    """A list/tuple/1-D array of items (not a bare scalar or string, which would iterate by character)."""
    if isinstance(values, (str, bytes)) or values is None or np.isscalar(values):
        raise UsageError(f"{name} must be a list (one value per item), got {values!r}")
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise UsageError(f"{name} must be one-dimensional, got an array of shape {values.shape}")
        return values.tolist()
    try:
        return list(values)
    except TypeError:
        raise UsageError(f"{name} must be a list, got {type(values).__name__}") from None


def check_array(values, name: str, *, ndim: int = 1, length: int | None = None, finite: bool = False,
                minimum: float | None = None, maximum: float | None = None, dtype=np.float64) -> np.ndarray:
    """`values` as a numpy array of `dtype` with `ndim` dimensions (and `length` rows), optionally all
    finite and within [minimum, maximum]."""
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be an array of numbers, got {type(values).__name__}") from None
    if array.ndim != ndim:
        raise UsageError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise UsageError(f"{name} must have {length} entries (one per sample), got {array.shape[0]}")
    if finite and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UsageError(f"{name} must be finite (no NaN or inf)")
    if minimum is not None and array.size and np.nanmin(array) < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got a value of {np.nanmin(array):g}")
    if maximum is not None and array.size and np.nanmax(array) > maximum:
        raise UsageError(f"{name} must be <= {maximum}, got a value of {np.nanmax(array):g}")
    return array


def check_mask(mask, name: str, length: int) -> np.ndarray:
    """A boolean mask of `length` samples: integer indices are refused (they would be read as a mask)."""
    array = np.asarray(mask)
    if array.dtype != bool:
        raise UsageError(f"{name} must be a boolean mask (True = use the sample), got dtype {array.dtype}; "
                         "for row indices build one: mask = np.zeros(N, bool); mask[indices] = True")
    if array.shape != (length,):
        raise UsageError(f"{name} must have shape ({length},) (one entry per sample), got {array.shape}")
    return array

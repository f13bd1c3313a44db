"""Strict-JSON values: JSON has no NaN or Infinity, and numpy scalars are not JSON types.

One rule for every file and printout the project writes: NaN -> null, +-inf -> "inf"/"-inf"
(thresholds of +inf mean "never exit" and must survive a round trip; readers accept the strings).
"""

from __future__ import annotations

import json
import math

import numpy as np


def json_float(value):
    """A float for strict JSON: None stays None, NaN -> None, +-inf -> "inf"/"-inf"."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def dumps(value, *, indent: int | None = None) -> str:
    """Strict JSON text of `value` (made jsonable first): the one serializer of every JSON output."""
    return json.dumps(jsonable(value), allow_nan=False, indent=indent)


def jsonable(value):
    """Plain JSON types, recursively: numpy -> Python, floats through json_float."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return json_float(value)
    return value

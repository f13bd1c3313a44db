"""Strict-JSON values: JSON has no NaN or Infinity, and numpy scalars are not JSON types.

One rule for every file and printout the project writes: NaN -> null, +-inf -> "inf"/"-inf"
(thresholds of +inf mean "never exit" and must survive a round trip; readers accept the strings).
"""

from __future__ import annotations

import json
import math

import numpy as np

from .errors import JSONFormatError

# Deeper than any manifest or config needs (they are ~5 levels); later recursive code (deepcopy,
# validation) stays far from Python's recursion limit.
MAX_JSON_DEPTH = 64


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


def _refuse_duplicate_keys(pairs):
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise JSONFormatError(f"key {key!r} appears twice in one object (which one is meant?)")
        seen[key] = value
    return seen


def _depth(value) -> int:
    """Nesting depth of parsed JSON, iteratively (no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads(text: str):
    """Parse strict JSON text for reading a project file: a repeated key in one object, nesting deeper
    than MAX_JSON_DEPTH and malformed text raise JSONFormatError (line and column named), never a
    RecursionError or a silently dropped value."""
    try:
        value = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as error:
        raise JSONFormatError(f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise JSONFormatError(f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise JSONFormatError(f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return value

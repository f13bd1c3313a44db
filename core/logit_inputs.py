"""What an imported model-output array holds, and turning it into the logits a bank stores.

A bank stores logits: any per-row shift of them is harmless (every confidence criterion is
shift-invariant: softmax(z + c) = softmax(z)). Users export other things too:

- probabilities (softmax outputs): as "logits" their softmax is nearly uniform (never above ~0.027
  with 100 classes), so nothing ever exits early. They are detected (every row in [0, 1], summing to
  1) and refused unless declared; declared, they are stored as log-probabilities, whose softmax is
  the probabilities again.
- log-probabilities (log_softmax outputs): already logits up to a per-row shift; -inf (a probability
  of 0) becomes log of float64's smallest normal (about -708), whose softmax weight is 0 too.
- float64 logits with a large per-row offset (energies, log-likelihoods): stored as float32 after
  subtracting each row's maximum (format.narrow_logits), so the class differences survive.

All work is in row chunks: an input can be a memory-mapped file larger than memory.
"""

from __future__ import annotations

import numpy as np

from .bank.format import SCAN_CHUNK_ROWS, first_non_finite_row, narrow_logits, non_finite_problem
from .errors import BankError, UsageError

INPUT_KINDS = ("logits", "probabilities", "log-probabilities")
# log(p) for p = 0: finite, and its softmax weight underflows to 0 in float32 like exp(-inf)
LOG_ZERO = float(np.log(np.finfo(np.float64).tiny))


def _sum_tolerance(dtype) -> float:
    # float16 rows of 1000 probabilities sum to 1 only within a few 1e-3
    return 2e-2 if np.dtype(dtype) == np.float16 else 1e-3


def _chunks(array):
    # a first small chunk: real logits fail the check on their first rows, so most arrays are
    # decided after 64 rows instead of a whole float64 chunk (~80 ms at 1,000 classes)
    starts = [0, *range(min(64, array.shape[0]), array.shape[0], SCAN_CHUNK_ROWS)]
    for start, stop in zip(starts, [*starts[1:], array.shape[0]]):
        yield start, np.asarray(array[start:stop], dtype=np.float64)


def first_non_probability_row(array) -> int | None:
    """Index of the first row of (N, C) `array` that is not a probability vector (a value outside
    [0, 1], NaN, or a sum off 1 by more than the dtype's tolerance); None when every row is one."""
    tolerance = _sum_tolerance(array.dtype)
    for start, chunk in _chunks(array):
        bad = ~(np.isfinite(chunk).all(axis=1) & (chunk >= 0).all(axis=1) & (chunk <= 1).all(axis=1)
                & (np.abs(chunk.sum(axis=1) - 1.0) <= tolerance))
        if bad.any():
            return start + int(np.flatnonzero(bad)[0])
    return None


def first_non_log_probability_row(array) -> int | None:
    """First row that is not a log-probability vector (NaN, +inf, a value > 0, or
    logsumexp off 0 by more than the tolerance; -inf is a probability of 0); None when all are."""
    tolerance = _sum_tolerance(array.dtype)
    for start, chunk in _chunks(array):
        with np.errstate(over="ignore", invalid="ignore"):
            bad = np.isnan(chunk).any(axis=1) | (chunk > tolerance).any(axis=1)
            total = np.exp(chunk).sum(axis=1)
        bad |= ~(np.abs(total - 1.0) <= tolerance)
        if bad.any():
            return start + int(np.flatnonzero(bad)[0])
    return None


def looks_like_probabilities(array) -> bool:
    """True when every row of (N, C >= 2) `array` lies in [0, 1] and sums to 1: softmax outputs, not
    logits (real logits essentially never do: a shift-invariant score lands on the simplex by chance)."""
    return array.ndim == 2 and array.shape[1] >= 2 and array.shape[0] > 0 \
        and first_non_probability_row(array) is None


def to_stored_logits(array, inputs: str, what: str, parameter: str = "logits", *, check: bool = True) -> np.ndarray:
    """The (N, C) array a bank stores (float16 or float32) for `array` holding `inputs`.

    inputs: one of INPUT_KINDS. what: how messages name the array ("logits NAME=PATH"). Raises
    UsageError starting with `what`: non-finite logits (saying which value, -inf with the fix),
    probabilities given as logits, an array that is not what `inputs` says, or a narrowing cast
    that would change a row's top classes. check=False skips the full scans of logits (finite values,
    not probabilities) for a caller that ran them already and checks finiteness again as it writes.
    """
    if inputs not in INPUT_KINDS:
        raise UsageError(f"inputs must be one of {', '.join(INPUT_KINDS)}, got {inputs!r}", parameter="inputs")
    if inputs == "logits" and not check:
        source = array
    elif inputs == "logits":
        bad_row = first_non_finite_row(array)
        if bad_row is not None:
            raise UsageError(f"{what}: {non_finite_problem(array, bad_row)}", parameter=parameter)
        if looks_like_probabilities(array):
            raise UsageError(f"{what}: every row is in [0, 1] and sums to 1, so these look like probabilities "
                             "(softmax outputs), not logits; as logits nothing would ever exit early. Set "
                             "`inputs` to probabilities (or log-probabilities for log_softmax outputs)",
                             parameter=parameter)
        source = array
    elif inputs == "probabilities":
        bad_row = first_non_probability_row(array)
        if bad_row is not None:
            raise UsageError(f"{what}: row {bad_row} is not a probability vector (values in [0, 1] summing to "
                             f"1); check `inputs`", parameter=parameter)
        source = _map_chunks(array, lambda p: np.log(np.maximum(p, np.finfo(np.float64).tiny)))
    else:
        bad_row = first_non_log_probability_row(array)
        if bad_row is not None:
            raise UsageError(f"{what}: row {bad_row} is not a log-probability vector (values <= 0 whose exp "
                             "sums to 1); check `inputs`", parameter=parameter)
        source = _map_chunks(array, lambda z: np.maximum(z, LOG_ZERO))
    stored = np.float16 if np.dtype(array.dtype) == np.float16 and inputs == "logits" else np.float32
    try:
        return narrow_logits(source, stored)
    except BankError as error:
        raise UsageError(f"{what}: {error.problem}; {error.fix}", parameter=parameter) from None


def _map_chunks(array, function) -> np.ndarray:
    out = np.empty(array.shape, dtype=np.float64)
    for start, chunk in _chunks(array):
        out[start:start + len(chunk)] = function(chunk)
    return out

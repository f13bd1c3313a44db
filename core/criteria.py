"""Confidence criteria (higher = more confident), stable softmax and temperature fitting.

Every criterion is computed from logits upcast to at least float32 and returned as float64, so a
float16 bank gives the same confidences as the same values stored as float32.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError
from .validate import check_number

CRITERIA = ("max_softmax", "softmax_margin", "logit_margin", "entropy")
_FIT_CHUNK_ROWS = 8192


def check_criterion(criterion: str) -> str:
    """Return `criterion` if known, else raise a UsageError (a ValueError) listing the known ones."""
    if criterion not in CRITERIA:
        raise UsageError(f"unknown confidence criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    return criterion


def check_temperature(temperature: float, name: str = "temperature") -> float:
    """`temperature` as a float when it is a finite number > 0 (not a string, None or NaN)."""
    try:
        return check_number(temperature, name, minimum=0.0, exclusive_minimum=True)
    except UsageError:
        raise UsageError(f"{name} must be a finite number > 0, got {temperature!r}") from None


def _as_logits_2d(logits, name: str = "logits") -> np.ndarray:
    array = np.asarray(logits)
    if array.ndim != 2:
        raise UsageError(f"{name} must be a 2-D array (samples x classes), got shape {array.shape}")
    if array.shape[1] < 2:
        raise UsageError(f"{name} needs at least 2 classes (columns), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise UsageError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def _working_float(array: np.ndarray) -> np.ndarray:
    """float16/ints -> float32 (exact for float16); float32/float64 unchanged."""
    if array.dtype in (np.float32, np.float64):
        return array
    return array.astype(np.float32)


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row softmax of logits / temperature; float64 in -> float64 out, anything else -> float32."""
    temperature = check_temperature(temperature)
    z = _working_float(_as_logits_2d(logits))
    shifted = (z - z.max(axis=1, keepdims=True)) / z.dtype.type(temperature)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _top2(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest and second-largest value of each row (equal values count twice)."""
    top2 = np.partition(values, values.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1], top2[:, 0]


def confidence(logits, criterion: str, temperature: float = 1.0) -> np.ndarray:
    """Confidence of each row of logits under `criterion` (see CRITERIA), float64 (N,)."""
    check_criterion(criterion)
    temperature = check_temperature(temperature)
    z = _as_logits_2d(logits)
    # float16 -> float32 is exact; the arithmetic then runs in float64 on one fresh copy
    shifted = np.array(_working_float(z), dtype=np.float64)
    if criterion == "logit_margin":
        first, second = _top2(shifted)
        return (first - second) / temperature
    shifted -= shifted.max(axis=1, keepdims=True)                  # row max becomes 0
    if temperature != 1.0:
        shifted /= temperature
    if criterion != "entropy":
        exp = np.exp(shifted, out=shifted)                          # in place: peak memory of one copy
        total = exp.sum(axis=1)                                     # >= 1, no underflow to 0
        if criterion == "max_softmax":
            return 1.0 / total
        first, second = _top2(exp)
        return (first - second) / total
    exp = np.exp(shifted)
    total = exp.sum(axis=1)
    # negative Shannon entropy: sum p log p with log p = shifted - log(total); exp()=0 terms add 0
    log_total = np.log(total)
    return (exp * shifted).sum(axis=1) / total - log_total


def confidence_from_probs(probs, criterion: str) -> np.ndarray:
    """Confidence of probability rows (e.g. an ensemble's mean softmax), float64 (N,).

    logit_margin uses log(probs) as logits: log p1 - log p2 (p2 = 0 counts as the smallest float).
    """
    check_criterion(criterion)
    p = _working_float(_as_logits_2d(probs, "probs")).astype(np.float64)
    first, second = _top2(p)
    if criterion == "max_softmax":
        return first
    if criterion == "softmax_margin":
        return first - second
    if criterion == "logit_margin":
        # an underflowed runner-up (p = 0) counts as the smallest positive float, so the margin
        # stays finite and a threshold of +inf still means "never exit"
        tiny = np.finfo(np.float64).tiny
        return np.log(np.maximum(first, tiny)) - np.log(np.maximum(second, tiny))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = p * np.log(p)
    terms[p <= 0] = 0.0   # 0 log 0 = 0
    return terms.sum(axis=1)


def _check_labels(labels, n_rows: int, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_rows:
        raise UsageError(f"labels must have shape ({n_rows},) to match the logits, got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise UsageError(f"labels must lie in 0..{n_classes - 1}, got values {labels.min()}..{labels.max()}")
    return labels.astype(np.int64, copy=False)


def negative_log_likelihood(logits, labels, temperature: float, chunk_rows: int = _FIT_CHUNK_ROWS) -> float:
    """Mean NLL of the labels under softmax(logits / temperature), in row chunks."""
    temperature = check_temperature(temperature)
    z_all = _as_logits_2d(logits)
    labels = _check_labels(labels, z_all.shape[0], z_all.shape[1])
    if z_all.shape[0] == 0:
        raise UsageError("cannot compute a likelihood on 0 samples")
    total = 0.0
    for start in range(0, z_all.shape[0], chunk_rows):
        z = _working_float(z_all[start:start + chunk_rows]).astype(np.float64)
        y = labels[start:start + chunk_rows]
        shifted = (z - z.max(axis=1, keepdims=True)) / temperature
        log_z = np.log(np.exp(shifted).sum(axis=1))
        total += float((log_z - shifted[np.arange(len(y)), y]).sum())
    return total / z_all.shape[0]


def fit_temperature(logits, labels) -> float:
    """NLL-optimal temperature T > 0 of softmax(logits / T), not clipped: the `temperature` of
    core.temperature.fit_temperature, which also reports NLL/ECE before and after and flags a
    fit outside the practical range or no better than uniform prediction."""
    from .temperature import fit_temperature as fit   # core.temperature imports this module

    return fit(logits, labels).temperature

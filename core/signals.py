"""Per-model and per-chain signals: confidence, prediction and correctness of every sample.

A cascade only needs these three vectors per stage, so banks are reduced to them once (in row
chunks: a memory-mapped float16 50,000 x 1000 logits file is never materialised as float64).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .criteria import (_as_logits_2d, _check_labels, _working_float, check_criterion, check_temperature,
                       confidence, confidence_from_probs, softmax)
from .errors import UsageError
from .validate import check_array, check_bool, check_int, check_sequence

DEFAULT_CHUNK_ROWS = 8192


@dataclass(frozen=True, eq=False)   # eq=False: identity semantics (array fields have no plain ==)
class ModelSignals:
    """What a cascade needs from one stage: confidence (float64), prediction (int32), correct (bool)."""

    confidence: np.ndarray
    prediction: np.ndarray
    correct: np.ndarray

    def __post_init__(self):
        conf = check_array(self.confidence, "confidence", ndim=np.ndim(self.confidence))
        pred = _check_prediction(self.prediction)
        corr = check_correct(self.correct, "correct", ndim=np.ndim(self.correct))
        if not (conf.ndim == pred.ndim == corr.ndim == 1) or not (len(conf) == len(pred) == len(corr)):
            raise UsageError("ModelSignals needs three 1-D arrays of equal length, got shapes "
                             f"{conf.shape}, {pred.shape}, {corr.shape}")
        if np.isnan(conf).any():
            raise UsageError("ModelSignals confidence contains NaN")
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "prediction", pred)
        object.__setattr__(self, "correct", corr)

    def __len__(self) -> int:
        return len(self.confidence)

    @property
    def n_samples(self) -> int:
        return len(self.confidence)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else float("nan")

    def subset(self, mask_or_index) -> "ModelSignals":
        """The signals of the selected samples (boolean mask of length N, or integer indices)."""
        selector = np.asarray(mask_or_index)
        if selector.dtype == bool and selector.shape != self.confidence.shape:
            raise UsageError(f"boolean mask has shape {selector.shape}, expected {self.confidence.shape}")
        return ModelSignals(self.confidence[selector], self.prediction[selector], self.correct[selector])


def check_correct(values, name: str = "correct", *, ndim: int = 1, length: int | None = None) -> np.ndarray:
    """Per-sample correctness as a bool array: bools, or numbers that are all 0 or 1 (a 5 or 0.5 is
    refused instead of being read as True)."""
    array = np.asarray(values)
    if array.dtype != bool:
        if array.dtype.kind not in "iuf":
            raise UsageError(f"{name} must be booleans (or 0/1), got dtype {array.dtype}")
        if array.size and not ((array == 0) | (array == 1)).all():
            raise UsageError(f"{name} must be 0/1 or True/False per sample, got other values "
                             f"(e.g. {array[(array != 0) & (array != 1)].flat[0]!r})")
        array = array.astype(bool)
    if array.ndim != ndim:
        raise UsageError(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise UsageError(f"{name} must have {length} entries (one per sample), got {array.shape[0]}")
    return array


def _check_prediction(values) -> np.ndarray:
    """Predicted class indices as int32: whole numbers only (1.7 is refused, not truncated to 1)."""
    array = np.asarray(values)
    if array.dtype.kind in "iu":
        return array.astype(np.int32, copy=False)
    if array.dtype.kind != "f":
        raise UsageError(f"prediction must hold integer class indices, got dtype {array.dtype}")
    if array.size and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise UsageError("prediction must hold whole numbers (class indices), got non-integer values")
    return array.astype(np.int32)


def _check_chunk_rows(chunk_rows: int) -> int:
    return check_int(chunk_rows, "chunk_rows", minimum=1)


def model_signals(logits, labels, criterion: str, temperature: float = 1.0,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS, *, workers: int | None = 1) -> ModelSignals:
    """Signals of one model: confidence under `criterion` at `temperature` (float64 (N,)), argmax
    prediction (int32 (N,)) and correctness against `labels` (bool (N,)).

    logits: (N, C) float16/float32/float64, e.g. a memory-mapped bank file: read in row chunks, so at
    most `workers` chunks of float64 are in memory. workers: threads working on chunks at once
    (numpy releases the GIL in the heavy loops; None = every core). The result does not depend on
    workers or chunk_rows. Raises UsageError for NaN or inf logits (naming the first bad row), a
    shape that does not match the labels, or an unknown criterion.
    """
    check_criterion(criterion)
    temperature = check_temperature(temperature)
    chunk_rows = _check_chunk_rows(chunk_rows)
    workers = (os.cpu_count() or 1) if workers is None else check_int(workers, "workers", minimum=1)
    logits = _as_logits_2d(logits)   # keeps a memmap a memmap
    n, n_classes = logits.shape
    labels = _check_labels(labels, n, n_classes)
    conf = np.empty(n, dtype=np.float64)
    pred = np.empty(n, dtype=np.int32)
    starts = range(0, n, chunk_rows)

    def work(start: int) -> int | None:
        stop = min(start + chunk_rows, n)
        bad = chunk_signals(np.asarray(logits[start:stop]), criterion, temperature,
                            out=(conf[start:stop], pred[start:stop]))
        return None if bad is None else start + bad

    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            bad_rows = list(pool.map(work, starts))
    else:
        bad_rows = [work(start) for start in starts]
    bad = [row for row in bad_rows if row is not None]
    if bad:
        raise UsageError(f"logits row {min(bad)} contains NaN or inf; fix or drop that sample")
    return ModelSignals(conf, pred, pred == labels)


def chunk_signals(chunk: np.ndarray, criterion: str, temperature: float, *, out) -> int | None:
    """Confidence and argmax of a block of logit rows, written into out = (confidence, prediction)
    views; returns the first row (within the block) holding NaN or +-inf, else None. Rows are
    independent, so any split into blocks gives the same bits (model_signals and the importer's
    single pass both use this). Arguments are not checked: callers have."""
    confidence_out, prediction_out = out
    # float16/float32 -> float64 is exact: one copy, then the criterion works in place on it
    values = chunk.astype(np.float64)
    # on the exact copy (same index as on the chunk; numpy's float16 argmax is 3x slower); temperature
    # > 0 never changes the argmax
    prediction_out[:] = values.argmax(axis=1)
    finite = np.isfinite(values.sum(axis=1))   # NaN or +-inf anywhere in a row makes its sum non-finite
    if not finite.all():
        return int(np.flatnonzero(~finite)[0])
    confidence_out[:] = _confidence_inplace(values, criterion, temperature)
    return None


def _confidence_inplace(values: np.ndarray, criterion: str, temperature: float) -> np.ndarray:
    """criteria.confidence on a float64 chunk it may overwrite (same arithmetic, so the same bits, but
    without its defensive copy)."""
    if criterion != "max_softmax":
        return confidence(values, criterion, temperature)
    values -= values.max(axis=1, keepdims=True)                 # row max becomes 0
    if temperature != 1.0:
        values /= temperature
    np.exp(values, out=values)
    return 1.0 / values.sum(axis=1)                             # sum >= 1: no division by 0


def chain_signals(logits_list, labels, criterion: str, temperatures=None, ensemble: bool = False,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> list[ModelSignals]:
    """Signals of each stage of a chain of models.

    ensemble=False: stage i is model i alone. ensemble=True: stage i decides on the mean of the
    temperature-scaled softmax of models 0..i (stage 0 is model 0 alone, computed from its logits).
    """
    check_criterion(criterion)
    ensemble = check_bool(ensemble, "ensemble")
    if isinstance(logits_list, np.ndarray) and logits_list.ndim == 2:
        raise UsageError("logits_list must be a list of 2-D logits arrays (one per stage), got one 2-D array; "
                         "for a single model pass [logits]")
    if not isinstance(logits_list, np.ndarray):
        logits_list = check_sequence(logits_list, "logits_list")
    if len(logits_list) == 0:
        raise UsageError("chain_signals needs at least one model's logits")
    if temperatures is None:
        temperatures = [1.0] * len(logits_list)
    temperatures = check_sequence(temperatures, "temperatures")
    if len(temperatures) != len(logits_list):
        raise UsageError(f"temperatures must have one value per stage: got {len(temperatures)} temperatures "
                         f"for {len(logits_list)} models")
    temperatures = [check_temperature(t, f"temperatures[{i}]") for i, t in enumerate(temperatures)]
    arrays = [_as_logits_2d(z, f"logits of stage {i}") for i, z in enumerate(logits_list)]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise UsageError(f"all stages' logits must have the same shape, got {sorted(shapes)}")
    if not ensemble or len(arrays) == 1:
        return [model_signals(z, labels, criterion, t, chunk_rows) for z, t in zip(arrays, temperatures)]
    chunk_rows = _check_chunk_rows(chunk_rows)
    n, n_classes = arrays[0].shape
    labels = _check_labels(labels, n, n_classes)
    first = model_signals(arrays[0], labels, criterion, temperatures[0], chunk_rows)
    confs = [np.empty(n, dtype=np.float64) for _ in arrays[1:]]
    preds = [np.empty(n, dtype=np.int32) for _ in arrays[1:]]
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        prob_sum = None
        for i, (z, t) in enumerate(zip(arrays, temperatures)):
            chunk = _working_float(np.asarray(z[start:stop])).astype(np.float64)
            if not np.isfinite(chunk).all():
                raise UsageError(f"logits of stage {i} contain NaN or inf in rows {start}..{stop - 1}")
            probs = softmax(chunk, t)   # float64 in -> float64 out
            prob_sum = probs if prob_sum is None else prob_sum + probs
            if i == 0:
                continue
            mean = prob_sum / (i + 1)
            confs[i - 1][start:stop] = confidence_from_probs(mean, criterion)
            preds[i - 1][start:stop] = mean.argmax(axis=1)
    return [first] + [ModelSignals(c, p, p == labels) for c, p in zip(confs, preds)]


class SignalSource:
    """Where a `core.analysis.BankAnalysis` gets per-model signals and temperatures: the seam a
    persistent store plugs into (compute-or-load per model, split, criterion, temperature).

    This default computes everything from the bank's logits every time it is asked; the analysis
    object memoises the results in memory. `core.store.SignalStore` subclasses it and keeps the
    results on disk, bit-identical.
    """

    def model_signals(self, bank, model_id: str, split: str, criterion: str, temperature: float = 1.0) -> ModelSignals:
        """Signals of one model on every sample of `split` (rows in the bank's order)."""
        return model_signals(bank.logits(model_id, split), bank.labels(split), criterion, temperature)

    def correct(self, bank, model_id: str, split: str) -> np.ndarray | None:
        """bool (N,): the model's argmax equals the label on each sample of `split`, when the source
        has it more cheaply than the model's signals (a store does); None = take it from the signals."""
        return None

    def correct_counts(self, bank, model_ids, split: str, rows: np.ndarray | None) -> np.ndarray | None:
        """int64 (len(model_ids),): how many of `rows` of `split` (None: every row) each model's argmax
        gets right, when the source has these summaries more cheaply than each model's correctness (a
        store keeps them: the single-model hull of a 500-model bank then costs one small file, not 500
        reads); None = count from each model's correctness."""
        return None

    def temperature(self, bank, model_id: str, split: str, calibration_rows: np.ndarray) -> float:
        """NLL temperature of one model fitted on the given rows of `split` (its calibration part):
        `temperature_fit(...).temperature`. A store may override this alone (the fit's details are
        then computed from the logits when asked for)."""
        return float(self.temperature_fit(bank, model_id, split, calibration_rows).temperature)

    def temperature_fit(self, bank, model_id: str, split: str, calibration_rows: np.ndarray):
        """The full core.temperature.TemperatureFit of one model on the given rows of `split`: the
        temperature (never clipped), NLL and ECE before and after, and its flags (at_bound,
        worse_than_uniform) with messages."""
        from .protocol import fit_temperatures_detailed   # protocol imports this module

        labels = np.asarray(bank.labels(split))
        mask = np.zeros(len(labels), dtype=bool)
        mask[calibration_rows] = True
        return fit_temperatures_detailed([bank.logits(model_id, split)], labels, mask)[0]

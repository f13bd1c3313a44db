"""Temperature scaling (Guo et al. 2017) fitted to the NLL optimum, and calibration metrics.

Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks", ICML 2017: one scalar
T > 0 per model, softmax(logits / T), chosen to minimise the negative log-likelihood (NLL) of the
labels on held-out (calibration) samples. T never changes the argmax, so accuracy is unchanged;
only the confidences move.

The optimum is searched over all of (0, inf), in log T: a bracket of points spaced by a factor of 4
grows outward until the smallest NLL lies strictly inside it (the NLL is convex in 1/T, hence
unimodal in log T, so the optimum is then inside), then a bounded scalar minimiser (Brent) refines it.
Nothing is clipped: a fit whose optimum lies outside a practical range is returned as found and
flagged (`at_bound`), with a message saying what it means.

Logits may be float16/float32/float64 and memory-mapped: every pass reads row chunks and
accumulates in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .criteria import _as_logits_2d, _check_labels, _working_float
from .errors import UsageError
from .signals import check_correct
from .validate import check_array, check_int, check_mask

# The optimum is searched for within these temperatures; beyond them the NLL is flat to ~1e-6 of
# its limit (uniform prediction as T -> inf, the 0/1 loss of the argmax as T -> 0).
SEARCH_LIMITS = (1e-6, 1e6)
# A fitted temperature outside this range is flagged `at_bound` (returned as found, never clipped).
PRACTICAL_RANGE = (1e-3, 1e3)
# Tolerance of the minimiser, in log T (so a relative tolerance on T).
LOG_T_TOLERANCE = 1e-7
DEFAULT_N_BINS = 15
_CHUNK_ROWS = 8192
_BRACKET_STEP = math.log(4.0)
# Shifted float64 logits are kept between NLL evaluations when they take at most this many bytes.
_CACHE_BYTES = 64 * 2**20

FLAGS = ("at_bound", "worse_than_uniform")


class TemperatureFitWarning(UserWarning):
    """A fitted temperature was flagged (its message says why); see TemperatureFit.flags."""


@dataclass(frozen=True)
class TemperatureFit:
    """Result of `fit_temperature`.

    temperature: the NLL optimum found (never clipped). nll_before / nll_after: mean NLL at T = 1 and
    at the fit; ece_before / ece_after: expected calibration error of the max-softmax confidence
    (Guo et al., `n_bins` equal-width bins) at T = 1 and at the fit; n: samples used; n_classes: C;
    uniform_nll: log C, the NLL of predicting 1/C for every class; flags: names from FLAGS
    (empty = nothing to report) with one human message each in `messages`.
    """

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    n: int
    n_classes: int
    uniform_nll: float
    flags: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing was flagged."""
        return not self.flags

    def __float__(self) -> float:
        return self.temperature

    def to_dict(self) -> dict:
        """JSON-ready: every field, flags and messages as lists."""
        return {"temperature": self.temperature, "nll_before": self.nll_before, "nll_after": self.nll_after,
                "ece_before": self.ece_before, "ece_after": self.ece_after, "n": self.n,
                "n_classes": self.n_classes, "uniform_nll": self.uniform_nll, "flags": list(self.flags),
                "messages": list(self.messages)}


# --------------------------------------------------------------------------------------
# Calibration metrics
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width confidence bins over [0, 1]: bin m holds confidences in (edges[m], edges[m+1]]
    (the first bin also holds 0). Empty bins have count 0 and NaN accuracy / mean_confidence."""

    edges: np.ndarray            # (n_bins + 1,)
    count: np.ndarray            # (n_bins,) int64
    accuracy: np.ndarray         # (n_bins,) share of right answers in the bin
    mean_confidence: np.ndarray  # (n_bins,)

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """sum over bins of |B_m| / n * |acc(B_m) - conf(B_m)| (NaN for no samples)."""
        if self.n == 0:
            return float("nan")
        full = self.count > 0
        gaps = np.abs(self.accuracy[full] - self.mean_confidence[full])
        return float(np.sum(self.count[full] * gaps) / self.n)


def _check_confidence_correct(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    conf = check_array(confidence, "confidence", minimum=0.0, maximum=1.0)
    if np.isnan(conf).any():
        raise UsageError("confidence contains NaN: fix or drop those samples")
    correct = check_correct(correct, "correct", length=len(conf))
    return conf, correct


def reliability_bins(confidence, correct, n_bins: int = DEFAULT_N_BINS) -> ReliabilityBins:
    """Bin (confidence, correct) pairs into `n_bins` equal-width bins of [0, 1] (Guo et al. 2017, sec. 2).

    confidence: probabilities in [0, 1] (e.g. the max softmax), one per sample; correct: bools (or 0/1).
    """
    conf, correct = _check_confidence_correct(confidence, correct)
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins ((m-1)/M, m/M]; 0 goes to the first bin
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    right = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, right / count, np.nan)
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
    return ReliabilityBins(edges=edges, count=count, accuracy=accuracy, mean_confidence=mean_conf)


def expected_calibration_error(confidence, correct, n_bins: int = DEFAULT_N_BINS) -> float:
    """Expected calibration error (Guo et al. 2017, eq. 3): sum_m |B_m| / n * |acc(B_m) - conf(B_m)|
    over `n_bins` equal-width bins ((m-1)/M, m/M] of [0, 1]. NaN when there are no samples."""
    return reliability_bins(confidence, correct, n_bins).ece


# --------------------------------------------------------------------------------------
# Temperature fitting
# --------------------------------------------------------------------------------------

class _Rows:
    """The selected rows of a logits array, as float64 chunks shifted so each row's max is 0
    (kept in memory between passes when small enough), with the label's shifted logit."""

    def __init__(self, logits: np.ndarray, labels: np.ndarray, index: np.ndarray | None, chunk_rows: int):
        self.logits = logits
        self.labels = labels
        self.index = index
        self.chunk_rows = chunk_rows
        n = logits.shape[0] if index is None else len(index)
        self.n = n
        self._cache: list | None = [] if n * logits.shape[1] * 8 <= _CACHE_BYTES else None
        self._complete = False

    def _read(self):
        n_rows = self.logits.shape[0]
        for start in range(0, n_rows, self.chunk_rows):
            stop = min(start + self.chunk_rows, n_rows)
            if self.index is None:
                rows = np.arange(start, stop)
                z = np.asarray(self.logits[start:stop])
            else:
                lo, hi = np.searchsorted(self.index, [start, stop])
                if lo == hi:
                    continue
                rows = self.index[lo:hi]
                z = np.asarray(self.logits[start:stop])[rows - start]
            z = _working_float(z).astype(np.float64)
            if not np.isfinite(z).all():
                bad = int(rows[np.flatnonzero(~np.isfinite(z).all(axis=1))[0]])
                raise UsageError(f"logits row {bad} contains NaN or inf; fix or drop that sample")
            z -= z.max(axis=1, keepdims=True)
            y = self.labels[rows]
            yield z, z[np.arange(len(y)), y], z.argmax(axis=1) == y

    def chunks(self):
        if self._complete:
            yield from self._cache
            return
        cache = [] if self._cache is not None else None
        for item in self._read():
            if cache is not None:
                cache.append(item)
            yield item
        if cache is not None:
            self._cache, self._complete = cache, True

    def nll(self, temperature: float) -> float:
        total = 0.0
        for z, z_label, _ in self.chunks():
            log_norm = np.log(np.exp(z / temperature).sum(axis=1))   # >= 0: the row max is exp(0) = 1
            total += float(np.sum(log_norm - z_label / temperature))
        return total / self.n

    def confidence_correct(self, temperature: float) -> tuple[np.ndarray, np.ndarray]:
        conf, correct = [], []
        for z, _, right in self.chunks():
            conf.append(1.0 / np.exp(z / temperature).sum(axis=1))
            correct.append(right)
        return np.concatenate(conf), np.concatenate(correct)


def _minimise_log_t(nll) -> float:
    """log T minimising nll(T): grow a bracket until the smallest value is inside, then Brent."""
    from scipy.optimize import minimize_scalar

    low, high = math.log(SEARCH_LIMITS[0]), math.log(SEARCH_LIMITS[1])
    xs = [-_BRACKET_STEP, 0.0, _BRACKET_STEP]
    fs = [nll(math.exp(x)) for x in xs]
    while True:
        best = int(np.argmin(fs))   # first of equal values: a plateau towards T -> 0 runs left
        if best == 0 and xs[0] > low:
            xs.insert(0, max(low, xs[0] - _BRACKET_STEP))
            fs.insert(0, nll(math.exp(xs[0])))
        elif best == len(xs) - 1 and xs[-1] < high:
            xs.append(min(high, xs[-1] + _BRACKET_STEP))
            fs.append(nll(math.exp(xs[-1])))
        else:
            break
    a, b = xs[max(best - 1, 0)], xs[min(best + 1, len(xs) - 1)]
    result = minimize_scalar(lambda x: nll(math.exp(x)), bounds=(a, b), method="bounded",
                             options={"xatol": LOG_T_TOLERANCE})
    # Brent never evaluates the bracket ends; keep the grid point when it is at least as good (a
    # plateau, e.g. NLL exactly 0 for every small T, then reports the search limit it runs to)
    x, f = float(result.x), float(result.fun)
    if fs[best] <= f:
        x = xs[best]
    return x


def _flags(temperature: float, nll_after: float, uniform_nll: float) -> tuple[tuple, tuple]:
    flags, messages = [], []
    if temperature > PRACTICAL_RANGE[1] or temperature < PRACTICAL_RANGE[0]:
        flags.append("at_bound")
        if temperature >= SEARCH_LIMITS[1] * (1 - 1e-6):
            detail = (f"the NLL still falls as T grows at the search limit T = {SEARCH_LIMITS[1]:g}: the optimum "
                      "is T -> infinity (every confidence tends to 1/C)")
        elif temperature <= SEARCH_LIMITS[0] * (1 + 1e-6):
            detail = (f"the NLL still falls as T shrinks at the search limit T = {SEARCH_LIMITS[0]:g}: the "
                      "optimum is T -> 0 (every confidence tends to 1; typically the argmax is right on "
                      "(nearly) every calibration sample)")
        elif temperature > PRACTICAL_RANGE[1]:
            detail = "the optimum flattens the softmax almost to uniform"
        else:
            detail = "the optimum sharpens the softmax almost to a one-hot vote"
        messages.append(f"temperature {temperature:.4g} is outside the practical range "
                        f"[{PRACTICAL_RANGE[0]:g}, {PRACTICAL_RANGE[1]:g}]: {detail}. Reported as found, not "
                        "clipped; check the logits (scale, class order, labels) before using it")
    if nll_after >= uniform_nll:
        flags.append("worse_than_uniform")
        messages.append(f"even at its best temperature the model's NLL ({nll_after:.4g}) is no better than "
                        f"predicting 1/C for every class (log C = {uniform_nll:.4g}): its probabilities carry "
                        "no usable information about the labels; check that the labels match the logits' "
                        "class order")
    return tuple(flags), tuple(messages)


def fit_temperature(logits, labels, mask=None, *, n_bins: int = DEFAULT_N_BINS,
                    chunk_rows: int = _CHUNK_ROWS) -> TemperatureFit:
    """Fit one temperature T > 0 minimising the mean NLL of softmax(logits / T) (Guo et al. 2017).

    logits: (N, C) real numbers (float16/32/64, possibly a np.memmap: read in row chunks of
    `chunk_rows`, accumulated in float64); labels: (N,) integers in 0..C-1; mask: optional bool (N,),
    True = use the row (the calibration part); n_bins: bins of the ECE reported before/after.
    The optimum over all of (0, inf) is returned without clipping; see `TemperatureFit.flags`.
    """
    z = _as_logits_2d(logits)
    n_rows, n_classes = z.shape
    labels = _check_labels(labels, n_rows, n_classes)
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    chunk_rows = check_int(chunk_rows, "chunk_rows", minimum=1)
    index = None
    if mask is not None:
        index = np.flatnonzero(check_mask(mask, "mask", n_rows))
    n = n_rows if index is None else len(index)
    if n == 0:
        raise UsageError("cannot fit a temperature on 0 samples: " + (
            "mask selects no rows; select at least one (e.g. a larger calibration fraction)" if mask is not None
            else "logits has no rows; pass the calibration samples' logits"))
    rows = _Rows(z, labels, index, chunk_rows)
    log_t = _minimise_log_t(rows.nll)
    temperature = math.exp(log_t)
    nll_before, nll_after = rows.nll(1.0), rows.nll(temperature)
    conf_before, correct = rows.confidence_correct(1.0)
    conf_after, _ = rows.confidence_correct(temperature)
    uniform_nll = math.log(n_classes)
    flags, messages = _flags(temperature, nll_after, uniform_nll)
    return TemperatureFit(
        temperature=temperature, nll_before=nll_before, nll_after=nll_after,
        ece_before=expected_calibration_error(conf_before, correct, n_bins),
        ece_after=expected_calibration_error(conf_after, correct, n_bins),
        n=int(n), n_classes=int(n_classes), uniform_nll=uniform_nll, flags=flags, messages=messages)


"""A synthetic bank of model-like logits, for benchmarks and tests.

Each sample has a true class and K-1 "confuser" classes shared by every model (so models make
correlated errors), a difficulty shared by every model, and a per-sample rotation of a fixed
class-level background pattern. Model m has a skill (margin of the true class), a sharpness
(logit scale) and its own noise; its cost grows with its skill. The remaining classes' logits are
the background pattern, so a model's full (N x C) logits are defined exactly by a few (N x K)
arrays: its signals are computed from those in O(N K) (no N x C memory, so 500 models are cheap),
and `logits(model)` materialises the same logits when a real array is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .criteria import CRITERIA, check_criterion, check_temperature
from .errors import UsageError
from .signals import ModelSignals, model_signals

N_CANDIDATES = 8          # true class + confusers per sample
BACKGROUND_LEVEL = -1.0   # background logits sit below the candidates (before the model's scale)
BACKGROUND_SPREAD = 0.6   # spread of the class-level background pattern
CONFUSER_PULL = 1.0       # weight of the shared confuser strength (correlated errors)
DIFFICULTY_WEIGHT = 1.2   # weight of the shared per-sample difficulty


@dataclass
class SyntheticBank:
    """Labels, costs and per-model parameters; signals per criterion are computed on demand and cached."""

    labels: np.ndarray                 # (N,) int64
    n_classes: int
    model_ids: list[str]               # cost ascending
    gmacs: dict[str, float]
    ms: dict[str, float]
    seed: int
    _candidates: np.ndarray = field(repr=False)       # (N, K) classes, column 0 = true class
    _shared: np.ndarray = field(repr=False)           # (N, K) unscaled shared part of candidate logits
    _shift: np.ndarray = field(repr=False)            # (N,) background rotation
    _pattern: np.ndarray = field(repr=False)          # (C,) background pattern
    _cand_pattern: np.ndarray = field(repr=False)     # (N, K) pattern value under each candidate class
    _bg_top: np.ndarray = field(repr=False)           # (N, 2) best two background pattern values (-inf if none)
    _bg_top_class: np.ndarray = field(repr=False)     # (N, 2) their classes
    _models: dict = field(repr=False)                 # id -> (skill, sharpness, noise, seed)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def logits_nbytes(self) -> int:
        """Bytes the logits of every model would take as float16 (what a real bank stores)."""
        return len(self.model_ids) * self.n_samples * self.n_classes * 2

    def _candidate_logits(self, model_id: str, temperature: float) -> np.ndarray:
        """(N, K) logits of the candidate classes of one model, divided by `temperature`."""
        skill, sharpness, noise, model_seed = self._models[model_id]
        rng = np.random.default_rng([self.seed, model_seed])
        unscaled = self._shared + noise * rng.standard_normal(self._shared.shape)
        unscaled[:, 0] += skill
        # float32 like a real bank's logits (after float16 -> float32), so logits() matches exactly
        return (sharpness * unscaled).astype(np.float32).astype(np.float64) / temperature

    def logits(self, model_id: str, dtype=np.float16, rows: slice | None = None) -> np.ndarray:
        """The model's full logits (N x C, or the given rows), exactly the ones its signals describe."""
        if model_id not in self._models:
            raise UsageError(f"unknown synthetic model {model_id!r}; known: {self.model_ids[:5]}...")
        rows = rows or slice(0, self.n_samples)
        sharpness = self._models[model_id][1]
        background = (sharpness * (BACKGROUND_LEVEL + BACKGROUND_SPREAD * self._pattern)).astype(np.float32)
        # row n is the background rotated by shift[n]: rows of a sliding window over it repeated twice
        windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([background, background]), self.n_classes)
        dense = windows[self._shift[rows]]
        cand = self._candidate_logits(model_id, 1.0)[rows].astype(np.float32)
        np.put_along_axis(dense, self._candidates[rows], cand, axis=1)
        return dense.astype(dtype)

    def signals(self, model_id: str, criterion: str = "max_softmax", temperature: float = 1.0) -> ModelSignals:
        """Signals of one model from its O(N K) description (cached)."""
        check_criterion(criterion)
        temperature = check_temperature(temperature)
        key = (model_id, criterion, temperature)
        if key not in self._cache:
            self._cache[key] = self._compute_signals(model_id, criterion, temperature)
        return self._cache[key]

    def all_signals(self, criterion: str = "max_softmax") -> dict[str, ModelSignals]:
        return {m: self.signals(m, criterion) for m in self.model_ids}

    def signals_from_logits(self, model_id: str, criterion: str = "max_softmax", temperature: float = 1.0,
                            chunk_rows: int = 4096) -> ModelSignals:
        """The slow way (materialise float32 logits in row chunks, then model_signals): for checks."""
        conf, pred, correct = [], [], []
        for start in range(0, self.n_samples, chunk_rows):
            rows = slice(start, min(start + chunk_rows, self.n_samples))
            s = model_signals(self.logits(model_id, np.float32, rows), self.labels[rows], criterion, temperature)
            conf.append(s.confidence), pred.append(s.prediction), correct.append(s.correct)
        return ModelSignals(np.concatenate(conf), np.concatenate(pred), np.concatenate(correct))

    def _compute_signals(self, model_id: str, criterion: str, temperature: float) -> ModelSignals:
        sharpness = self._models[model_id][1]
        cand = self._candidate_logits(model_id, temperature)                       # (N, K)
        # background logits: the float32 values logits() stores, over temperature
        bg_top = (sharpness * (BACKGROUND_LEVEL + BACKGROUND_SPREAD * self._bg_top)).astype(np.float32)
        bg_top = np.where(np.isfinite(self._bg_top), bg_top.astype(np.float64) / temperature, -np.inf)
        values = np.concatenate([cand, bg_top], axis=1)                            # (N, K + 2)
        classes = np.concatenate([self._candidates, self._bg_top_class], axis=1)
        best = np.argmax(values, axis=1)
        rows = np.arange(self.n_samples)
        top1 = values[rows, best]
        masked = values.copy()
        masked[rows, best] = -np.inf
        top2 = masked.max(axis=1)
        prediction = classes[rows, best].astype(np.int32)
        correct = prediction == self.labels
        if criterion == "logit_margin":
            return ModelSignals(top1 - top2, prediction, correct)
        # background sums over the non-candidate classes, relative to the row maximum top1:
        # sum exp(z - top1) = exp(level - top1) * (S0 - sum_k exp(spread * p_k)), p = pattern values
        level = (sharpness * BACKGROUND_LEVEL) / temperature
        spread = (sharpness * BACKGROUND_SPREAD) / temperature
        weights = np.exp(spread * self._pattern)
        s0, s1 = weights.sum(), (weights * self._pattern).sum()
        cand_w = np.exp(spread * self._cand_pattern)
        if self.n_classes > self._candidates.shape[1]:
            e0 = np.maximum(s0 - cand_w.sum(axis=1), 0.0)
            e1 = s1 - (cand_w * self._cand_pattern).sum(axis=1)
        else:
            e0 = e1 = np.zeros(self.n_samples)
        bg_factor = np.exp(level - top1)
        cand_exp = np.exp(cand - top1[:, None])
        total = cand_exp.sum(axis=1) + bg_factor * e0
        if criterion == "max_softmax":
            return ModelSignals(1.0 / total, prediction, correct)
        if criterion == "softmax_margin":
            return ModelSignals((1.0 - np.exp(top2 - top1)) / total, prediction, correct)
        # sum p log p = sum exp(z - top1) (z - top1) / total - log(total)
        weighted = (cand_exp * (cand - top1[:, None])).sum(axis=1) + bg_factor * ((level - top1) * e0 + spread * e1)
        return ModelSignals(weighted / total - np.log(total), prediction, correct)


def _distinct_confusers(rng, labels: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """(N, k) distinct classes per row, column 0 = the label."""
    n = len(labels)
    if k == n_classes:
        offsets = np.argsort(rng.random((n, n_classes - 1)), axis=1)[:, : k - 1] + 1
    else:
        offsets = rng.integers(1, n_classes, size=(n, k - 1))
        for _ in range(1000):   # redraw rows with repeated offsets (rare for many classes)
            ordered = np.sort(offsets, axis=1)
            bad = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1) if k > 2 else np.zeros(n, bool)
            if not bad.any():
                break
            if n_classes - 1 <= 4 * k:
                offsets[bad] = np.argsort(rng.random((bad.sum(), n_classes - 1)), axis=1)[:, : k - 1] + 1
            else:
                offsets[bad] = rng.integers(1, n_classes, size=(bad.sum(), k - 1))
    return np.concatenate([labels[:, None], (labels[:, None] + offsets) % n_classes], axis=1)


def make_synthetic_bank(n_models: int = 100, n_samples: int = 50_000, n_classes: int = 1000, *,
                        seed: int = 0) -> SyntheticBank:
    """A reproducible synthetic bank; models are named synth_000.. in cost order."""
    if n_models < 1 or n_samples < 1 or n_classes < 2:
        raise UsageError(f"need >= 1 model, >= 1 sample and >= 2 classes, got {n_models}, {n_samples}, {n_classes}")
    rng = np.random.default_rng([seed, 0])
    k = min(N_CANDIDATES, n_classes)
    labels = rng.integers(0, n_classes, n_samples).astype(np.int64)
    candidates = _distinct_confusers(rng, labels, n_classes, k)
    difficulty = rng.standard_normal(n_samples)
    shared = CONFUSER_PULL * rng.standard_normal((n_samples, k))
    shared[:, 0] = -DIFFICULTY_WEIGHT * difficulty
    shift = rng.integers(0, n_classes, n_samples)
    pattern = rng.standard_normal(n_classes)
    cand_pattern = pattern[(candidates + shift[:, None]) % n_classes]

    # best two background classes per sample: scan the pattern's top entries, skipping candidates
    n_top = min(n_classes, k + 2)
    top_index = np.argsort(-pattern)[:n_top]
    top_class = (top_index[None, :] - shift[:, None]) % n_classes                     # (N, n_top)
    is_candidate = (top_class[:, :, None] == candidates[:, None, :]).any(axis=2)
    rank = np.where(is_candidate, n_top + np.arange(n_top), np.arange(n_top))        # candidates last
    picks = np.argsort(rank, axis=1)[:, :2]
    rows = np.arange(n_samples)[:, None]
    bg_top = np.where(is_candidate[rows, picks], -np.inf, pattern[top_index][picks])
    bg_top_class = top_class[rows, picks]

    model_rng = np.random.default_rng([seed, 1])
    skills = np.sort(model_rng.uniform(0.3, 4.5, n_models))
    sharpness = model_rng.uniform(1.2, 3.0, n_models)
    noise = model_rng.uniform(0.6, 1.2, n_models)
    # cost grows roughly exponentially with skill, with scatter (some models are inefficient)
    gmacs = 0.02 * np.exp(0.9 * skills) * np.exp(model_rng.normal(0, 0.35, n_models))
    ms = 0.4 + 6.0 * gmacs * np.exp(model_rng.normal(0, 0.2, n_models))
    order = np.argsort(gmacs, kind="stable")
    ids = [f"synth_{i:03d}" for i in range(n_models)]
    models = {ids[r]: (float(skills[j]), float(sharpness[j]), float(noise[j]), int(j) + 2)
              for r, j in enumerate(order)}
    return SyntheticBank(
        labels=labels, n_classes=n_classes, model_ids=ids,
        gmacs={ids[r]: float(gmacs[j]) for r, j in enumerate(order)},
        ms={ids[r]: float(ms[j]) for r, j in enumerate(order)}, seed=seed,
        _candidates=candidates, _shared=shared, _shift=shift, _pattern=pattern, _cand_pattern=cand_pattern,
        _bg_top=bg_top, _bg_top_class=bg_top_class, _models=models)


__all__ = ["SyntheticBank", "make_synthetic_bank", "CRITERIA"]

"""Model families, model filters and which models a chart names: what makes a bank of hundreds of
models readable (pure functions; no Streamlit).

A *family* groups architectures that differ in size or training (``resnet18``/``resnet50``,
``vit_base_patch16_224``/``vit_large_patch16_384``): a model entry's ``family`` field in the
manifest when present, else the timm convention, the name's prefix before the first ``_`` or group
of digits (``vit_base_patch16_224.augreg2_in21k_ft_in1k`` -> ``vit``, ``resnet50`` -> ``resnet``,
``mobilenetv3_large_100`` -> ``mobilenetv``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import UsageError

# the timm family: everything before the first "_", "." or "-" or the first digit group
_PREFIX = re.compile(r"^([^_\d.\-]+)")
# A log cost axis by default once the costs span more than this factor (issue 10: a linear axis
# crushes most of a zoo of 0.05-50 GMACs models against zero).
LOG_SPAN = 30.0
# Above this many models a chart names only the models that matter (frontier, cascade, best).
LABEL_ALL_UP_TO = 12


def family_of(model_id: str, declared: object = None) -> str:
    """The family of a model: `declared` (the manifest's ``family`` field) when it is a non-empty
    string, else the prefix of `model_id` before the first ``_``, ``.``, ``-`` or digit group; a name
    that starts with a digit or separator is its own family."""
    if isinstance(declared, str) and declared.strip():
        return declared.strip()
    match = _PREFIX.match(str(model_id))
    return match.group(1) if match else str(model_id)


def bank_families(bank) -> dict[str, str]:
    """model id -> family for every model of `bank` (a core.bank.Bank: the manifest's ``family``
    field of a model entry wins over the name)."""
    entries = (getattr(bank, "manifest", None) or {}).get("models", {}) or {}
    return {m: family_of(m, (entries.get(m) or {}).get("family") if isinstance(entries.get(m), dict) else None)
            for m in bank.model_ids}


def log_axis_default(costs: Iterable[float], span: float = LOG_SPAN) -> bool:
    """True when the positive, finite costs span more than `span` times (max / min): a log axis then
    shows the cheap models apart; False for fewer than two such costs."""
    values = np.asarray([float(c) for c in costs if c is not None], dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) < 2:
        return False
    return float(values.max() / values.min()) > span


@dataclass(frozen=True)
class ModelFilter:
    """What narrows a list of models: a case-insensitive name substring (id or display name), a
    family ("" = any), a cost range in GMACs per image and an accuracy range (fractions), both
    inclusive; None = open end."""

    text: str = ""
    family: str = ""
    min_gmacs: float | None = None
    max_gmacs: float | None = None
    min_accuracy: float | None = None
    max_accuracy: float | None = None

    def __post_init__(self):
        for lo, hi, name in (("min_gmacs", "max_gmacs", "gmacs"), ("min_accuracy", "max_accuracy", "accuracy")):
            a, b = getattr(self, lo), getattr(self, hi)
            for value, field_name in ((a, lo), (b, hi)):
                if value is not None and not math.isfinite(float(value)):
                    raise UsageError(f"{field_name} must be a finite number, got {value!r}")
            if a is not None and b is not None and float(a) > float(b):
                raise UsageError(f"{lo} must be <= `{hi}`, got {a!r} > {b!r}")

    @property
    def active(self) -> bool:
        return bool(self.text.strip() or self.family) or any(
            v is not None for v in (self.min_gmacs, self.max_gmacs, self.min_accuracy, self.max_accuracy))


def filter_models(singles: pd.DataFrame, families: Mapping[str, str], flt: ModelFilter) -> list[str]:
    """The ids of the models in `singles` (core.analysis single_models: ``id``, ``display_name``,
    ``gmacs``, ``accuracy``) that pass `flt`, in the frame's order. `families`: id -> family."""
    if singles is None or len(singles) == 0:
        return []
    keep = np.ones(len(singles), dtype=bool)
    needle = flt.text.strip().lower()
    ids = singles["id"].astype(str).to_numpy()
    if needle:
        names = singles["display_name"].astype(str).str.lower().to_numpy()
        keep &= np.array([needle in i.lower() or needle in n for i, n in zip(ids, names)], dtype=bool)
    if flt.family:
        keep &= np.array([families.get(i, family_of(i)) == flt.family for i in ids], dtype=bool)
    gmacs = singles["gmacs"].to_numpy(dtype=float)
    accuracy = singles["accuracy"].to_numpy(dtype=float)
    if flt.min_gmacs is not None:
        keep &= gmacs >= float(flt.min_gmacs)
    if flt.max_gmacs is not None:
        keep &= gmacs <= float(flt.max_gmacs)
    if flt.min_accuracy is not None:
        keep &= accuracy >= float(flt.min_accuracy)
    if flt.max_accuracy is not None:
        keep &= accuracy <= float(flt.max_accuracy)
    return [str(i) for i in ids[keep]]


def labelled_models(singles: pd.DataFrame, *, frontier: pd.DataFrame | None = None,
                    current: Sequence[str] = (), limit: int = LABEL_ALL_UP_TO) -> set[str]:
    """The ids a chart prints a name beside: every model when there are at most `limit`; otherwise
    the models of frontier cascades (``models`` column), the models in the current cascade and the
    most accurate single model (every point keeps its name on hover)."""
    if singles is None or len(singles) == 0:
        return set()
    ids = singles["id"].astype(str)
    if len(singles) <= limit:
        return set(ids)
    out = {str(m) for m in current}
    if frontier is not None and len(frontier) > 0 and "models" in frontier:
        out.update(str(m) for chain in frontier["models"] for m in chain)
    out.add(str(singles.loc[singles["accuracy"].astype(float).idxmax(), "id"]))
    return out & set(ids)


def frontier_models(frontier: pd.DataFrame | None) -> list[str]:
    """Every model that appears in a cascade of `frontier` (a core frontier DataFrame), first
    appearance order: the models that can reach the frontier."""
    if frontier is None or len(frontier) == 0:
        return []
    return list(dict.fromkeys(str(m) for chain in frontier["models"] for m in chain))


def chains_using(frontier_chains: Sequence[Sequence[str]], model_id: str) -> np.ndarray:
    """bool (rows,): which chains (each a sequence of model ids) contain `model_id` ("" = all)."""
    if not model_id:
        return np.ones(len(frontier_chains), dtype=bool)
    return np.array([model_id in chain for chain in frontier_chains], dtype=bool)





# --------------------------------------------------------------------------- 3-model shortlist bounds

# What a 3-model search holds per shortlisted model: float64 confidence + int64 prediction + bool
# correctness per sample (core.signals.ModelSignals), plus one chain's curve at a time: about
# (grid_size + 1) first-stage thresholds x N float64 working values (core.curves.cascade_curve).
SHORTLIST_BYTES_PER_SAMPLE = 17
SHORTLIST_BUDGET_BYTES = 1 << 30        # 1 GiB: a dashboard server shares its memory with every session


def shortlist_bytes(k: int, n_samples: int, grid_size: int = 64) -> int:
    """Estimated peak bytes of a 3-model search over `k` shortlisted models at `n_samples` samples
    (see SHORTLIST_BYTES_PER_SAMPLE): k models' signals plus one chain's working curve."""
    if k < 0 or n_samples < 0:
        raise UsageError(f"k and n_samples must be >= 0, got {k}, {n_samples}")
    return int(k * n_samples * SHORTLIST_BYTES_PER_SAMPLE + (grid_size + 1) * n_samples * 8)


def max_shortlist(n_samples: int, budget_bytes: int = SHORTLIST_BUDGET_BYTES, grid_size: int = 64,
                  cap: int = 12) -> int:
    """The longest shortlist whose 3-model search fits `budget_bytes` (shortlist_bytes), at most
    `cap` (the chains grow with the cube of the length: 12 models are 220 chains) and at least 3."""
    k = cap
    while k > 3 and shortlist_bytes(k, n_samples, grid_size) > budget_bytes:
        k -= 1
    return k


def default_shortlist(frontier: pd.DataFrame | None, ids: Sequence[str], limit: int) -> list[str]:
    """The models that can reach the frontier (those in the pair frontier's cascades, cheapest first
    in the order of `ids`), at most `limit`; padded with the most expensive of `ids` when fewer than 3."""
    on_front = set(frontier_models(frontier))
    chosen = [m for m in ids if m in on_front]
    if len(chosen) > limit:
        # keep the spread: evenly spaced over the cost order, cheapest and dearest included
        picks = np.unique(np.round(np.linspace(0, len(chosen) - 1, limit)).astype(int))
        chosen = [chosen[i] for i in picks]
    for m in reversed(list(ids)):
        if len(chosen) >= min(3, len(ids)):
            break
        if m not in chosen:
            chosen.append(m)
    order = {m: i for i, m in enumerate(ids)}
    return sorted(chosen, key=order.__getitem__)


__all__ = ["LOG_SPAN", "LABEL_ALL_UP_TO", "ModelFilter", "family_of", "bank_families", "log_axis_default",
           "filter_models", "labelled_models", "frontier_models", "chains_using", "shortlist_bytes",
           "max_shortlist", "default_shortlist"]

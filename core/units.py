"""Work units of precompute: one model x one shard of the image list, staged as its own files.

A run of `precompute` is cut into units (model, rows start..stop-1 of the image list as given;
`plan_shards`). A finished unit is written atomically into the bank's staging area
(`format.unit_paths`: the float16 logits of the shard's decodable images as .npy, then a small
JSON record: model, split, shard range, the rows and sample ids kept, the images skipped, dtype,
shape, a sha256 of the logits and a fingerprint of what the unit was computed from). The record is
written last, so a unit exists exactly when its record does. When every shard of a model x split
is staged, `assemble` concatenates them into `logits/<model>.npy` (BankWriter.add_logits, atomic),
records the split the first time, calls `precompute.on_logits_assembled` and removes the staging
folder. Both engines (core/precompute_local.py, core/precompute_ray.py) plan, skip finished units
and assemble through this module only, so resume behaves the same: a killed run loses at most the
units in flight.

A staged unit is reused only when its fingerprint (model spec, corruption, the shard's sample ids
and image paths) matches the current run and its checksum is right; otherwise it is recomputed
(a different `shard_size` simply leaves old units unused; they are removed at assembly).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_save_npy, atomic_write_json
from .errors import BankError, UsageError
from .validate import check_int

# A unit should take a few minutes on a GPU for a large model (ViT-L class: ~50-100 img/s end to
# end when decoding keeps up) and a few seconds for a small one; 10,000 images is 5 units per model
# on ImageNet val, so a killed run loses at most a fifth of a model's pass per unit in flight.
DEFAULT_SHARD_SIZE = 10_000
UNIT_DTYPE = np.float16          # what precompute stores (float32 only where float16 would lose a top class)
RECORD_VERSION = 1


def check_shard_size(shard_size) -> int:
    """shard_size as an int >= 1, or a UsageError naming `shard_size`."""
    check_int(shard_size, "shard_size", minimum=1)
    return int(shard_size)


def plan_shards(n_images: int, shard_size: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering rows 0..n_images-1 in order, each at most shard_size long."""
    shard_size = check_shard_size(shard_size)
    return [(start, min(start + shard_size, n_images)) for start in range(0, n_images, shard_size)]


def shard_fingerprint(spec: str, transform, sample_ids, rel_paths) -> str:
    """sha256 (hex) of what a unit's logits depend on besides the weights: model spec, corruption
    (transform entry or None), and the shard's sample ids and image paths, in order."""
    payload = json.dumps({"spec": spec, "transform": transform or None, "ids": list(sample_ids),
                          "paths": list(rel_paths)}, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def logits_checksum(logits: np.ndarray) -> str:
    """sha256 of the C-ordered bytes of a logits array (dtype and shape are recorded beside it)."""
    return hashlib.sha256(np.ascontiguousarray(logits).tobytes()).hexdigest()


@dataclass
class UnitResult:
    """One computed unit: logits (n_kept, C) for the decodable rows of the shard, in row order."""

    model_id: str
    split: str
    start: int
    stop: int
    rows: list[int]                 # absolute rows of the image list that were decoded
    sample_ids: list[str]           # their sample ids
    skipped: list[dict]             # {"image_path", "reason"} for each undecodable image of the shard
    logits: np.ndarray
    node: str | None = None         # Ray node id (None for the local engine)
    forward_s: float = 0.0


def stored_unit_logits(logits: np.ndarray) -> np.ndarray:
    """UNIT_DTYPE (float16) logits, each row shifted by its maximum before the cast (format.narrow_rows:
    criteria ignore the shift, the class differences survive it), or float32 when float16 would merge a
    row's top classes even so."""
    from .bank.format import narrow_rows

    try:
        return narrow_rows(logits.astype(np.float32, copy=False), UNIT_DTYPE)
    except BankError:
        return logits.astype(np.float32, copy=False)


def write_unit(bank_path, result: UnitResult, fingerprint: str) -> dict:
    """Stage a finished unit: its logits (UNIT_DTYPE) then its record, each written atomically."""
    from .bank.format import unit_paths

    logits = np.ascontiguousarray(stored_unit_logits(np.asarray(result.logits)))
    if logits.ndim != 2 or len(logits) != len(result.rows):
        raise BankError(f"unit {result.start}-{result.stop}: logits shape {logits.shape} does not match "
                        f"{len(result.rows)} decoded images", model=result.model_id, split=result.split,
                        fix="report this as a bug; nothing was staged")
    npy, record_path = unit_paths(bank_path, result.split, result.model_id, result.start, result.stop)
    record = {"version": RECORD_VERSION, "model": result.model_id, "split": result.split,
              "start": int(result.start), "stop": int(result.stop), "rows": [int(r) for r in result.rows],
              "sample_ids": list(result.sample_ids), "skipped": [dict(s) for s in result.skipped],
              "dtype": str(logits.dtype), "shape": list(logits.shape), "sha256": logits_checksum(logits),
              "fingerprint": fingerprint, "node": result.node}
    atomic_save_npy(npy, logits)
    atomic_write_json(record_path, record, indent=None)
    return record


def read_record(bank_path, split: str, model_id: str, start: int, stop: int, fingerprint: str) -> dict | None:
    """The unit's record when it is staged for this exact fingerprint, else None (absent or stale)."""
    from .bank.format import unit_paths

    npy, record_path = unit_paths(bank_path, split, model_id, start, stop)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(record, dict) or record.get("version") != RECORD_VERSION
            or record.get("fingerprint") != fingerprint or not npy.is_file()):
        return None
    return record


def load_unit_logits(bank_path, record: dict) -> np.ndarray | None:
    """The staged logits of `record`, or None when the file does not match its checksum/shape/dtype."""
    from .bank.format import unit_paths

    npy, _ = unit_paths(bank_path, record["split"], record["model"], record["start"], record["stop"])
    try:
        logits = np.load(npy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if (str(logits.dtype) != record["dtype"] or list(logits.shape) != record["shape"]
            or logits_checksum(logits) != record["sha256"]):
        return None
    return logits


def remove_unit(bank_path, split: str, model_id: str, start: int, stop: int) -> None:
    """Forget a staged unit (record first, so a half-removed unit is never taken for a finished one)."""
    from .bank.format import unit_paths

    npy, record_path = unit_paths(bank_path, split, model_id, start, stop)
    record_path.unlink(missing_ok=True)
    npy.unlink(missing_ok=True)


def clear_staging(bank_path, split: str, model_id: str) -> None:
    """Remove every staged unit of a model x split (after assembly, or when `force` redoes it)."""
    from .bank.format import staging_dir

    folder = staging_dir(bank_path, split, model_id)
    if folder.is_dir():
        shutil.rmtree(folder)
    # Drop the now-empty parents so a finished bank carries no staging folder.
    for parent in (staging_dir(bank_path, split), staging_dir(bank_path)):
        try:
            parent.rmdir()
        except OSError:
            break


@dataclass
class UnitPlan:
    """Every unit of one precompute run: shards of the image list x pending models, and which are staged."""

    bank_path: Path
    split: str
    shards: list[tuple[int, int]]
    fingerprints: dict[str, list[str]]                       # model id -> one per shard
    staged: dict[str, set[int]] = field(default_factory=dict)  # model id -> shard numbers already staged
    resumed_at_start: int = 0                                # units staged by earlier runs when planned
    signals: bool = True                                     # fill the signal store as each model is assembled

    def todo(self, model_id: str) -> list[int]:
        return [k for k in range(len(self.shards)) if k not in self.staged.get(model_id, set())]

    @property
    def total(self) -> int:
        return len(self.shards) * len(self.fingerprints)

    @property
    def resumed(self) -> int:
        return sum(len(v) for v in self.staged.values())

    def mark(self, model_id: str, shard: int) -> None:
        self.staged.setdefault(model_id, set()).add(shard)

    def complete(self, model_id: str) -> bool:
        return len(self.staged.get(model_id, ())) == len(self.shards)


def plan_units(bank_path, split: str, samples, adapters, *, shard_size: int, transform, log=None) -> UnitPlan:
    """The units of `adapters` (pending models) over `samples`, with those already staged (same
    fingerprint, logits matching their checksum) marked; a damaged staged unit is removed."""
    shards = plan_shards(len(samples), shard_size)
    fingerprints = {a.id: [shard_fingerprint(a.spec, transform, samples.sample_ids[s:e], samples.rel_paths[s:e])
                           for s, e in shards] for a in adapters}
    plan = UnitPlan(Path(bank_path), split, shards, fingerprints)
    for model_id, prints in fingerprints.items():
        for k, (start, stop) in enumerate(shards):
            record = read_record(bank_path, split, model_id, start, stop, prints[k])
            if record is None:
                continue
            if load_unit_logits(bank_path, record) is None:     # damaged since: compute it again
                if log is not None:
                    log(f"staged unit {start}-{stop} of {model_id} does not match its checksum; recomputing it")
                remove_unit(bank_path, split, model_id, start, stop)
                continue
            plan.mark(model_id, k)
    plan.resumed_at_start = plan.resumed
    return plan


def assemble(writer, plan: UnitPlan, model_id: str, samples, *, split_meta: dict, log=None) -> float | None:
    """Concatenate a model's staged units into logits/<model>.npy; returns its top-1, or None when a
    unit is missing or damaged (then it is unstaged and must be computed again).

    The first model assembled for a new split records the split (decodable images, skipped list).
    Raises UsageError when the decodable images differ from the split's recorded samples (the image
    files changed since) or when no image could be decoded.
    """
    from . import precompute as _precompute

    records, parts = [], []
    for k, (start, stop) in enumerate(plan.shards):
        record = read_record(plan.bank_path, plan.split, model_id, start, stop, plan.fingerprints[model_id][k])
        logits = None if record is None else load_unit_logits(plan.bank_path, record)
        if logits is None:
            if log is not None:
                log(f"staged unit {start}-{stop} of {model_id} is missing or damaged; it will be recomputed")
            remove_unit(plan.bank_path, plan.split, model_id, start, stop)
            plan.staged.get(model_id, set()).discard(k)
            return None
        records.append(record)
        parts.append(logits)
    rows = [r for record in records for r in record["rows"]]
    skipped = [s for record in records for s in record["skipped"]]
    split = plan.split
    if not writer.has_split(split):
        if not rows:
            reason = skipped[0]["reason"] if skipped else "?"
            raise UsageError(f"none of the {len(samples)} images could be decoded, e.g. {reason}")
        kept = samples.subset(rows)
        writer.add_split(split, kept.sample_ids, kept.rel_paths, kept.labels, skipped=skipped, **split_meta)
    else:
        have = writer.sample_ids(split)
        got = [samples.sample_ids[r] for r in rows]
        if got != list(have):
            missing = sorted(set(have) - set(got))[:3]
            raise UsageError(f"split {split!r}: the images that decode now differ from the split's recorded "
                             f"samples ({len(got)} vs {len(have)}; e.g. not decodable now: {missing}); "
                             "the image files changed since the split was created", parameter="split")
    # a unit float16 would have lost information in is float32 (see stored_unit_logits): then the model is float32
    stored = np.result_type(*[part.dtype for part in parts]) if parts else UNIT_DTYPE
    top1 = writer.add_logits(model_id, split, np.concatenate(parts).astype(stored, copy=False))
    if plan.signals:
        _precompute.on_logits_assembled(plan.bank_path, model_id, split)
    clear_staging(plan.bank_path, split, model_id)
    return top1


class UnitProgress:
    """A tqdm bar over units (done / total) with images/s of the images computed in this run."""

    def __init__(self, total: int, done: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        from .text import terminal_text   # desc holds model ids and split names: no terminal control sequences

        self.bar = tqdm(total=total, initial=done, desc=terminal_text(desc), unit="unit", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr, leave=True)
        self.images = 0
        self.started = time.perf_counter()

    def update(self, units: int, images: int) -> None:
        self.images += images
        elapsed = time.perf_counter() - self.started
        self.bar.set_postfix_str(f"{self.images / elapsed if elapsed > 0 else 0.0:.1f} img/s", refresh=False)
        self.bar.update(units)

    def close(self) -> None:
        self.bar.close()

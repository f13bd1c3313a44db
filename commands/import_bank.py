"""`cascade-explorer import`: a bank from logits you already have (any classification task)."""

from __future__ import annotations

from .common import say

# import_bank's parameters named differently from their flags
FLAGS = {"labels_path": "--labels", "costs_csv": "--costs", "dataset['name']": "--name"}


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="build a bank from logits you already have (any classification task)")
    p.add_argument("--labels", required=True, help="labels .npy (int, shape N)")
    p.add_argument("--logits", action="append", required=True, metavar="NAME=PATH.npy",
                   help="one model's logits (N x C); repeat for each model")
    p.add_argument("--costs", required=True, help="CSV with columns model,gmacs[,params,latency_ms]")
    p.add_argument("--out", required=True, help="bank folder to create")
    p.add_argument("--split", default="val", help="split name (default: val)")
    p.add_argument("--class-names", help="text file, one class name per line (default: class_0..)")
    p.add_argument("--sample-ids", help="text file, one sample id per line (default: row numbers)")
    p.add_argument("--name", help="dataset name for the manifest")
    p.add_argument("--description", default="", help="dataset description for the manifest")
    p.add_argument("--licence", default="unknown", help="dataset licence for the manifest")
    p.add_argument("--force", action="store_true", help="overwrite logits already in the bank")
    p.add_argument("--no-signals", action="store_true",
                   help="do not fill the bank's signal store (stored confidences of the default criterion)")
    p.add_argument("--inputs", choices=("logits", "probabilities", "log-probabilities"), default="logits",
                   help="what the arrays hold (default: logits); probabilities are stored as log-probabilities")


def run(args) -> int:
    from cascade_explorer.core.importer import import_bank, parse_logits_args

    logits = parse_logits_args(args.logits)
    dataset = {"name": args.name, "description": args.description or None,
               "licence": None if args.licence == "unknown" else args.licence}   # the default keeps a bank's licence
    split = args.split or "val"
    bank = import_bank(args.labels, logits, args.costs, args.out, split=split, class_names=args.class_names,
                       sample_ids=args.sample_ids, dataset=dataset, force=args.force,
                       signals=not args.no_signals, inputs=args.inputs)
    say(f"imported split {split!r}: {bank.n_samples(split)} samples x {bank.num_classes} classes, "
        f"{len(logits)} model(s) into {bank.path}")
    for model in bank.models:
        if split in model.top1:
            say(f"  {model.id:<32} gmacs={model.gmacs:<10g} top1={model.top1[split]:.4f}")
    incomplete = [(m.id, s) for m in bank.models for s in bank.splits if s not in m.top1]
    if incomplete:
        pairs = ", ".join(f"{m}@{s}" for m, s in incomplete[:10])
        say(f"note: the bank is incomplete (no logits for {pairs}); import those to open it without "
            "allow_incomplete")
    return 0

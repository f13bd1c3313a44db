"""`cascade-explorer pareto`: the best cascades over all model pairs (or 3-model chains), as text, JSON or CSV."""

from __future__ import annotations

import sys

from .common import add_criterion_arg, csv_list, say
from .output import frontier_csv, frontier_json


def add_parser(sub) -> None:
    p = sub.add_parser("pareto", help="the best cascades over all model pairs (or 3-model chains)")
    p.add_argument("--bank", help="bank folder (default: the shipped default bank)")
    p.add_argument("--split", help="image set (default: the bank's first split)")
    add_criterion_arg(p)
    p.add_argument("--max-stages", type=int, choices=[2, 3], default=2)
    p.add_argument("--shortlist", type=csv_list, help="models to combine into 3-model cascades")
    p.add_argument("--target-accuracy", type=float, help="only the cheapest cascade reaching this accuracy")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")


def run(args) -> int:
    import pandas as pd

    from cascade_explorer.core import search
    from cascade_explorer.core.analysis import FRONTIER_COLUMNS, BankAnalysis, frontier_records, resolve_split
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.core.router_metrics import ROUTER_COLUMNS
    from cascade_explorer.core.text import exact_number
    from cascade_explorer.core.validate import check_fraction

    analysis = BankAnalysis(args.bank)
    split = resolve_split(analysis.bank, args.split)
    if args.shortlist and args.max_stages < 3:
        raise UsageError("--shortlist only applies to 3-model cascades: add --max-stages 3")
    frame = analysis.frontier(split=split, criterion=args.criterion, max_stages=args.max_stages,
                              shortlist=args.shortlist)
    if args.target_accuracy is not None:
        target = check_fraction(args.target_accuracy, "target_accuracy")
        best = search.best_cascade(frame, target_accuracy=target)
        if best is None:
            top = float(frame["accuracy"].max()) if len(frame) else float("nan")
            raise UsageError(f"no cascade reaches accuracy {target:.4f} on split {split!r}; the best is {top:.4f}")
        frame = pd.DataFrame([best]).reset_index(drop=True)
    # router metrics (APGR, CPT, AUC, oracle) of each 2-model row's pair, exact over its thresholds
    frame = analysis.frontier_with_router(frame, split=split, criterion=args.criterion)
    columns = [c for c in [*FRONTIER_COLUMNS, *ROUTER_COLUMNS] if c in frame.columns]
    if args.json:
        frontier_json(frame, columns, sys.stdout)
        return 0
    if args.csv:
        frontier_csv(frame, columns, sys.stdout)
        return 0
    records = frontier_records(frame)
    say(f"{len(records)} frontier cascade(s) on split {split!r} ({args.criterion}):")
    for record in records:
        speedup = "" if record.get("speedup") is None else f"  speed-up {record['speedup']:.2f}x"
        if record.get("apgr") is not None:
            speedup += f"  APGR {record['apgr']:.3f}"
        # exact (repr): typed back into `evaluate --thresholds` they give this row's result
        thresholds = ",".join(str(t) if isinstance(t, str) else exact_number(t) for t in record["thresholds"])
        say(f"  {' -> '.join(record['models'])}  thresholds {thresholds}  "
            f"accuracy {100 * record['accuracy']:.2f} %  {record['avg_gmacs']:.4g} GMACs{speedup}")
    return 0

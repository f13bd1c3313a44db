"""How often a fitted cascade misses its target on the whole bank, plain fit against certified fit.

The bank's split (all its images) plays the population; each seed draws another calibration half
(`protocol.calibration_mask`), thresholds are fitted there (plain: `fit_for_target`; certified:
`certify` with --delta) and measured on every image of the split. A miss: the population value is on
the wrong side of the target. The calibration half is part of the population here (a finite
population, not fresh i.i.d. data), so the plain fit's miss rate is lower than on truly new data;
the synthetic simulation of tests/test_certify.py measures that case.

    python -m cascade_explorer.commands.coverage_check [--seeds 200] [--delta 0.05] [--json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from cascade_explorer.core.analysis import BankAnalysis, CascadeSpec
from cascade_explorer.core.bank import DEFAULT_BANK_PATH
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.jsonsafe import dumps

DEFAULT_MODELS = "mobilenet_v3_small_224,efficientnet_lite0"
DEFAULT_TARGETS = {"target_accuracy": 0.78, "max_accuracy_drop": 0.03, "max_escalated": 0.35, "max_gmacs": 0.2}


def _population(stages, gmacs, thresholds, last_accuracy) -> dict:
    result = evaluate_cascade(stages, list(thresholds), gmacs)
    return {"target_accuracy": result.accuracy, "max_accuracy_drop": last_accuracy - result.accuracy,
            "max_escalated": result.escalated_fraction, "max_gmacs": result.avg_gmacs}


def _misses(kind: str, value: float, population: dict) -> bool:
    if kind == "target_accuracy":
        return population[kind] < value
    return population[kind] > value + 1e-12


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascade_explorer.commands.coverage_check",
                                     description="miss rate of plain vs certified threshold fits on a bank")
    parser.add_argument("--bank", default=str(DEFAULT_BANK_PATH))
    parser.add_argument("--split")
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--seeds", type=int, default=200, help="calibration halves drawn (default 200)")
    parser.add_argument("--delta", type=float, default=0.05)
    for kind, value in DEFAULT_TARGETS.items():
        parser.add_argument(f"--{kind.replace('_', '-')}", type=float, default=value)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    analysis = BankAnalysis(args.bank)
    spec = CascadeSpec(models=tuple(m.strip() for m in args.models.split(",") if m.strip()))
    stages = analysis.stage_signals(spec, split=args.split)
    gmacs = [analysis.bank.model(m).gmacs for m in spec.models]
    last_accuracy = float(np.mean(stages[-1].correct))
    rows = []
    for kind in DEFAULT_TARGETS:
        value = getattr(args, kind)
        plain_miss = certified = certified_miss = 0
        for seed in tqdm(range(args.seeds), desc=f"{kind} {value:g}", file=sys.stderr, leave=False):
            plain = analysis.fit_for_target(spec, split=args.split, seed=seed, **{kind: value})
            certificate = analysis.certify(spec, split=args.split, seed=seed, delta=args.delta, **{kind: value})
            plain_miss += _misses(kind, value, _population(stages, gmacs, plain, last_accuracy))
            certified += certificate.certified
            certified_miss += certificate.certified and _misses(
                kind, value, _population(stages, gmacs, certificate.thresholds, last_accuracy))
        rows.append({"target": kind, "value": value, "seeds": args.seeds, "delta": args.delta,
                     "plain_miss": plain_miss / args.seeds, "certified_miss": certified_miss / args.seeds,
                     "certified_share": certified / args.seeds})
    if args.json:
        print(dumps(rows))
    else:
        print(f"{' -> '.join(spec.models)} on {analysis.bank.name}: {len(stages[0]):,} images as the population, "
              f"{args.seeds} calibration halves, delta {args.delta:g}")
        for row in rows:
            print(f"  {row['target']} {row['value']:g}: plain fit misses {row['plain_miss']:.1%}, certified fit "
                  f"misses {row['certified_miss']:.1%} (certified in {row['certified_share']:.1%} of the halves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Live inference speed: median / p90 ms per image of a cascade against its last model alone, on a bank's
images, measured in the same run (`core.live.benchmark`).

    python -m cascade_explorer.commands.live_bench [--limit N] [--bank B --models M1,M2 --thresholds T]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import numpy as np

from .common import say

from cascade_explorer.core.analysis import BankAnalysis, CascadeSpec
from cascade_explorer.core.bank import DEFAULT_BANK_PATH
from cascade_explorer.core.fetch import resolve_image
from cascade_explorer.core.jsonsafe import dumps
from cascade_explorer.core.live import Cascade, benchmark
from cascade_explorer.core.protocol import calibration_mask

DEFAULT_BENCH_MODELS = ("mobilenet_v1_025_128", "efficientnet_lite2")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascade_explorer.commands.live_bench",
                                     description="median / p90 ms per image: a cascade vs its last model alone, "
                                                 "on the bank's images, measured in the same run")
    parser.add_argument("--bench", action="store_true", help=argparse.SUPPRESS)   # the old entry point's flag
    parser.add_argument("--bank", default=str(DEFAULT_BANK_PATH))
    parser.add_argument("--models", help="comma-separated model ids (default: MobileNet V1 0.25 -> "
                                         "EfficientNet-Lite2, else cheapest -> most accurate)")
    parser.add_argument("--thresholds", help="comma-separated (default: fitted on the calibration half for the "
                                             "last model's accuracy minus --accuracy-drop)")
    parser.add_argument("--accuracy-drop", type=float, default=0.005)
    parser.add_argument("--criterion", default="max_softmax")
    parser.add_argument("--images", help="image folder (default: CASCADE_EXPLORER_IMAGES)")
    parser.add_argument("--limit", type=int, help="only the first N images (e.g. on a busy machine)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.images:
        os.environ["CASCADE_EXPLORER_IMAGES"] = args.images
    analysis = BankAnalysis(args.bank)
    bank = analysis.bank
    split = bank.default_split
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    else:
        models = [m for m in DEFAULT_BENCH_MODELS if m in bank.model_ids]
        if len(models) != len(DEFAULT_BENCH_MODELS):
            models = [bank.model_ids[0], max(bank.models, key=lambda m: m.top1.get(split, 0)).id]
    if args.thresholds:
        thresholds = [float(t) for t in args.thresholds.split(",")]
    else:
        # the last model's accuracy on the calibration half (where thresholds are fitted), minus the drop
        part = calibration_mask(bank.sample_ids(split))
        last_right = np.asarray(bank.logits(models[-1], split)).argmax(axis=1) == bank.labels(split)
        target = float(last_right[part].mean()) - args.accuracy_drop
        thresholds = list(analysis.fit_for_target(CascadeSpec(tuple(models), args.criterion), target_accuracy=target))
    expected = analysis.evaluate(CascadeSpec(tuple(models), args.criterion, tuple(thresholds)), on="all",
                                n_bootstrap=0)
    source = bank.split_info(split).get("image_source") or {}
    rows = range(len(bank.labels(split)))[: args.limit] if args.limit else range(len(bank.labels(split)))
    hashes = source.get("sha256") or {}
    paths = [resolve_image(bank.image_paths(split)[r], url_base=source.get("url_base"),
                           sha256=hashes.get(bank.image_paths(split)[r])) for r in rows]
    labels = bank.labels(split)[list(rows)]
    cascade = Cascade.from_bank(bank, models, args.criterion, thresholds)
    result = benchmark(cascade, paths, labels=labels,
                       progress=lambda k, n: print(f"\r{k}/{n}", end="", file=sys.stderr) if k % 50 == 0 or k == n
                       else None)
    say(err=True)
    result["bank_expected"] = {"accuracy": expected["accuracy"], "exit_fractions": list(expected["exit_fractions"]),
                               "split": split, "n_samples": expected["n_samples"]}
    if args.json:
        say(dumps(result, indent=2))
    else:
        c, a = result["cascade_ms"], result["last_model_alone_ms"]
        say(f"{' -> '.join(models)} ({args.criterion}, thresholds {[float(t) for t in thresholds]}) on "
              f"{result['n_images']} images, {cascade.device}, torch threads {result['torch_threads']}:")
        say(f"  cascade:          median {c['median_ms']:.2f} ms, p90 {c['p90_ms']:.2f} ms, mean {c['mean_ms']:.2f} ms")
        say(f"  last model alone: median {a['median_ms']:.2f} ms, p90 {a['p90_ms']:.2f} ms, mean {a['mean_ms']:.2f} ms")
        say(f"  speed-up: {result['speedup_median']:.2f}x median, {result['speedup_mean']:.2f}x mean; "
              f"exit fractions {[round(f, 3) for f in result['exit_fractions']]}")
        acc = result["accuracy"]
        say(f"  accuracy live: cascade {acc['cascade']:.2%}, last model alone {acc['last_model_alone']:.2%}; "
              f"bank says cascade {expected['accuracy']:.2%} on these {expected['n_samples']} images "
              f"(exit fractions {[round(f, 3) for f in expected['exit_fractions']]})")
    return 0



if __name__ == "__main__":
    sys.exit(main())

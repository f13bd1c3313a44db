"""Rebuild the shipped default bank from ../shared and the installed packages (`core.default_bank`).

    CASCADE_EXPLORER_MODELS=../shared/models/tflite \\
        nice python -m cascade_explorer.commands.default_bank --shared ../shared --out precomputed/imagenet-val-1300
"""

from __future__ import annotations

from cascade_explorer.commands.common import say

import argparse
import sys

from cascade_explorer.core.default_bank import DEFAULT_OUT, DEFAULT_SHARED, build_default_bank, remeasure_latency
from cascade_explorer.core.errors import CascadeExplorerError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascade_explorer.commands.default_bank",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(DEFAULT_SHARED), help="folder with data/ and models/ (../shared)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="bank folder (default: precomputed/imagenet-val-1300)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="recompute finished model x split pairs")
    parser.add_argument("--splits", default="val,val-corrupted")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--latency-only", action="store_true",
                        help="only measure latency again (logits untouched), e.g. on a quieter machine")
    args = parser.parse_args(argv)
    try:
        if args.latency_only:
            remeasure_latency(args.shared, args.out, device=args.device, log=print)
            return 0
        build_default_bank(args.shared, args.out, device=args.device, batch_size=args.batch_size,
                           workers=args.workers, force=args.force, splits=args.splits.split(","),
                           latency=not args.no_latency, log=print)
    except (CascadeExplorerError, FileNotFoundError) as error:
        say(f"default_bank: error: {error}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

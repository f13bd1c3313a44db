"""`cascade-explorer bench`: speed and memory figures, each against a baseline measured in the same run.

The work lives in `engine_bench` (imported when the command runs, so `--help` stays light).
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="speed and memory figures of the engine on a synthetic bank")
    p.add_argument("--models", type=int, default=100,
                   help="models in the synthetic bank (at least 3: one benchmark is a 3-model cascade)")
    p.add_argument("--samples", type=int, default=50_000)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--large-models", type=int, default=500,
                   help="also time the pair search at this many models (0 to skip)")
    p.add_argument("--scale", metavar="M,N,C",
                   help="instead: the paper-scale benchmark on a synthetic bank of M models x N samples x C classes, "
                        "built once through `import` (cached), whole processes against baselines")
    p.add_argument("--cases", metavar="NAMES",
                   help="with --scale: only these cases, comma-separated (default: all; see the README); "
                        "the bank is then imported once if it is not cached, and 'import' times the import")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    if args.scale:
        from .scale_bench import run_scale

        return run_scale(args.scale, args.repeats if args.repeats != 5 else 3, args.json, cases=args.cases)
    from .engine_bench import run as run_engine_bench

    return run_engine_bench(args)

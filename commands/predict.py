"""`cascade-explorer predict`: run a cascade on image files, stage by stage (real models)."""

from __future__ import annotations

from .common import add_cascade_args, say


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="run a cascade on image files, stage by stage")
    p.add_argument("--config", help="cascade JSON: the dashboard's export, or `evaluate ... --save-config`")
    add_cascade_args(p, models_required=False)
    p.add_argument("--split", help="split used to fit temperatures with --temperature fit")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true")


def cascade_from_args(args):
    """The live Cascade the options describe: a config file, or models + thresholds of a bank."""
    from cascade_explorer.core.bank import DEFAULT_BANK_PATH, Bank
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.core.live import Cascade, auto_device

    device = auto_device() if args.device == "auto" else args.device
    if args.config:
        extra = [flag for flag, value in (("--models", args.models), ("--thresholds", args.thresholds)) if value]
        if extra:
            raise UsageError(f"--config already defines the cascade; drop {', '.join(extra)}")
        bank = Bank.open(args.bank) if args.bank else None
        return Cascade.from_config(args.config, device=device, bank=bank)
    if not args.models:
        raise UsageError("give the cascade: --config CASCADE.json, or --models M1,M2 --thresholds T1 "
                         "(with --bank B, default: the shipped bank)")
    bank = Bank.open(args.bank or DEFAULT_BANK_PATH)
    if args.split and args.temperature != "fit":
        raise UsageError("--split only chooses where temperatures are fitted; add --temperature fit, or drop --split")
    thresholds = args.thresholds or []
    if len(thresholds) != len(args.models) - 1:
        raise UsageError(f"--models has {len(args.models)} model(s), so --thresholds needs "
                         f"{len(args.models) - 1} value(s) (one per stage except the last), got {len(thresholds)}")
    return Cascade.from_bank(bank, args.models, args.criterion, thresholds, args.temperature, args.ensemble,
                             split=args.split, device=device)


def format_trace(trace: dict) -> str:
    """Human-readable lines for one trace entry (the output without --json)."""
    if "error" in trace:
        return f"{trace['image']}: ERROR {trace['error']}"
    lines = [f"{trace['image']}: {trace['class_name']} (class {trace['prediction']}) "
             f"from stage {trace['exit_stage'] + 1}/{trace['n_stages']}, {trace['total_ms']:.1f} ms "
             f"(last model alone: {trace['last_model_alone_ms']:.1f} ms)"
             if trace["last_model_alone_ms"] is not None else
             f"{trace['image']}: {trace['class_name']} (class {trace['prediction']}), {trace['total_ms']:.1f} ms"]
    for i, s in enumerate(trace["stages"]):
        thr = "final" if s["threshold"] is None else f"threshold {s['threshold']}"
        top = ", ".join(f"{t['class_name']} {t['probability']:.3f}" for t in s["top5"][:3])
        lines.append(f"  stage {i + 1} {s['model_id']}: confidence {s['confidence']:.4f} ({thr}) -> "
                     f"{s['decision']}, {s['ms']:.1f} ms; top: {top}")
    return "\n".join(lines)


def run(args) -> int:
    from cascade_explorer.core.jsonsafe import dumps
    from cascade_explorer.core.live import predict_files

    cascade = cascade_from_args(args)
    cascade.load()   # a missing model fails before any image, with its install command
    results, errors = predict_files(cascade, args.images)
    if args.json:
        say(dumps(results, indent=2))
    else:
        for entry in results:
            say(format_trace(entry))
    if errors:
        say(f"cascade-explorer predict: {errors} of {len(results)} image(s) could not be read", err=True)
    return 1 if errors else 0

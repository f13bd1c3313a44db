"""`cascade-explorer evaluate`: one cascade's accuracy, cost and exits on a bank (thresholds given or fitted)."""

from __future__ import annotations

from dataclasses import replace

from .common import add_cascade_args, int_at_least, say


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate one cascade on a bank")
    add_cascade_args(p, models_required=True)
    p.add_argument("--split", help="image set (default: the bank's first split)")
    p.add_argument("--on", choices=["all", "eval"], default="eval",
                   help="all samples, or the held-out part (thresholds/temperatures fitted on the rest)")
    p.add_argument("--calibration-fraction", type=float, default=0.5,
                   help="share of samples used to fit thresholds/temperatures with --on eval (default 0.5)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the calibration/eval split and bootstrap")
    p.add_argument("--target-accuracy", type=float, help="fit thresholds for this accuracy instead of --thresholds")
    p.add_argument("--max-gmacs", type=float, help="fit thresholds for this average cost budget")
    p.add_argument("--max-escalated", type=float, help="fit thresholds so at most this fraction reaches the last stage")
    p.add_argument("--shift-to", help="also report the same thresholds applied to this split")
    p.add_argument("--save-config", metavar="FILE",
                   help="also write the cascade (fitted thresholds and temperatures included) as a config "
                        "JSON that `predict --config` and the Live page load")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from cascade_explorer.core.analysis import BankAnalysis, CascadeSpec, check_spec, resolve_split
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.core.jsonsafe import dumps

    analysis = BankAnalysis(args.bank)
    bank = analysis.bank
    split = resolve_split(bank, args.split)
    thresholds = tuple(args.thresholds or ())
    spec = CascadeSpec(models=tuple(args.models), criterion=args.criterion, thresholds=thresholds,
                       temperature=args.temperature, ensemble=args.ensemble)
    fraction, seed = args.calibration_fraction, args.seed
    targets = {"target_accuracy": args.target_accuracy, "max_gmacs": args.max_gmacs,
               "max_escalated": args.max_escalated}
    fitted = None
    check_spec(bank, spec, split, need_thresholds=False)
    if any(v is not None for v in targets.values()):
        if thresholds:
            raise UsageError("give either --thresholds or a target (--target-accuracy / --max-gmacs / "
                             "--max-escalated), not both")
        fit = analysis.fit_for_target_detailed(spec, split=split, calibration_fraction=fraction, seed=seed, **targets)
        spec = replace(spec, thresholds=fit.thresholds)
        fitted = fit.summary()
    elif len(spec.models) > 1 and not thresholds:
        raise UsageError(f"a cascade of {len(spec.models)} models needs --thresholds with {len(spec.models) - 1} "
                         "value(s), or a target: --target-accuracy A, --max-gmacs C or --max-escalated E")
    report = analysis.evaluate(spec, split=split, on=args.on, calibration_fraction=fraction, seed=seed)
    output = dict(report)
    output["fitted"] = fitted
    if args.shift_to:
        shifted = analysis.shift(spec, split, args.shift_to, on=args.on, calibration_fraction=fraction, seed=seed)
        output["shift"] = {"target_split": shifted["target_split"],
                           "target": {k: shifted["target"][k] for k in
                                      ("accuracy", "accuracy_ci", "avg_gmacs", "avg_gmacs_ci", "avg_ms",
                                       "exit_fractions", "n_samples", "speedup")},
                           "delta": shifted["delta"]}
    if args.save_config:
        from cascade_explorer.core.config import CascadeConfig

        saved = CascadeConfig.from_report(bank, report).save(args.save_config)
        output["config_path"] = str(saved)
    say(dumps(output) if args.json else format_evaluation(output))
    return 0


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _ci(ci, scale=1.0, digits=2) -> str:
    if ci is None:
        return ""
    return f"  [95% CI {ci[0] * scale:.{digits}f} .. {ci[1] * scale:.{digits}f}]"


def format_evaluation(report: dict) -> str:
    """The text report of `evaluate` (without --json)."""
    from cascade_explorer.core.text import exact_number

    # exact (repr; +-inf as 'inf' / '-inf'): typed back into --thresholds they give the same result
    thresholds = ", ".join(exact_number(t) for t in report["thresholds"]) or "-"
    part = ("every sample" if report["on"] == "all" else
            f"held-out part (calibration fraction {report['calibration_fraction']:g}, seed {report['seed']})")
    temps = ", ".join(f"{m} {t:.3g}" for m, t in report["temperatures"].items())
    lines = [
        f"cascade       {' -> '.join(report['models'])}",
        f"criterion     {report['criterion']}, thresholds {thresholds}, temperature {report['temperature']}"
        + (f" ({temps})" if report["temperature"] == "fit" else "") + (", ensemble" if report["ensemble"] else ""),
        f"samples       {report['n_samples']} of {report['n_split_samples']} in split {report['split']!r}, {part}",
        f"accuracy      {_pct(report['accuracy'])}{_ci(report['accuracy_ci'], 100)}",
        f"avg GMACs     {report['avg_gmacs']:.4g}{_ci(report['avg_gmacs_ci'], 1, 4)}   "
        f"worst {report['worst_gmacs']:.4g}",
    ]
    if report["avg_ms"] is not None:
        lines.append(f"avg ms        {report['avg_ms']:.4g}   worst {report['worst_ms']:.4g}")
    speedup = report["speedup"]
    lines.append("speed-up      " + ("n/a (more accurate than every single model)" if speedup is None else
                                     f"{speedup:.2f}x vs the single-model hull at equal accuracy"))
    exits = ", ".join(f"{m} {100 * f:.1f} %" for m, f in zip(report["models"], report["exit_fractions"]))
    lines.append(f"exits         {exits}")
    if report.get("fitted"):
        fitted = report["fitted"]
        (kind, value), = fitted["target"].items()
        lines.append(f"fitted        thresholds for {kind.replace('_', ' ')} {value:g} on the calibration part "
                     f"(there: accuracy {_pct(fitted['calibration_accuracy'])}, "
                     f"{fitted['calibration_avg_gmacs']:.4g} GMACs)")
    if report.get("shift"):
        target = report["shift"]["target"]
        lines.append(f"shift to {report['shift']['target_split']!r}: accuracy {_pct(target['accuracy'])}, "
                     f"avg GMACs {target['avg_gmacs']:.4g}, exits "
                     + ", ".join(f"{100 * f:.1f} %" for f in target["exit_fractions"])
                     + ("" if target["speedup"] is None else f", speed-up {target['speedup']:.2f}x"))
    if report.get("config_path"):
        lines.append(f"config        saved to {report['config_path']} (cascade-explorer predict --config ...)")
    return "\n".join(lines)

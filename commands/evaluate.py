"""`cascade-explorer evaluate`: one cascade's accuracy, cost and exits on a bank (thresholds given or fitted)."""

from __future__ import annotations

from dataclasses import replace

from .common import add_cascade_args, int_at_least, say

# library parameters named differently from their flag
FLAGS = {"delta": "--certify"}
# exit status when --certify could not certify the target (the report is still printed)
NOT_CERTIFIED_STATUS = 1


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
    p.add_argument("--max-accuracy-drop", type=float,
                   help="fit thresholds so the accuracy is at most this much (a fraction) below the last model's")
    p.add_argument("--certify", type=float, metavar="DELTA",
                   help="certify the fitted thresholds (Learn then Test): the target holds on new data from the "
                        "same distribution with probability >= 1 - DELTA, e.g. 0.05; exit status 1 when the "
                        "calibration part is too small to certify it")
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
               "max_escalated": args.max_escalated, "max_accuracy_drop": args.max_accuracy_drop}
    fitted = certificate = None
    check_spec(bank, spec, split, need_thresholds=False)
    if any(v is not None for v in targets.values()):
        if thresholds:
            raise UsageError("give either --thresholds or a target (--target-accuracy / --max-gmacs / "
                             "--max-escalated / --max-accuracy-drop), not both")
        if args.certify is not None:
            certificate = analysis.certify(spec, delta=args.certify, split=split, calibration_fraction=fraction,
                                           seed=seed, **targets)
            spec = replace(spec, thresholds=certificate.thresholds)
        else:
            fit = analysis.fit_for_target_detailed(spec, split=split, calibration_fraction=fraction, seed=seed,
                                                   **targets)
            spec = replace(spec, thresholds=fit.thresholds)
            fitted = fit.summary()
    elif args.certify is not None:
        raise UsageError("--certify certifies thresholds fitted for a target: add --target-accuracy, "
                         "--max-accuracy-drop, --max-escalated or --max-gmacs (and no --thresholds)")
    elif len(spec.models) > 1 and not thresholds:
        raise UsageError(f"a cascade of {len(spec.models)} models needs --thresholds with {len(spec.models) - 1} "
                         "value(s), or a target: --target-accuracy A, --max-gmacs C, --max-escalated E or "
                         "--max-accuracy-drop D")
    report = analysis.evaluate(spec, split=split, on=args.on, calibration_fraction=fraction, seed=seed)
    output = dict(report)
    output["fitted"] = fitted
    output["certificate"] = None if certificate is None else certificate.to_dict()
    if args.shift_to:
        shifted = analysis.shift(spec, split, args.shift_to, on=args.on, calibration_fraction=fraction, seed=seed)
        output["shift"] = {"target_split": shifted["target_split"],
                           "target": {k: shifted["target"][k] for k in
                                      ("accuracy", "accuracy_ci", "avg_gmacs", "avg_gmacs_ci", "avg_ms",
                                       "exit_fractions", "n_samples", "speedup")},
                           "delta": shifted["delta"]}
    if args.save_config:
        from cascade_explorer.core.config import CascadeConfig

        saved = CascadeConfig.from_report(bank, report, certificate=output["certificate"]).save(args.save_config)
        output["config_path"] = str(saved)
    for line in warning_lines(output):
        say(f"cascade-explorer evaluate: warning: {line}", err=True)
    say(dumps(output) if args.json else format_evaluation(output))
    if certificate is not None and not certificate.certified:
        return NOT_CERTIFIED_STATUS
    return 0


def warning_lines(report: dict) -> list[str]:
    """What the user should know before trusting the numbers: flagged temperature fits, a target
    that could not be certified (one line each, for stderr)."""
    lines = list(report.get("temperature_warnings") or [])
    certificate = report.get("certificate")
    if certificate and not certificate["certified"]:
        lines.append(not_certified_line(certificate))
    return lines


def not_certified_line(certificate: dict) -> str:
    needed = certificate.get("samples_needed")
    if needed is None:
        return ("not certifiable: even the most conservative thresholds fail the target on the calibration part; "
                "relax the target (more calibration samples would not help)")
    return (f"not certifiable: about {needed:,} calibration samples needed (have {certificate['n_calibration']:,}); "
            "the thresholds shown carry no guarantee")


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _ci(ci, scale=1.0, digits=2) -> str:
    if ci is None:
        return ""
    return f"  [95% CI {ci[0] * scale:.{digits}f} .. {ci[1] * scale:.{digits}f}]"


def _certificate_lines(certificate: dict) -> list[str]:
    kind = certificate["target"].replace("_", " ")
    head = "certified" if certificate["certified"] else "NOT certified"
    lines = [f"certificate   {head}: {kind} {certificate['target_value']:g} with probability >= "
             f"{1 - certificate['delta']:.4g} (delta {certificate['delta']:g}); p-value {certificate['p_value']:.3g}, "
             f"{certificate['n_tested']} of {certificate['n_candidates']} candidates tested on "
             f"{certificate['n_testing']} calibration samples",
             f"              method: {certificate['method']}",
             f"              on the calibration part: accuracy {_pct(certificate['accuracy'])}, "
             f"{certificate['avg_gmacs']:.4g} GMACs, escalated {_pct(certificate['escalated_fraction'])}"]
    if not certificate["certified"]:
        lines.append(f"              {not_certified_line(certificate)}")
    return lines


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
    if len(report["models"]) > 1:
        lines.append(f"escalated     {_pct(report['escalated_fraction'])}"
                     f"{_ci(report.get('escalated_fraction_ci'), 100)}")
    methods = report.get("ci_methods")
    if methods:
        lines.append(f"intervals     {100 * report['ci_level']:g}%: accuracy and escalated share "
                     f"{methods['accuracy']}; avg GMACs {methods['avg_gmacs']}")
    router = report.get("router_metrics")
    if router:
        from cascade_explorer.core.router_metrics import format_router_metrics

        lines.append(f"router        {format_router_metrics(router)}, AUC {router['auc_accuracy_escalated']:.4f}"
                     + ("" if router.get("oracle_avg_gmacs") is None else
                        f", oracle {router['oracle_avg_gmacs']:.4g} GMACs")
                     + " (exact over every threshold, on these samples)")
    for model_id, fit in (report.get("temperature_fits") or {}).items():
        lines.append(f"temperature   {model_id}: T {fit['temperature']:.4g}, NLL {fit['nll_before']:.4f} -> "
                     f"{fit['nll_after']:.4f}, ECE {100 * fit['ece_before']:.2f} -> {100 * fit['ece_after']:.2f} % "
                     f"on {fit['n']} calibration samples" + (f"  [flagged: {', '.join(fit['flags'])}]"
                                                              if fit["flags"] else ""))
    if report.get("certificate"):
        lines.extend(_certificate_lines(report["certificate"]))
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

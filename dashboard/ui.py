"""Shared page pieces: the bank message page, view sanitising against the bank, formatting, export."""

from __future__ import annotations

import json
import math

import streamlit as st

from cascade_explorer.core import text
from cascade_explorer.dashboard import data, state

# Bank-, URL- and file-supplied text is data, never markup (core/text.py): `md` for anything Streamlit
# renders as Markdown (markdown, caption, error/warning/info/success, toast, metric and widget labels,
# help tooltips, image captions, progress text), `plain` for plain-text places (dataframe cells,
# selectbox / multiselect options).
md = text.markdown_text
plain = text.one_line

HOW_TO_GET_A_BANK = """
**How to fix it**

- Build the shipped default bank (real models on 1,300 ImageNet validation images):
  see `precomputed/README.md`, e.g. `cascade-explorer precompute --image-list IMAGES/dataset.txt --models SPEC ... --out precomputed/imagenet-val-1300`.
- Or make a bank from logits you already have (any classification task):
  `cascade-explorer import --labels labels.npy --logits small=small.npy --logits big=big.npy --costs costs.csv --out my-bank`.
- Then start the dashboard on it: `cascade-explorer dashboard --bank my-bank`, or pick another bank in the sidebar.
"""


def problem_page(problem: data.BankProblem, choices: dict) -> None:
    """Shown instead of every page when the chosen bank cannot be used."""
    st.title("Cascade Explorer")
    st.error(f"**{md(problem.title)}** — {md(problem.path)}\n\n{md(problem.detail)}", icon=":material/folder_off:")
    long_text_rest("Whole message", problem.detail)
    st.markdown(HOW_TO_GET_A_BANK)
    others = [label for label, path in choices.items() if path != problem.path]
    if others:
        st.info("Other banks found here: " + ", ".join(md(o) for o in others) + ". Pick one in the sidebar.")


def long_text_rest(label: str, value) -> None:
    """The part of a long bank text that `md`/`plain` cut off, as plain text in an expander (up to
    text.EXPANDED_MAX_CHARS more; a 100 MB caveat must not reach the browser)."""
    _, rest = text.split_text(value, text.DISPLAY_MAX_CHARS)
    if not rest:
        return
    with st.expander(f"{label} ({len(rest):,} more characters)"):
        st.text(text.plain_text(rest, text.EXPANDED_MAX_CHARS))


# ------------------------------------------------------------------------------------ formatting

def pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):.2%}"


def num(x, unit: str = "", digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{float(x):.{digits}g}{(' ' + unit) if unit else ''}"


def speedup(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{float(x):.2f}×"


def speedup_caption(x, detail: str) -> str:
    """The caption under a speed-up metric: why it is '–' (core gives None exactly when the cascade
    is more accurate than every single model, so no single model matches it), then `detail`."""
    if speedup(x) == "–":
        return "more accurate than every single model, so none matches it · " + detail
    return detail


def ci(interval, fmt=pct, method: str | None = None) -> str:
    if not interval or any(v is None for v in interval):
        return ""
    lo, hi = interval
    return f"95% interval {fmt(lo)} – {fmt(hi)}" + (f" ({method})" if method else "")


def short_method(ev: dict, metric: str) -> str | None:
    """A short name of the interval method core used for `metric` (None without intervals)."""
    method = (ev.get("ci_methods") or {}).get(metric)
    if not method:
        return None
    if "Clopper-Pearson" in method:
        return "exact Clopper-Pearson"
    if "Wilson" in method:
        return "Wilson"
    return "bootstrap" if "bootstrap" in method else method


def model_label(bank, model_id: str) -> str:
    m = bank.model(model_id)
    ms = m.ms()
    cost = f"{m.gmacs:.3g} GMACs" + (f", {ms:.3g} ms" if ms is not None else "")
    return f"{plain(m.display_name, 200)} · {cost}"


def chain_text(bank, models) -> str:
    """The chain's display names as plain text (wrap in `md` where Markdown renders it)."""
    return " → ".join(plain(bank.model(m).display_name, 200) for m in models)


# ------------------------------------------------------------------------------------ view vs bank

def sanitize_view(bank, view: state.ViewState) -> state.ViewState:
    """Make the view valid for this bank (unknown names dropped, chain ordered by cost) and store it;
    each thing dropped is said in a toast (a shared link that silently shows something else misleads)."""
    changes, problems = {}, []
    if view.split and view.split not in bank.splits:
        changes["split"] = ""
        problems.append(f"image set {view.split!r} is not in this bank ({', '.join(bank.splits)}); "
                        f"showing {bank.default_split}")
    split = view.split if view.split in bank.splits else bank.default_split
    order = {m: i for i, m in enumerate(bank.models_for(split))}
    kept = sorted(dict.fromkeys(m for m in view.models if m in order), key=order.__getitem__)
    dropped = [m for m in dict.fromkeys(view.models) if m not in order]
    if dropped:
        absent = [m for m in dropped if m not in bank.model_ids]
        no_outputs = [plain(bank.model(m).display_name, 200) for m in dropped if m in bank.model_ids]
        problems.append("left out of the cascade: "
                        + "; ".join(([f"{', '.join(map(repr, absent))} not in this bank"] if absent else [])
                                    + ([f"{', '.join(no_outputs)} has no outputs on {split}"] if no_outputs else [])))
    if len(kept) > state.MAX_STAGES:
        problems.append(f"a cascade has at most {state.MAX_STAGES} models; kept the {state.MAX_STAGES} cheapest")
    models = tuple(kept[: state.MAX_STAGES])
    if models != view.models:
        changes["models"] = models
        if len(models) != len(view.models):
            changes["thresholds"] = ()
    elif models and view.thresholds and len(view.thresholds) != len(models) - 1:
        changes["thresholds"] = ()
        problems.append(f"{len(view.thresholds)} threshold(s) given for {len(models)} models (needs "
                        f"{len(models) - 1}); using each stage's median confidence")
    shortlist = tuple(m for m in view.shortlist if m in order)
    if shortlist != view.shortlist:
        changes["shortlist"] = shortlist
        problems.append("shortlist: " + ", ".join(repr(m) for m in view.shortlist if m not in order)
                        + f" not in this bank's models on {split}; left out")
    if view.gallery_class is not None and not 0 <= view.gallery_class < bank.num_classes:
        changes["gallery_class"] = None
        problems.append(f"class {view.gallery_class} does not exist (this bank has classes 0 to "
                        f"{bank.num_classes - 1}); showing all classes")
    for name, label in (("shift_fit", "thresholds chosen on"), ("shift_apply", "applied to")):
        if getattr(view, name) and getattr(view, name) not in bank.splits:
            changes[name] = ""
            problems.append(f"image set {getattr(view, name)!r} ({label}) is not in this bank; picked another")
    if changes:
        view = state.update(**changes)
    for problem in problems:   # after the update, which restarts the list
        state.add_problem(problem)
    return view


def split_of(bank, view: state.ViewState) -> str:
    return view.split or bank.default_split


def incomplete_note(bank) -> None:
    """Say which models lack logits for which image set (an unfinished precompute)."""
    missing = [(md(m.display_name, 200), md(s)) for m in bank.models for s in bank.splits if s not in m.top1]
    if missing:
        listing = "; ".join(f"{name} on {split}" for name, split in missing[:6]) + ("; ..." if len(missing) > 6 else "")
        st.caption(f":material/warning: Incomplete bank — no outputs for {listing}. Those models are left out "
                   "on those image sets.")


def split_picker(bank, view: state.ViewState) -> None:
    if len(bank.splits) < 2:
        st.caption(f"Image set: **{md(bank.default_split)}**")
        return
    state.bound(
        st.selectbox, "Image set", "w_split", split_of(bank, view),
        lambda v, value: v.replace(split="" if value == bank.default_split else value),
        options=bank.splits,
        help="Which image set (split) of the bank every page uses, e.g. clean or corrupted images.",
    )


def bank_line(bank) -> None:
    n = {s: len(bank.labels(s)) for s in bank.splits}
    sets = ", ".join(f"{md(s)} ({k:,} images)" for s, k in n.items())
    st.markdown(f"**Bank:** {md(bank.name, 200)} — {len(bank.models)} models, {bank.num_classes:,} classes; "
                f"image sets: {sets}.")
    if bank.description:
        st.caption(md(bank.description))
        long_text_rest("Whole description", bank.description)
    if bank.caveats:
        caveats = " ".join(bank.caveats)
        st.caption("Caveats: " + md(caveats))
        long_text_rest("All caveats", caveats)


# ------------------------------------------------------------------------------------ the cascade in view

def export_button(bank, view: state.ViewState, result: dict, models, thresholds, *, key: str = "export",
                  certificate=None) -> None:
    """Download the cascade as a core.config.CascadeConfig JSON (what `core`, the CLI and Live load),
    with the certificate of its thresholds when they were certified."""
    try:
        config = data.cascade_config(bank, split_of(bank, view), models, view.criterion, thresholds,
                                     view.ensemble, result, certificate=certificate)
        payload = json.dumps(config.to_dict(), indent=2)
    except Exception as exc:  # the export must never break the page
        st.warning(f"Could not build the cascade config: {md(exc)}")
        return
    # a callable: the file is made on click, not stored as a media file on every rerun (a slider drag
    # would otherwise leave the browser pointing at deleted files: 404s)
    st.download_button(
        "Export cascade (JSON)", lambda: payload, file_name="cascade.json", mime="application/json", key=key,
        icon=":material/download:", on_click="ignore",
        help="A config with the models, their weight sources, criterion, temperatures, thresholds and "
             "expected metrics; `cascade-explorer predict --config cascade.json` and the Live page load it.",
    )


CRITERION_NAMES = {
    "max_softmax": "max softmax (top probability)",
    "softmax_margin": "softmax margin (top-1 minus top-2 probability)",
    "logit_margin": "logit margin (top-1 minus top-2 logit)",
    "entropy": "negative entropy (peaked = sure)",
}
TARGET_NAMES = {"accuracy": "reach an accuracy", "gmacs": "stay under a cost budget (GMACs)",
                "escalated": "escalate at most a share of images",
                "drop": "lose at most this much accuracy against the last model"}
DELTA_NAMES = {None: "none (plain fit)", 0.2: "80% (δ = 0.2)", 0.1: "90% (δ = 0.1)", 0.05: "95% (δ = 0.05)",
               0.01: "99% (δ = 0.01)"}


def default_target(bank, split: str, kind: str, view: state.ViewState, models) -> float:
    """A starting target the chain can meet on the calibration part: accuracy within
    data.HEADLINE_TOLERANCE of the best single model (capped at the chain's best, rounded down), a
    budget halfway through the chain's cost range (rounded up), or 30% escalated."""
    reach = data.target_range(data.key(bank), split, tuple(models), view.criterion, view.temperature,
                              view.ensemble)
    if kind == "accuracy":
        best_single = float(data.single_models(data.key(bank), split)["accuracy"].max())
        return math.floor(min(best_single - data.HEADLINE_TOLERANCE, reach["accuracy"][1]) * 1000) / 1000
    if kind == "gmacs":
        low, high = reach["avg_gmacs"]
        return min(math.ceil((low + high) / 2 * 1e4) / 1e4, high)
    if kind == "drop":
        return 0.01
    return 0.3


def evaluate_current(bank, view: state.ViewState, cascade: dict) -> tuple[dict, dict]:
    """(cascade, metrics) of the cascade resolved for this run (dashboard/resolve.Resolved.as_dict())."""
    ev = data.evaluate(data.key(bank), cascade["split"], cascade["models"], view.criterion, cascade["thresholds"],
                       view.temperature, view.ensemble, cascade["on"])
    return cascade, ev


def metric_cards(bank, ev: dict) -> None:
    """Accuracy (95% interval), cost, latency, speed-up and exit fractions of one evaluation."""
    cols = st.columns(4)
    cols[0].metric("Accuracy", pct(ev["accuracy"]),
                   help="Top-1 accuracy of the cascade's final answers on the samples shown below "
                        "(interval: 95% exact Clopper-Pearson binomial interval over images, which stays "
                        "honest at 0% and 100%).")
    cols[0].caption(ci(ev.get("accuracy_ci"), method=short_method(ev, "accuracy")))
    cols[1].metric("Average GMACs", num(ev["avg_gmacs"]),
                   help="Multiply-accumulates per image, averaged: an image that exits at stage i paid for "
                        "stages 1..i (interval: 95% percentile bootstrap over images, 1,000 resamples, "
                        "widened to contain the average).")
    cols[1].caption(ci(ev.get("avg_gmacs_ci"), fmt=num, method=short_method(ev, "avg_gmacs"))
                    + f" · worst case {num(ev['worst_gmacs'])}")
    if ev.get("avg_ms") is not None:
        cols[2].metric("Average latency", num(ev["avg_ms"], "ms"),
                       help="Measured single-image latency of each model, summed over the stages an image ran.")
        cols[2].caption(f"worst case {num(ev['worst_ms'], 'ms')}")
    else:
        cols[2].metric("Average latency", "–", help="This bank has no latency measurements for these models.")
    cols[3].metric("Speed-up", speedup(ev.get("speedup")),
                   help="How many times less compute than the best single models (switching between them at "
                        "random) need for the same accuracy. '–' when no single model mix is as accurate.")
    on = "every image" if ev["on"] == "all" else "the held-out half (thresholds chosen on the other half)"
    cols[3].caption(speedup_caption(ev.get("speedup"), f"{ev['n_samples']:,} images of {ev['split']}, {on}"))
    stage_cols = st.columns(max(len(ev["models"]), 1))
    for i, (model_id, fraction) in enumerate(zip(ev["models"], ev["exit_fractions"])):
        last = i == len(ev["models"]) - 1
        stage_cols[i].metric(f"Answered by stage {i + 1}", pct(fraction),
                             help=f"Share of images whose answer comes from {md(bank.model(model_id).display_name)}"
                                  + (" (the last stage answers everything that reaches it)." if last else
                                     " because it was confident enough."))
        caption = md(bank.model(model_id).display_name)
        if last and len(ev["models"]) > 1 and ev.get("escalated_fraction_ci"):
            caption += " · escalated " + ci(ev["escalated_fraction_ci"], method=short_method(ev, "escalated_fraction"))
        stage_cols[i].caption(caption)


def temperature_notes(ev: dict) -> None:
    """A warning per flagged temperature fit (at a bound of the practical range, or no better than
    uniform): the user decides whether to use it; nothing was clipped."""
    for line in ev.get("temperature_warnings") or []:
        st.warning(f"Temperature fit flagged — {line}. The fitted value is used as found (never clipped); "
                   "switch Temperature to 'none' if it should not be.", icon=":material/thermostat:")


def certificate_box(certificate) -> None:
    """The certificate of certified thresholds (core.certify.Certificate), beside the metrics."""
    if certificate is None:
        return
    level = f"{100 * (1 - certificate.delta):.4g}%"
    target = CERTIFIED_TARGETS[certificate.target].format(v=certificate.target_value)
    if certificate.certified:
        st.success(f"**Certified at {level}** (Learn then Test): with probability ≥ {level} over the draw of the "
                   f"calibration images, {target} on new images from the same distribution "
                   f"(p-value {certificate.p_value:.2g} ≤ δ = {certificate.delta:g}; {certificate.n_tested} of "
                   f"{certificate.n_candidates} candidate thresholds tested on {certificate.n_testing:,} images).",
                   icon=":material/verified:")
    else:
        needed = certificate.samples_needed
        head = ("**Not certifiable** with this calibration half"
                + (f": about {needed:,} calibration samples would be needed (have {certificate.n_calibration:,})."
                   if needed else ": more images would not help; relax the target."))
        st.warning(f"{head} {certificate.message}", icon=":material/gpp_maybe:")
    st.caption(f"Method: {certificate.method}. On the calibration half at these thresholds: accuracy "
               f"{pct(certificate.accuracy)}, {num(certificate.avg_gmacs)} GMACs, escalated "
               f"{pct(certificate.escalated_fraction)}.")


CERTIFIED_TARGETS = {
    "target_accuracy": "the accuracy is at least {v:.2%}",
    "max_accuracy_drop": "the accuracy is at most {v:.2%} below the last model's",
    "max_escalated": "at most {v:.2%} of images are escalated to the last model",
    "max_gmacs": "the average cost is at most {v:.4g} GMACs per image",
}


def router_cards(ev: dict) -> None:
    """Router-standard metrics (RouteLLM) of a 2-model cascade, exact over every threshold."""
    router = ev.get("router_metrics")
    if not router:
        return
    cols = st.columns(4)
    if router.get("apgr") is None:
        st.caption(f"Router metrics: {router.get('reason')}")
        return
    cols[0].metric("APGR", f"{router['apgr']:.3f}",
                   help="Average performance gap recovered (RouteLLM, Ong et al. 2024): the mean over every "
                        "escalated share s in [0, 1] of (accuracy(s) − first model) / (second − first); "
                        "1 = as good as the second model at any share. Exact over every threshold.")
    cols[1].metric("CPT 50%", pct(router["cpt_50"]),
                   help="Call-performance threshold: the smallest share of images sent to the second model "
                        "that recovers 50% (20%, 80% below) of the accuracy gap between the two models.")
    cols[1].caption(f"CPT 20% {pct(router['cpt_20'])} · CPT 80% {pct(router['cpt_80'])}")
    cols[2].metric("AUC", f"{router['auc_accuracy_escalated']:.4f}",
                   help="Area under accuracy against the share escalated, from 0 (first model only) to 1 "
                        "(second model only).")
    oracle_cost = "" if router.get("oracle_avg_gmacs") is None else f" at {num(router['oracle_avg_gmacs'])} GMACs"
    cols[3].metric("Oracle accuracy", pct(router["oracle_accuracy"]),
                   help="Per image the better of the two models (the first model's answer when right, else the "
                        "second's): the bound no confidence threshold can beat. Its cost escalates every "
                        "wrong first answer.")
    cols[3].caption(f"escalating {pct(router['oracle_escalated'])}{oracle_cost}")

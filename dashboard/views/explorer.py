"""Explorer: build a cascade, move its thresholds (or fit them for a target) and see accuracy against cost."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cascade_explorer.core import families, plots
from cascade_explorer.dashboard import calibration_view, data, resolve, scale_ui, state, ui

bank = data.current_bank()
view = state.current()
split = ui.split_of(bank, view)
bank_key = data.key(bank)
available = bank.models_for(split)

st.title("Explorer")
st.caption("A cascade runs the cheapest model first; when it is confident enough (confidence ≥ the stage's "
           "threshold) its answer is final, otherwise the image goes to the next, bigger model. "
           "Higher thresholds: more images escalate, more accurate, more compute.")

resolved = resolve.resolve(bank, view)   # the one cascade of this run; widgets change the view in callbacks
models, thresholds = resolved.models, resolved.hand_thresholds

order = {m: i for i, m in enumerate(bank.model_ids)}


def set_models(v: state.ViewState, chosen) -> state.ViewState:
    chosen = tuple(sorted(chosen, key=order.__getitem__))
    keep = v.thresholds if len(chosen) == len(models) and v.thresholds else ()
    return v.replace(models=chosen, thresholds=keep if chosen == models else ())


singles = data.single_models(bank_key, split)
# the filter narrows what the picker offers; the models already in the cascade stay offered
offered = set(scale_ui.model_filter(bank, singles, "explorer")) | set(models)
state.bound(
    st.multiselect, "Models in the cascade (they run cheapest first)", "w_models", list(models), set_models,
    options=[m for m in available if m in offered], format_func=scale_ui.picker_label(bank, singles),
    max_selections=state.MAX_STAGES, select_all=False,   # Streamlit offers "Select all" up to 1,000 options by default
    help="Pick 1-4 models. They always run cheapest first (cost in GMACs per image beside each name); "
         "a single model is shown for comparison.",
)
if not state.current().models:
    st.caption("No models picked, so this is the headline cascade (the Overview's); pick models to change it.")
controls, main = st.columns([1.2, 2.8], gap="medium")

with controls:
    state.bound(
        st.selectbox, "Confidence criterion", "w_criterion", view.criterion,
        lambda v, value: v.replace(criterion=value, models=models, thresholds=()),
        options=list(ui.CRITERION_NAMES), format_func=ui.CRITERION_NAMES.get,
        help="How a stage measures how sure it is; higher always means more confident.",
    )
    state.bound(
        st.segmented_control, "Temperature", "w_temperature", view.temperature,
        lambda v, value: v.replace(temperature=value or "none"),
        options=list(state.TEMPERATURES), format_func={"none": "none", "fit": "fitted"}.get, required=True,
        help="'fitted' rescales each model's logits by a temperature fitted (lowest log-loss) on the "
             "calibration half, which makes softmax confidences comparable between models.",
    )
    state.bound(
        st.toggle, "Ensemble earlier stages", "w_ensemble", view.ensemble,
        lambda v, value: v.replace(ensemble=bool(value)),
        help="At stage i, average the probabilities of stages 1..i instead of using stage i alone.",
    )
    state.bound(
        st.segmented_control, "Thresholds", "w_mode", view.mode,
        lambda v, value: v.replace(mode=value or "manual", models=models, thresholds=thresholds),
        options=list(state.MODES), format_func={"manual": "by hand", "target": "fit for a target"}.get,
        required=True, disabled=len(models) < 2,
        help="Move one threshold per stage yourself, or name a target and let the thresholds be fitted on "
             "the calibration half (metrics then come from the other, held-out half).",
    )

    if len(models) >= 2 and view.mode == "manual":
        for i, rng in enumerate(resolved.sliders):
            # top: above every confidence, this stage never answers; the value is clamped into range
            lo, top, step, value = rng.low, rng.top, rng.step, thresholds[i]

            def set_threshold(v: state.ViewState, x, i=i) -> state.ViewState:
                current = list(v.thresholds) if len(v.thresholds) == len(models) - 1 else list(thresholds)
                current[i] = float(x)
                return v.replace(models=models, thresholds=tuple(current))

            state.bound(
                st.slider, f"Stage {i + 1} exits when confidence ≥", f"w_thr_{i}", value, set_threshold,
                min_value=lo, max_value=top, step=step, format="%.4f",
                help=f"{ui.md(bank.model(models[i]).display_name)} answers an image when its confidence is at least "
                     "this; otherwise the image goes on to the next stage. Far right: it never answers.",
            )
        state.bound(
            st.segmented_control, "Metrics on", "w_on", view.on, lambda v, value: v.replace(on=value or "all"),
            options=list(state.EVAL_ON), required=True,
            format_func={"all": "every image", "eval": "held-out half"}.get,
            help="Every image of the set, or only the held-out half that target fitting never looks at.",
        )
    elif len(models) >= 2:
        kind = state.bound(
            st.selectbox, "Target", "w_target_kind", view.target_kind,
            lambda v, value: v.replace(target_kind=value, target_value=None),
            options=list(state.TARGET_KINDS), format_func=ui.TARGET_NAMES.get,
            help="Fit the thresholds so the cascade meets this on the calibration half. 'Lose at most ...': "
                 "the accuracy may fall at most this much (a fraction) below the last model's.",
        )
        target_value = resolved.target_value
        if kind == "gmacs":
            widget_args = dict(min_value=0.0, step=0.01, format="%.4f")
        else:
            widget_args = dict(min_value=0.0, max_value=1.0, step=0.001, format="%.3f")
        state.bound(
            st.number_input, {"accuracy": "Target accuracy", "gmacs": "Cost budget (average GMACs)",
                              "escalated": "Largest share escalated to the last stage",
                              "drop": "Largest accuracy drop against the last model"}[kind],
            "w_target_value", float(target_value), lambda v, value: v.replace(target_value=float(value)),
            help={"accuracy": "The cheapest thresholds reaching this top-1 accuracy on the calibration half.",
                  "gmacs": "The most accurate thresholds whose average cost stays within this budget.",
                  "escalated": "The most accurate thresholds sending at most this share to the last model.",
                  "drop": "The cheapest thresholds whose accuracy is at most this much below the last model's "
                          "(0.01 = one point)."}[kind],
            **widget_args,
        )
        deltas = list(state.DELTAS) + ([view.delta] if view.delta not in state.DELTAS else [])
        state.bound(
            st.selectbox, "Guarantee", "w_delta", view.delta, lambda v, value: v.replace(delta=value),
            options=deltas,
            format_func=lambda d: ui.DELTA_NAMES.get(d) or f"{100 * (1 - d):.4g}% (δ = {d:g})",
            help="Plain fit: the target holds on the calibration half, and on new images only about half the "
                 "time. A guarantee of 1 − δ certifies the thresholds (Learn then Test, Angelopoulos et al. "
                 "2021): with probability ≥ 1 − δ over the draw of the calibration images, the target holds "
                 "on new images from the same distribution. Safer thresholds, a little more compute.",
        )

    st.divider()
    cost_options = ["gmacs"] + (["ms"] if all(bank.model(m).ms() is not None for m in models) else [])
    cost = view.cost if view.cost in cost_options else "gmacs"
    state.bound(
        st.segmented_control, "Cost axis", "w_cost", cost, lambda v, value: v.replace(cost=value or "gmacs"),
        options=cost_options, required=True, format_func={"gmacs": "GMACs", "ms": "latency (ms)"}.get,
        help="Compute (multiply-accumulates) or measured latency per image on the chart's x axis.",
    )
    log_x = view.log_x if view.log_x is not None else scale_ui.log_default(singles, cost)
    state.bound(st.toggle, "Log scale", "w_logx", log_x, lambda v, value: v.replace(log_x=bool(value)),
                help="Logarithmic cost axis: spreads out the cheap models (on by default when costs span "
                     "more than 30x).")
    highlight = scale_ui.highlight_picker(bank, singles, "explorer")

cascade, ev = ui.evaluate_current(bank, view, resolved.as_dict())

with main:
    if cascade["fit_error"]:
        st.warning(f"No thresholds meet this target: {ui.md(cascade['fit_error'])}. Showing the hand-set thresholds "
                   "instead; relax the target.", icon=":material/warning:")
    if cascade["fitted"]:
        how = "certified" if cascade["certificate"] is not None else "fitted"
        st.info(f"Thresholds {how} for **{ui.TARGET_NAMES[view.target_kind]}** "
                f"({cascade['target_value']:g}) on the calibration half: "
                f"{plots.format_thresholds(cascade['thresholds'])}. Metrics below are on the held-out half.",
                icon=":material/target:")
    st.markdown(f"**{ui.md(ui.chain_text(bank, models))}** · {plots.format_thresholds(cascade['thresholds'])}")
    ui.certificate_box(cascade["certificate"])
    ui.metric_cards(bank, ev)
    ui.temperature_notes(ev)
    ui.router_cards(ev)

    curve = data.chain_curve(bank_key, split, models, view.criterion, view.temperature, view.ensemble,
                             cascade["on"]) if len(models) >= 2 else None
    frontier = data.frontier(bank_key, split, view.criterion) if len(available) >= 2 else None
    point = {"accuracy": ev["accuracy"], "avg_gmacs": ev["avg_gmacs"], "avg_ms": ev["avg_ms"],
             "label": plots.format_thresholds(cascade["thresholds"])}
    fig = plots.from_tradeoff(singles, hull=data.hull(bank_key, split, cost), curve=curve, frontier=frontier,
                              point=point, cost=cost, log_x=log_x, highlight=highlight,
                              labels=families.labelled_models(singles, frontier=frontier, current=models))
    st.session_state["_explorer_curve"] = (curve, fig, models)

    def on_click() -> None:
        stored_curve, stored_fig, stored_models = st.session_state["_explorer_curve"]
        index = plots.clicked_curve_index(st.session_state.get("explorer_chart"), stored_fig)
        if index is None or stored_curve is None:
            return
        picked = tuple(float(t) for t in np.asarray(stored_curve.thresholds)[index])
        state.update(models=stored_models, thresholds=picked, mode="manual")

    st.plotly_chart(fig, theme="streamlit", key="explorer_chart", on_select=on_click,
                    selection_mode="points", config={"displaylogo": False})
    st.caption("Dots: single models; dashed line: the best you can do by switching between single models; "
               "orange line: this cascade at every threshold (click a point to use it); green: the best "
               "cascades of any two models; star: the current setting.")
    ui.export_button(bank, view, ev, models, cascade["thresholds"],
                     certificate=cascade["certificate"] if cascade["certificate"] is not None
                     and cascade["certificate"].certified else None)

calibration_view.render(bank, bank_key, split, models, view.criterion, view.temperature, view.ensemble,
                        cascade["thresholds"], cascade["on"], ev["result"], shown=view.calibration)

# The resolved chain goes into the view (and the URL) once, after the page is drawn, so a copied link
# and the other pages (gallery, shift, live) show this cascade; the page itself rendered from `resolved`.
if view.models != models or (view.mode == "manual" and view.thresholds != thresholds):
    state.update(models=models, thresholds=thresholds if view.mode == "manual" else view.thresholds)

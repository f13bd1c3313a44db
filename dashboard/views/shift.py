"""Distribution shift: thresholds chosen on one image set, applied unchanged to another."""

from __future__ import annotations

import streamlit as st

from cascade_explorer.core import plots
from cascade_explorer.core.errors import UsageError
from cascade_explorer.dashboard import data, resolve, state, ui

bank = data.current_bank()
view = state.current()
bank_key = data.key(bank)

st.title("Distribution shift")
st.caption("Thresholds (and temperatures) are chosen on one image set and then used, unchanged, on another — "
           "e.g. clean photos vs. the same photos corrupted. Does the cascade still exit as often, stay as "
           "accurate, and keep its speed-up?")

if len(bank.splits) < 2:
    st.info(f"This bank has one image set ({ui.md(bank.default_split)}); a shift needs two. Add a corrupted copy with "
            "`cascade-explorer precompute ... --split val-corrupted --corruptions gaussian_noise,defocus_blur` or import "
            "logits for a second set.", icon=":material/info:")
    st.stop()

# the cascade in view (the Explorer's, resolved once); with a target, its thresholds are fitted on
# `fit_on` below, so the hand-set ones are what this page starts from
resolved = resolve.resolve(bank, view)
models, thresholds = resolved.models, resolved.hand_thresholds
usable = [s for s in bank.splits if all(s in bank.model(m).top1 for m in models)]
if len(usable) < 2:
    st.info(f"The cascade {ui.md(ui.chain_text(bank, models))} has outputs on {len(usable)} image set(s) of this bank; "
            "a shift needs two. Pick models that have outputs on every set in the Explorer.",
            icon=":material/info:")
    st.stop()
fit_on = view.shift_fit if view.shift_fit in usable else (
    ui.split_of(bank, view) if ui.split_of(bank, view) in usable else usable[0])
apply_options = [s for s in usable if s != fit_on]
apply_to = view.shift_apply if view.shift_apply in apply_options else apply_options[0]
c1, c2, c3 = st.columns(3)
with c1:
    state.bound(st.selectbox, "Choose thresholds on", "w_shift_fit", fit_on,
                lambda v, value: v.replace(shift_fit=value, shift_apply="" if value == v.shift_apply else v.shift_apply),
                options=usable,
                help="The image set the thresholds are fitted on (its calibration half) or were tuned on.")
with c2:
    state.bound(st.selectbox, "Apply them to", "w_shift_apply", apply_to,
                lambda v, value: v.replace(shift_apply=value), options=apply_options,
                help="The image set the same thresholds are then used on.")
with c3:
    target_mode = view.mode == "target" and len(models) >= 2
    st.markdown(f"**Cascade:** {ui.md(ui.chain_text(bank, models))}  \n"
                + (f"thresholds fitted for {ui.TARGET_NAMES[view.target_kind]}" if target_mode
                   else plots.format_thresholds(thresholds)))
    st.page_link("views/explorer.py", label="Change it in the Explorer", icon=":material/tune:")

if len(models) < 2:
    st.info("Pick a cascade of at least two models in the Explorer.")
    st.stop()

target_value = None
if target_mode:
    target_value = (view.target_value if view.target_value is not None
                    else ui.default_target(bank, fit_on, view.target_kind, view, models))
    on = "eval"
else:
    on = view.on
try:
    report = data.shift(bank_key, fit_on, apply_to, models, view.criterion, () if target_mode else thresholds,
                        view.temperature, view.ensemble, on, view.target_kind if target_mode else None,
                        float(target_value) if target_mode else None)
except UsageError as error:
    if not target_mode:
        raise
    # an unreachable target: say so, and go on with the hand-set thresholds (as the Explorer does)
    st.warning(f"{ui.md(error)} — showing the hand-set thresholds instead; change the target in the Explorer.")
    target_mode, on = False, view.on
    report = data.shift(bank_key, fit_on, apply_to, models, view.criterion, thresholds, view.temperature,
                        view.ensemble, on, None, None)
source, target, delta = report["source"], report["target"], report["delta"]
used = tuple(report["thresholds"])

left, right = st.columns(2)
for col, name, ev in ((left, fit_on, source), (right, apply_to, target)):
    with col:
        st.subheader(f"{ui.md(name)}" + (" (thresholds chosen here)" if name == fit_on else " (same thresholds)"))
        m = st.columns(3)
        m[0].metric(f"Accuracy on {ui.md(name)}", ui.pct(ev["accuracy"]),
                    help="Top-1 accuracy of the cascade on this image set.")
        m[0].caption(ui.ci(ev.get("accuracy_ci")))
        m[1].metric(f"Average GMACs on {ui.md(name)}", ui.num(ev["avg_gmacs"]), help="Average compute per image.")
        m[2].metric(f"Speed-up on {ui.md(name)}", ui.speedup(ev.get("speedup")),
                    help="Against this image set's own best single models at equal accuracy.")
        m[2].caption(ui.speedup_caption(ev.get("speedup"), f"{ev['n_samples']:,} images, "
                                        + ("every image" if ev["on"] == "all" else "held-out half")))

st.subheader("What moved")
d = st.columns(3)
d[0].metric("Accuracy change", f"{delta['accuracy'] * 100:+.2f} pts",
            help=f"Accuracy on {ui.md(apply_to)} minus accuracy on {ui.md(fit_on)}.")
d[1].metric("Cost change", f"{delta['avg_gmacs']:+.4g} GMACs",
            help="Shifted images are harder: fewer are confident, more escalate, the average cost grows.")
d[2].metric("Speed-up change", "–" if delta["speedup"] is None else f"{delta['speedup']:+.2f}×",
            help="Speed-up at equal accuracy on the shifted set minus on the original set; '–' when the "
                 "cascade is more accurate than every single model on either set.")

stage_names = [f"stage {i + 1}: {bank.model(m).display_name}" for i, m in enumerate(models)]
st.plotly_chart(plots.from_exit_fractions({fit_on: source["exit_fractions"], apply_to: target["exit_fractions"]},
                                          stage_names), theme="streamlit", key="shift_exits",
                config={"displaylogo": False})

curves = {s: data.chain_curve(bank_key, s, models, view.criterion, view.temperature, view.ensemble, on,
                              temperature_split=fit_on) for s in (fit_on, apply_to)}
hulls = {s: data.hull(bank_key, s) for s in (fit_on, apply_to)}
points = {fit_on: source, apply_to: target}
st.plotly_chart(plots.from_shift(curves, points, hulls=hulls, log_x=view.log_x), theme="streamlit",
                key="shift_chart", config={"displaylogo": False})
st.caption(f"Solid lines: the cascade at every threshold on each image set; dotted: each set's best single models; "
           f"stars: the thresholds {plots.format_thresholds(used)} on each set.")

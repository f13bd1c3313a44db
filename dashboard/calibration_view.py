"""The Explorer's calibration views: why a threshold works (issue 11).

One of three views under the Explorer chart (a segmented control in the URL state: only the view
shown is built, so a slider move stays cheap), built by core.calibration_plots from core's signals:
- right vs wrong: per non-final stage, histograms of the confidence of its right and wrong answers on
  the images that reach it, with the current threshold drawn (it moves with the slider) and what it
  does in words: how many right answers it escalates, how many wrong answers it keeps;
- reliability: per stage, accuracy against max-softmax confidence before and after temperature
  scaling (fitted on the calibration half, shown on the held-out half), with the ECE of each and the
  fit's flags;
- risk-coverage: per model of the chain alone, the error rate of the images it answers against the
  share it answers, with the current threshold marked.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from cascade_explorer.core import calibration_plots as cp
from cascade_explorer.core import text
from cascade_explorer.dashboard import data, state, ui

VIEW_NAMES = {"split": "Right vs wrong confidence", "reliability": "Reliability (calibration)",
              "risk": "Risk-coverage", "off": "Hide"}


def threshold_line(bank, models, stage: int, threshold: float, counts: dict) -> str:
    """The sentence under a right/wrong histogram (also what the tests read)."""
    return (f"**Stage {stage + 1}** ({ui.md(bank.model(models[stage]).display_name)}), threshold "
            f"{cp._format_threshold(threshold)}, on the {counts['n']:,} images that reach it: "
            f"{cp.describe_threshold_counts(counts)}.")


def render(bank, bank_key, split, models, criterion, temperature, ensemble, thresholds, on, result,
           shown: str = "split") -> None:
    """The calibration view `shown` (CALIBRATION_VIEWS) for the chain in view; `result` is the evaluated
    CascadeResult on part `on` (its exit stages say which images reach each stage)."""
    st.subheader("Why the thresholds work: confidence against correctness")
    shown = state.bound(
        st.segmented_control, "Calibration view", "w_calibration", shown,
        lambda v, value: v.replace(calibration=value or "split"), options=list(state.CALIBRATION_VIEWS),
        format_func=VIEW_NAMES.get, required=True,
        help="Right vs wrong: what the current threshold does to each stage's right and wrong answers. "
             "Reliability: is a confidence of 80% right 80% of the time, before and after temperature "
             "scaling. Risk-coverage: each model's error rate on what it answers against how much it answers.",
    )
    if shown == "off":
        return
    stages = data.stage_signals(bank_key, split, tuple(models), criterion, temperature, ensemble, on)
    exit_stage = np.asarray(result.exit_stage)

    if shown == "split":
        if len(models) < 2:
            st.caption("A single model has no threshold; pick two or more models.")
        for i in range(len(models) - 1):
            reach = exit_stage >= i
            conf = np.asarray(stages[i].confidence)[reach]
            correct = np.asarray(stages[i].correct)[reach]
            if not len(conf):
                st.caption(f"Stage {i + 1}: no image reaches it at these thresholds.")
                continue
            counts = cp.threshold_counts(conf, correct, thresholds[i])
            st.markdown(threshold_line(bank, models, i, thresholds[i], counts))
            fig = cp.from_confidence_split(conf, correct, thresholds[i], name=f"stage {i + 1}")
            st.plotly_chart(fig, key=f"calibration_split_{i}", config={"displaylogo": False})
        st.caption("Green: confidence of right answers; orange: of wrong answers; dashed line: the stage's threshold "
                   "(move the slider above). Right answers left of the line are escalated anyway (compute without "
                   "gain); wrong answers right of it are final (errors the next model never sees).")

    elif shown == "reliability":
        fits = data.temperature_fits(bank_key, split, tuple(models))
        before = data.stage_signals(bank_key, split, tuple(models), "max_softmax", "none", ensemble, "eval")
        after = data.stage_signals(bank_key, split, tuple(models), "max_softmax", "fit", ensemble, "eval")
        columns = st.columns(min(len(models), 2))
        for i, model_id in enumerate(models):
            fit = fits[model_id]
            name = f"Stage {i + 1}"
            with columns[i % len(columns)]:
                st.markdown(f"**Stage {i + 1}**: {ui.md(bank.model(model_id).display_name)}"
                            + (f" (ensemble of stages 1..{i + 1})" if ensemble and i else ""))
                fig = cp.from_reliability(before[i].confidence, before[i].correct,
                                          confidence_after=after[i].confidence,
                                          temperature=None if ensemble and i else fit.temperature, name=name,
                                          height=420)
                st.plotly_chart(fig, key=f"calibration_reliability_{i}", config={"displaylogo": False})
                st.caption(f"T = {fit.temperature:.4g} fitted on {fit.n:,} calibration images: NLL "
                           f"{fit.nll_before:.4f} → {fit.nll_after:.4f}, ECE {ui.pct(fit.ece_before)} → "
                           f"{ui.pct(fit.ece_after)} there; the diagram shows the {len(before[i]):,} held-out images.")
                for message in fit.messages:
                    st.warning(f"Temperature fit of {ui.md(bank.model(model_id).display_name)} flagged: {ui.md(message)}",
                               icon=":material/thermostat:")
        st.caption("Each point: images in one confidence bin (15 equal-width bins), at their mean max-softmax "
                   "confidence and their accuracy; on the diagonal, confidence means what it says. ECE: the "
                   "image-weighted mean gap (Guo et al. 2017). Temperature scaling divides each model's logits by "
                   "one T > 0 fitted for the lowest log-loss on the calibration half, searched over all T > 0 and "
                   "never clipped.")

    else:
        curves = {f"{i + 1}. {text.html_text(bank.model(m).display_name)}": (stages[i].confidence, stages[i].correct)
                  for i, m in enumerate(models)}
        marks = {f"{i + 1}. {text.html_text(bank.model(m).display_name)}": thresholds[i] for i, m in enumerate(models[:-1])}
        fig = cp.from_risk_coverage(curves, thresholds=marks, height=400)
        st.plotly_chart(fig, key="calibration_risk_coverage", config={"displaylogo": False})
        st.caption("Each model alone, answering only when its confidence is at least a threshold: the error rate "
                   "of what it answers (selective risk) against the share it answers (coverage). Lower is better; "
                   "stars: the current thresholds of the non-final stages, on every image they see alone.")

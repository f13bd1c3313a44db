"""Calibration views as Plotly figure builders (arrays in, ``go.Figure`` out; no Streamlit), in the
style of core/plots.py, plus the numbers they show as pure functions the dashboard can print:

- `from_reliability`: reliability diagram of one model, before and after temperature scaling,
  with the ECE of each in the title (`core.temperature.reliability_bins`);
- `from_confidence_split`: histograms of the confidence of right and of wrong answers of one stage
  with the threshold drawn, captioned with `threshold_counts` (right answers escalated, wrong
  answers kept);
- `from_risk_coverage`: selective risk against coverage of one or more models (`risk_coverage`).

Threshold convention as everywhere in the project: a stage answers when its confidence >= threshold
and escalates otherwise; +inf never answers, -inf always answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from .errors import UsageError
from .plots import COLOURS
from .signals import check_correct
from .temperature import DEFAULT_N_BINS, reliability_bins
from .validate import check_array, check_int, check_number

_PALETTE = (COLOURS["single"], COLOURS["chain"], COLOURS["frontier"], COLOURS["point"], *COLOURS["extra"])


def _layout(*, height: int, title: str | None = None) -> dict:
    # with a title the legend goes below the plot: above it, the two overlap in a narrow column
    legend = (dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0) if title else
              dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0))
    return dict(title=title, height=height, margin=dict(l=10, r=10, t=50 if title else 20, b=10), legend=legend,
                hovermode="closest")


def _legend(fig: go.Figure, *, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(**_layout(height=height, title=title))
    return fig


def _confidence_correct(confidence, correct, name: str = "confidence") -> tuple[np.ndarray, np.ndarray]:
    conf = check_array(confidence, name)
    if np.isnan(conf).any():
        raise UsageError(f"{name} contains NaN: fix or drop those samples")
    return conf, check_correct(correct, "correct", length=len(conf))


# --------------------------------------------------------------------------------------
# (a) reliability diagram
# --------------------------------------------------------------------------------------

def from_reliability(confidence, correct, *, confidence_after=None, temperature: float | None = None,
                     n_bins: int = DEFAULT_N_BINS, name: str = "model", height: int = 420) -> go.Figure:
    """Reliability diagram of one model: accuracy against mean confidence per equal-width bin.

    confidence: max-softmax confidence (in [0, 1]) per sample at T = 1; correct: per-sample
    correctness; confidence_after: the same at the fitted temperature (optional second trace;
    the argmax, hence `correct`, does not change with T); temperature: shown in the legend and title.
    Each trace has one point per non-empty bin (x = mean confidence, y = accuracy; customdata = the
    bin's [count, lower edge, upper edge]); the diagonal is perfect calibration. The title carries
    the ECE of each trace (Guo et al. 2017, `n_bins` bins).
    """
    conf, correct = _confidence_correct(confidence, correct)
    curves = [("before temperature scaling (T = 1)", conf, COLOURS["point"])]
    if confidence_after is not None:
        after, _ = _confidence_correct(confidence_after, correct, "confidence_after")
        t_label = "" if temperature is None else f" (T = {float(temperature):.3g})"
        curves.append((f"after temperature scaling{t_label}", after, COLOURS["single"]))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color=COLOURS["extra"][2], dash="dash", width=1), hoverinfo="skip"))
    eces = []
    for label, values, colour in curves:
        bins = reliability_bins(values, correct, n_bins)
        eces.append(bins.ece)
        full = bins.count > 0
        custom = np.column_stack([bins.count[full], bins.edges[:-1][full], bins.edges[1:][full]])
        fig.add_trace(go.Scatter(
            x=bins.mean_confidence[full], y=bins.accuracy[full], mode="lines+markers", name=label,
            customdata=custom, line=dict(color=colour, width=2), marker=dict(size=7),
            hovertemplate=("confidence (%{customdata[1]:.2f}, %{customdata[2]:.2f}]: %{customdata[0]} images"
                           "<br>mean confidence %{x:.1%}<br>accuracy %{y:.1%}<extra>" + label + "</extra>"),
        ))
    ece_text = f"ECE {eces[0]:.1%}" if len(eces) == 1 else f"ECE {eces[0]:.1%} before, {eces[1]:.1%} after"
    title = f"{name}: {ece_text}" + ("" if temperature is None else f" (T = {float(temperature):.3g})")
    _legend(fig, height=height, title=title)
    fig.update_xaxes(title_text="confidence (mean in bin)", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="accuracy in bin", range=[0, 1], tickformat=".0%")
    return fig


# --------------------------------------------------------------------------------------
# (b) right/wrong confidence histograms with the threshold
# --------------------------------------------------------------------------------------

def threshold_counts(confidence, correct, threshold: float) -> dict:
    """What a threshold does to one stage's answers (answer when confidence >= threshold).

    Returns counts (ints) and shares: n, n_right, n_wrong; right_escalated (right answers sent on
    anyway: cost without gain), right_kept, wrong_kept (wrong answers let out: errors the next stage
    never sees), wrong_escalated; escalated (share of all samples escalated); right_escalated_share
    (of right answers) and wrong_kept_share (of wrong answers), None when there are none.
    """
    conf, correct = _confidence_correct(confidence, correct)
    threshold = check_number(threshold, "threshold", allow_inf=True)
    kept = conf >= threshold if threshold != math.inf else np.zeros(len(conf), dtype=bool)
    n_right = int(np.count_nonzero(correct))
    n_wrong = len(conf) - n_right
    right_escalated = int(np.count_nonzero(correct & ~kept))
    wrong_kept = int(np.count_nonzero(~correct & kept))
    return {
        "n": len(conf), "n_right": n_right, "n_wrong": n_wrong, "threshold": threshold,
        "right_escalated": right_escalated, "right_kept": n_right - right_escalated,
        "wrong_kept": wrong_kept, "wrong_escalated": n_wrong - wrong_kept,
        "escalated": float(np.count_nonzero(~kept) / len(conf)) if len(conf) else None,
        "right_escalated_share": right_escalated / n_right if n_right else None,
        "wrong_kept_share": wrong_kept / n_wrong if n_wrong else None,
    }


def describe_threshold_counts(counts: Mapping) -> str:
    """'escalates 120 of 980 right answers (12.2%) and keeps 45 of 320 wrong answers (14.1%)'."""
    def share(value):
        return "" if value is None else f" ({value:.1%})"

    return (f"escalates {counts['right_escalated']} of {counts['n_right']} right answers"
            f"{share(counts['right_escalated_share'])} and keeps {counts['wrong_kept']} of {counts['n_wrong']} "
            f"wrong answers{share(counts['wrong_kept_share'])}")


def _format_threshold(threshold: float) -> str:
    if threshold == math.inf:
        return "+inf (never answers)"
    if threshold == -math.inf:
        return "-inf (always answers)"
    return f"{threshold:.4g}"


def from_confidence_split(confidence, correct, threshold: float | None = None, *, bins: int = 40,
                          name: str = "stage 1", height: int = 320) -> go.Figure:
    """Overlaid histograms of the confidence of right and of wrong answers of one stage (same bin
    edges, counts of images), the threshold as a vertical dashed line, and `threshold_counts` as the
    line's annotation. Traces '<name>: right' and '<name>: wrong' (x = bin centres, y = counts)."""
    conf, correct = _confidence_correct(confidence, correct)
    bins = check_int(bins, "bins", minimum=1)
    if threshold is not None:
        threshold = check_number(threshold, "threshold", allow_inf=True)
    finite = np.isfinite(conf)
    lo, hi = (float(conf[finite].min()), float(conf[finite].max())) if finite.any() else (0.0, 1.0)
    if threshold is not None and math.isfinite(threshold):
        lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    traces = []
    for label, mask, colour in (("right", correct, COLOURS["frontier"]), ("wrong", ~correct, COLOURS["point"])):
        counts, _ = np.histogram(conf[mask & finite], bins=edges)
        traces.append(go.Bar(
            x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=f"{name}: {label}",
            marker_color=colour, opacity=0.6,
            hovertemplate="confidence %{x:.3g}<br>%{y} " + label + " answers<extra></extra>"))
    # shapes and annotations go into the layout at construction: Figure.add_vline re-validates the
    # whole layout and is most of the build time, which a dashboard slider move pays on every rerun
    shapes, annotations = [], []
    if threshold is not None:
        counts = threshold_counts(conf, correct, threshold)
        caption = f"threshold {_format_threshold(threshold)} " + describe_threshold_counts(counts)
        if math.isfinite(threshold):
            shapes.append(dict(type="line", xref="x", yref="paper", x0=float(threshold), x1=float(threshold),
                               y0=0, y1=1, line=dict(dash="dash", color=COLOURS["chain"])))
            annotations.append(dict(text=caption, xref="x", yref="paper", x=float(threshold), y=1,
                                    showarrow=False, xanchor="right", yanchor="top"))
        else:
            annotations.append(dict(text=caption, xref="paper", yref="paper", x=0, y=1, showarrow=False,
                                    xanchor="left", yanchor="bottom"))
    # one layout at construction: every later update_* call re-validates it (slow on each slider move)
    layout = _layout(height=height, title=None)
    layout.update(barmode="overlay", shapes=shapes, annotations=annotations,
                  xaxis=dict(title=dict(text=f"{name} confidence (higher = more sure)")),
                  yaxis=dict(title=dict(text="images")))
    return go.Figure(data=traces, layout=layout)


# --------------------------------------------------------------------------------------
# (c) risk-coverage
# --------------------------------------------------------------------------------------

def risk_coverage(confidence, correct) -> dict:
    """Selective risk against coverage when a model abstains below a confidence threshold.

    Every distinct confidence t is a threshold (samples with confidence >= t are answered, equal
    confidences together). Returns arrays, coverage ascending: "threshold", "coverage" (share
    answered), "risk" (share of answered samples that are wrong), "accepted" (count answered).
    """
    conf, correct = _confidence_correct(confidence, correct)
    if len(conf) == 0:
        raise UsageError("risk_coverage needs at least one sample")
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    ends = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    accepted = ends + 1
    wrong = np.cumsum(~correct[order])[ends]
    return {"threshold": sorted_conf[ends], "coverage": accepted / len(conf), "risk": wrong / accepted,
            "accepted": accepted}


def from_risk_coverage(models: Mapping, *, thresholds: Mapping | None = None, height: int = 420) -> go.Figure:
    """Risk-coverage curves, one trace per model.

    models: name -> (confidence, correct); thresholds: optional name -> a threshold, drawn as a
    marker at the coverage and risk it gives ('<name>: threshold'). Trace '<name>' has x = coverage,
    y = selective risk, customdata = the threshold of each point.
    """
    if not isinstance(models, Mapping) or not models:
        raise UsageError("models must be a non-empty dict: name -> (confidence, correct)")
    fig = go.Figure()
    for i, (name, pair) in enumerate(models.items()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise UsageError(f"models[{name!r}] must be a (confidence, correct) pair")
        curve = risk_coverage(*pair)
        colour = _PALETTE[i % len(_PALETTE)]
        fig.add_trace(go.Scatter(
            x=curve["coverage"], y=curve["risk"], mode="lines", name=str(name),
            customdata=curve["threshold"].reshape(-1, 1), line=dict(color=colour, width=2),
            hovertemplate=("answer when confidence >= %{customdata[0]:.4g}<br>coverage %{x:.1%}"
                           "<br>risk %{y:.1%}<extra>" + str(name) + "</extra>")))
        if thresholds and name in thresholds and thresholds[name] is not None:
            counts = threshold_counts(*pair, thresholds[name])
            answered = counts["n"] - counts["right_escalated"] - counts["wrong_escalated"]
            if answered:
                fig.add_trace(go.Scatter(
                    x=[answered / counts["n"]], y=[counts["wrong_kept"] / answered], mode="markers",
                    name=f"{name}: threshold", marker=dict(color=colour, size=12, symbol="star",
                                                           line=dict(width=1, color="#333")),
                    hovertemplate=(f"threshold {_format_threshold(counts['threshold'])}"
                                   "<br>coverage %{x:.1%}<br>risk %{y:.1%}<extra></extra>")))
    _legend(fig, height=height)
    fig.update_xaxes(title_text="coverage (share of images answered)", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="selective risk (error rate of the answered)", tickformat=".0%",
                     rangemode="tozero")
    return fig

"""Plotly figure builders for the dashboard (pure: data in, ``go.Figure`` out; no Streamlit).

Every builder takes core results (or plain arrays / DataFrames with the same column names) and
leaves the template alone, so ``st.plotly_chart(theme="streamlit")`` can follow the light or dark
theme. Colours are mid-tone, colour-blind-safe hues that stay readable on both backgrounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .errors import UsageError
from .text import exact_number, html_text

# Every label taken from a bank (model names and ids, split names, stage names) goes through
# html_text: Plotly renders a subset of HTML (links included) in text, legend names and hover text.
# Names never go into a hovertemplate string (where "%{...}" is a placeholder): %{fullData.name} is used.

# Okabe-Ito palette (colour-blind safe), mid-tones readable on white and on near-black.
COLOURS = {
    "single": "#0072B2",
    "hull": "#56B4E9",
    "chain": "#E69F00",
    "frontier": "#009E73",
    "point": "#D55E00",
    "extra": ("#CC79A7", "#F0E442", "#999999"),
}
COST_LABELS = {"gmacs": "average cost (GMACs per image)", "ms": "average latency (ms per image)"}
# Trace names the dashboard relies on to recognise a click on the chain's curve.
CHAIN_TRACE = "this cascade, every threshold"


def _cost_label(cost: str) -> str:
    if cost not in COST_LABELS:
        raise UsageError(f"cost axis {cost!r} is not one of {sorted(COST_LABELS)}")
    return COST_LABELS[cost]


def _pct(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


def format_thresholds(thresholds: Sequence[float]) -> str:
    """'t1=0.7123456789, t2=0.43' (or 'none' for a single model): each value exact (repr), so a
    threshold copied from a label gives the same cascade."""
    values = [float(t) for t in np.atleast_1d(np.asarray(thresholds, dtype=float))]
    if not values:
        return "none"
    return ", ".join(f"t{i + 1}={'never exit' if not np.isfinite(t) else exact_number(t)}" for i, t in enumerate(values))


def format_fractions(fractions: Sequence[float]) -> str:
    """'stage 1 62.0% / stage 2 38.0%'."""
    return " / ".join(f"stage {i + 1} {float(f):.1%}" for i, f in enumerate(np.asarray(fractions, dtype=float)))


def thin(n: int, max_points: int | None) -> np.ndarray:
    """Indices of at most ``max_points`` of ``n`` ordered points, evenly spread, first and last kept.

    A curve over every distinct threshold has one point per image; a few hundred draw the same line
    and keep the page light (every point still carries its own exact thresholds)."""
    if max_points is None or n <= max_points:
        return np.arange(n)
    if max_points < 2:
        raise UsageError(f"max_points must be at least 2, got {max_points}")
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))


def _layout(fig: go.Figure, *, x_title: str, log_x: bool, y_title: str = "top-1 accuracy",
            height: int = 480, title: str | None = None) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
        hovermode="closest",
        # Clicking selects one point (the dashboard reads it through on_select).
        clickmode="event+select",
    )
    fig.update_xaxes(title_text=x_title, type="log" if log_x else "linear")
    fig.update_yaxes(title_text=y_title, tickformat=".0%")
    return fig


def _curve_cost(curve: Any, cost: str) -> np.ndarray | None:
    values = getattr(curve, "avg_gmacs" if cost == "gmacs" else "avg_ms", None)
    return None if values is None else np.asarray(values, dtype=float)


def from_tradeoff(
    singles: pd.DataFrame,
    *,
    hull: Any = None,
    curve: Any = None,
    frontier: pd.DataFrame | None = None,
    point: Mapping | None = None,
    cost: str = "gmacs",
    log_x: bool = False,
    chain_name: str = CHAIN_TRACE,
    height: int = 480,
    max_points: int | None = 400,
    labels: Any = None,
    highlight: Any = None,
) -> go.Figure:
    """The Explorer's accuracy-against-cost chart.

    singles: DataFrame with ``display_name``, ``accuracy`` and the cost column (``gmacs`` or ``ms``).
    hull: object with ``costs`` / ``accuracies`` (core.curves.SingleModelHull) in the same cost unit.
    curve: core.curves.CascadeCurve (``thresholds`` (P, n-1), ``accuracy``, ``avg_gmacs``, ``avg_ms``,
        ``exit_fractions`` (P, n)); its trace carries the point index as customdata so a click can
        set the thresholds. Curve and frontier are thinned to ``max_points`` evenly spread points.
    frontier: DataFrame with ``models``, ``thresholds``, ``accuracy``, ``avg_gmacs`` / ``avg_ms``.
    point: the current operating point: ``accuracy``, ``avg_gmacs`` / ``avg_ms``, optional ``label`` (hover)
        and ``name`` (legend).
    labels: ids (``singles["id"]``) whose names are printed beside their dot (None = every model;
        core.families.labelled_models picks them for big banks); every dot keeps its name on hover.
    highlight: ids drawn in a stronger colour (one model family), the others faded; None = no highlight.
    """
    label = _cost_label(cost)
    fig = go.Figure()
    cost_col = "gmacs" if cost == "gmacs" else "ms"

    if hull is not None and len(getattr(hull, "costs", [])) > 0:
        fig.add_trace(go.Scatter(
            x=np.asarray(hull.costs, dtype=float), y=_pct(hull.accuracies), mode="lines",
            name="best single model (switching between models)",
            line=dict(color=COLOURS["hull"], dash="dash", width=2),
            hovertemplate="single-model hull<br>cost %{x:.4g}<br>accuracy %{y:.2%}<extra></extra>",
        ))

    if frontier is not None and len(frontier) > 0:
        f_cost = frontier["avg_gmacs" if cost == "gmacs" else "avg_ms"].to_numpy(dtype=float)
        order = np.argsort(f_cost, kind="stable")
        order = order[thin(len(order), max_points)]
        fractions = (frontier["exit_fractions"].to_numpy()[order] if "exit_fractions" in frontier
                     else [None] * len(order))
        text = [
            f"{' → '.join(html_text(x, 200) for x in m)}<br>{format_thresholds(t)}"
            + ("" if f is None else f"<br>exits: {format_fractions(f)}")
            for m, t, f in zip(frontier["models"].to_numpy()[order], frontier["thresholds"].to_numpy()[order],
                               fractions)
        ]
        fig.add_trace(go.Scatter(
            x=f_cost[order], y=frontier["accuracy"].to_numpy(dtype=float)[order], mode="lines+markers",
            name="best cascades over all pairs", text=text,
            line=dict(color=COLOURS["frontier"], width=1.5), marker=dict(size=4),
            hovertemplate="%{text}<br>cost %{x:.4g}<br>accuracy %{y:.2%}<extra>frontier</extra>",
        ))

    if curve is not None:
        c_cost = _curve_cost(curve, cost)
        if c_cost is not None and len(c_cost) > 0:
            thresholds = np.asarray(curve.thresholds, dtype=float).reshape(len(c_cost), -1)
            fractions = np.asarray(curve.exit_fractions, dtype=float).reshape(len(c_cost), -1)
            order = np.argsort(c_cost, kind="stable")
            order = order[thin(len(order), max_points)]
            text = [f"{format_thresholds(thresholds[i])}<br>exits: {format_fractions(fractions[i])}" for i in order]
            fig.add_trace(go.Scatter(
                x=c_cost[order], y=_pct(curve.accuracy)[order], mode="lines+markers", name=html_text(chain_name),
                text=text, customdata=order.reshape(-1, 1),
                line=dict(color=COLOURS["chain"], width=2), marker=dict(size=5),
                hovertemplate="%{text}<br>cost %{x:.4g}<br>accuracy %{y:.2%}"
                              "<extra>click to use these thresholds</extra>",
            ))

    if singles is not None and len(singles) > 0 and cost_col in singles:
        s = singles[singles[cost_col].notna()].sort_values(cost_col, kind="stable")
        names = [html_text(n, 200) for n in s["display_name"]]
        ids = s["id"].astype(str).tolist() if "id" in s else list(s["display_name"].astype(str))
        shown = None if labels is None else {str(m) for m in labels}
        marker = dict(color=COLOURS["single"], size=9, symbol="circle")
        if highlight is not None:
            lit = {str(m) for m in highlight}
            marker = dict(color=[COLOURS["point"] if i in lit else COLOURS["single"] for i in ids],
                          size=[11 if i in lit else 7 for i in ids],
                          opacity=[1.0 if i in lit else 0.35 for i in ids], symbol="circle")
        fig.add_trace(go.Scatter(
            x=s[cost_col].to_numpy(dtype=float), y=s["accuracy"].to_numpy(dtype=float),
            mode="markers+text", name="single models",
            # printed names only where `labels` allows (hundreds of names pile up into a band);
            # the hover text always names the model
            text=[n if shown is None or i in shown else "" for n, i in zip(names, ids)], hovertext=names,
            # alternate label sides so neighbours in cost do not overwrite each other
            textposition=["top center" if i % 2 == 0 else "bottom center" for i in range(len(s))],
            textfont=dict(size=10), cliponaxis=False,
            marker=marker,
            hovertemplate="%{hovertext}<br>cost %{x:.4g}<br>accuracy %{y:.2%}<extra>single model</extra>",
        ))

    if point is not None:
        p_cost = point.get("avg_gmacs" if cost == "gmacs" else "avg_ms")
        if p_cost is not None:
            fig.add_trace(go.Scatter(
                x=[float(p_cost)], y=[float(point["accuracy"])], mode="markers",
                name=html_text(point.get("name", "current setting")),
                text=[html_text(point.get("label", "current setting"))],
                marker=dict(color=COLOURS["point"], size=16, symbol="star", line=dict(width=1, color="#333")),
                hovertemplate="%{text}<br>cost %{x:.4g}<br>accuracy %{y:.2%}<extra>current</extra>",
            ))
    return _layout(fig, x_title=label, log_x=log_x, height=height)


def from_model_zoo(singles: pd.DataFrame, *, hull: Any = None, cost: str = "gmacs", log_x: bool = True,
                   split: str | None = None, labels: Any = None, highlight: Any = None) -> go.Figure:
    """Accuracy-cost scatter of the bank's models: singles is ``analysis.single_models``' DataFrame
    (``display_name``, ``accuracy`` as a fraction, ``gmacs`` per image or ``ms`` per image), hull its
    SingleModelHull in the same unit; log_x draws the cost axis on a log scale. Returns a Plotly
    Figure; UsageError for an unknown cost axis."""
    fig = from_tradeoff(singles, hull=hull, cost=cost, log_x=log_x, height=420, labels=labels, highlight=highlight)
    if split:
        fig.update_yaxes(title_text=f"top-1 accuracy on {html_text(split, 200)}")
    return fig


def from_exit_fractions(fractions: Mapping[str, Sequence[float]], stage_names: Sequence[str]) -> go.Figure:
    """Grouped bars: share of images leaving at each stage, one bar group per setting (e.g. split).

    fractions: {setting name: exit fraction per stage (fractions in [0, 1], one per stage name)}.
    Returns a Plotly Figure; UsageError when a setting has the wrong number of stages."""
    fig = go.Figure()
    palette = [COLOURS["single"], COLOURS["chain"], COLOURS["frontier"], *COLOURS["extra"]]
    for i, (name, values) in enumerate(fractions.items()):
        values = np.asarray(values, dtype=float)
        if len(values) != len(stage_names):
            raise UsageError(f"exit fractions for {name!r} have {len(values)} stages, expected {len(stage_names)}")
        fig.add_trace(go.Bar(
            x=[html_text(n, 200) for n in stage_names], y=values, name=html_text(name, 200),
            marker_color=palette[i % len(palette)], text=[f"{v:.1%}" for v in values], textposition="auto",
            hovertemplate="%{x}<br>%{y:.1%} of images exit here<extra>%{fullData.name}</extra>",
        ))
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0))
    fig.update_yaxes(title_text="share of images exiting", tickformat=".0%", rangemode="tozero")
    return fig


def from_shift(curves: Mapping[str, Any], points: Mapping[str, Mapping] | None = None, *,
               hulls: Mapping[str, Any] | None = None, cost: str = "gmacs", log_x: bool = False,
               max_points: int | None = 400) -> go.Figure:
    """Distribution shift (paper, section 5.4): one cascade curve (a CascadeCurve) per image set, with
    optional single-model hulls and operating points ({set: {"accuracy", "avg_gmacs"/"avg_ms"}}), on
    the chosen cost axis ("gmacs" or "ms", per image). Returns a Plotly Figure."""
    label = _cost_label(cost)
    fig = go.Figure()
    palette = [COLOURS["chain"], COLOURS["single"], COLOURS["frontier"], *COLOURS["extra"]]
    for i, (name, curve) in enumerate(curves.items()):
        colour = palette[i % len(palette)]
        if hulls and hulls.get(name) is not None and len(hulls[name].costs) > 0:
            fig.add_trace(go.Scatter(
                x=np.asarray(hulls[name].costs, dtype=float), y=_pct(hulls[name].accuracies), mode="lines",
                name=f"{html_text(name, 200)}: best single model", line=dict(color=colour, dash="dot", width=1.5),
                hovertemplate="cost %{x:.4g}<br>accuracy %{y:.2%}<extra>%{fullData.name}</extra>",
            ))
        c_cost = _curve_cost(curve, cost)
        if c_cost is None:
            continue
        thresholds = np.asarray(curve.thresholds, dtype=float).reshape(len(c_cost), -1)
        order = np.argsort(c_cost, kind="stable")
        order = order[thin(len(order), max_points)]
        fig.add_trace(go.Scatter(
            x=c_cost[order], y=_pct(curve.accuracy)[order], mode="lines", name=f"{html_text(name, 200)}: cascade",
            text=[format_thresholds(thresholds[j]) for j in order], line=dict(color=colour, width=2),
            hovertemplate="%{text}<br>cost %{x:.4g}<br>accuracy %{y:.2%}<extra>%{fullData.name}</extra>",
        ))
        if points and name in points:
            p = points[name]
            p_cost = p.get("avg_gmacs" if cost == "gmacs" else "avg_ms")
            if p_cost is not None:
                fig.add_trace(go.Scatter(
                    x=[float(p_cost)], y=[float(p["accuracy"])], mode="markers",
                    name=f"{html_text(name, 200)}: fitted thresholds", marker=dict(color=colour, size=14, symbol="star",
                                                                   line=dict(width=1, color="#333")),
                    hovertemplate="cost %{x:.4g}<br>accuracy %{y:.2%}<extra>%{fullData.name}</extra>",
                ))
    return _layout(fig, x_title=label, log_x=log_x, height=440)


def from_confidences(confidences: np.ndarray, correct: np.ndarray, *, threshold: float | None = None,
                     bins: int = 40, name: str = "stage 1") -> go.Figure:
    """Histogram of one stage's confidence (N,), right and wrong predictions (correct, bool (N,))
    stacked, with the threshold drawn when given. Returns a Plotly Figure; UsageError when the two
    arrays differ in shape."""
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if confidences.shape != correct.shape:
        raise UsageError(f"confidences {confidences.shape} and correct {correct.shape} differ in shape")
    finite = np.isfinite(confidences)
    lo, hi = (float(confidences[finite].min()), float(confidences[finite].max())) if finite.any() else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fig = go.Figure()
    for label, mask, colour in (("right", correct, COLOURS["frontier"]), ("wrong", ~correct, COLOURS["point"])):
        counts, _ = np.histogram(confidences[mask & finite], bins=edges)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=f"{name}: {label}",
                             marker_color=colour, hovertemplate="confidence %{x:.3g}<br>%{y} images<extra></extra>"))
    if threshold is not None and np.isfinite(threshold):
        fig.add_vline(x=float(threshold), line_dash="dash", line_color=COLOURS["chain"],
                      annotation_text="threshold", annotation_position="top")
    fig.update_layout(barmode="stack", height=280, margin=dict(l=10, r=10, t=20, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0))
    fig.update_xaxes(title_text=f"{name} confidence (higher = more sure)")
    fig.update_yaxes(title_text="images")
    return fig


def clicked_curve_index(selection: Mapping | None, fig: go.Figure, trace_name: str = CHAIN_TRACE) -> int | None:
    """The curve point index a chart click chose (from ``st.plotly_chart(on_select=...)``'s state), or None."""
    if not selection:
        return None
    points = (selection.get("selection") or {}).get("points") or []
    names = [t.name for t in fig.data]
    for p in points:
        curve_number = p.get("curve_number")
        if curve_number is None or curve_number >= len(names) or names[curve_number] != trace_name:
            continue
        custom = p.get("customdata")
        if isinstance(custom, (list, tuple)) and custom:
            return int(custom[0])
        if isinstance(custom, (int, float)):
            return int(custom)
        index = p.get("point_index", p.get("point_number"))
        if index is not None:
            trace = fig.data[curve_number]
            return int(np.asarray(trace.customdata).reshape(-1)[int(index)])
    return None

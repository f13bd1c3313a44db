"""core/plots.py: figures carry exactly the numbers they are given, in the right traces."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from cascade_explorer.core import plots


def _singles():
    return pd.DataFrame({
        "id": ["a", "b", "c"], "display_name": ["A", "B", "C"],
        "gmacs": [0.1, 0.5, 2.0], "ms": [1.0, None, 9.0], "accuracy": [0.5, 0.7, 0.8],
    })


def _curve(p=7, n=2, seed=0):
    rng = np.random.default_rng(seed)
    fr = rng.dirichlet(np.ones(n), size=p)
    return SimpleNamespace(
        thresholds=np.sort(rng.random((p, n - 1)), axis=0), accuracy=rng.random(p),
        avg_gmacs=rng.random(p) * 2, avg_ms=rng.random(p) * 5, exit_fractions=fr)


def _trace(fig, name):
    matches = [t for t in fig.data if t.name == name]
    assert len(matches) == 1, [t.name for t in fig.data]
    return matches[0]


def test_tradeoff_has_every_layer_with_given_numbers():
    curve = _curve()
    hull = SimpleNamespace(costs=np.array([0.1, 0.5, 2.0]), accuracies=np.array([0.5, 0.7, 0.8]))
    frontier = pd.DataFrame({"models": [("a", "b"), ("a", "c")], "thresholds": [(0.3,), (0.6,)],
                             "accuracy": [0.72, 0.79], "avg_gmacs": [0.9, 0.3], "avg_ms": [2.0, 3.0],
                             "exit_fractions": [(0.5, 0.5), (0.8, 0.2)]})
    point = {"accuracy": 0.71, "avg_gmacs": 0.4, "avg_ms": 2.5}
    fig = plots.from_tradeoff(_singles(), hull=hull, curve=curve, frontier=frontier, point=point)
    assert isinstance(fig, go.Figure)
    chain = _trace(fig, plots.CHAIN_TRACE)
    order = np.argsort(curve.avg_gmacs, kind="stable")
    np.testing.assert_allclose(chain.x, curve.avg_gmacs[order])
    np.testing.assert_allclose(chain.y, curve.accuracy[order])
    # customdata maps each plotted point back to the curve row (used to set thresholds on click)
    np.testing.assert_array_equal(np.asarray(chain.customdata).ravel(), order)
    assert f"t1={float(curve.thresholds[order[0], 0])!r}<br>" in chain.text[0]   # exact: copied, it round-trips
    front = _trace(fig, "best cascades over all pairs")
    np.testing.assert_allclose(front.x, [0.3, 0.9])  # sorted by cost
    np.testing.assert_allclose(front.y, [0.79, 0.72])
    assert "a → c" in front.text[0] and "stage 1 80.0% / stage 2 20.0%" in front.text[0]
    cur = _trace(fig, "current setting")
    assert (cur.x[0], cur.y[0]) == (0.4, 0.71)
    singles = _trace(fig, "single models")
    assert list(singles.text) == ["A", "B", "C"]
    assert fig.layout.xaxis.title.text == plots.COST_LABELS["gmacs"]


def test_tradeoff_ms_axis_drops_models_without_latency_and_logs():
    fig = plots.from_tradeoff(_singles(), curve=_curve(), cost="ms", log_x=True)
    singles = _trace(fig, "single models")
    assert list(singles.text) == ["A", "C"]
    np.testing.assert_allclose(singles.x, [1.0, 9.0])
    assert fig.layout.xaxis.type == "log"


def test_tradeoff_rejects_unknown_cost():
    with pytest.raises(ValueError, match="cost axis"):
        plots.from_tradeoff(_singles(), cost="joules")


def test_clicked_curve_index_reads_customdata_and_ignores_other_traces():
    curve = _curve()
    fig = plots.from_tradeoff(_singles(), curve=curve)
    chain_no = [t.name for t in fig.data].index(plots.CHAIN_TRACE)
    single_no = [t.name for t in fig.data].index("single models")
    chain = fig.data[chain_no]
    sel = {"selection": {"points": [{"curve_number": chain_no, "point_index": 2, "customdata": [int(chain.customdata[2][0])]}]}}
    assert plots.clicked_curve_index(sel, fig) == int(np.argsort(curve.avg_gmacs, kind="stable")[2])
    # without customdata in the event, the point index is mapped through the trace
    sel = {"selection": {"points": [{"curve_number": chain_no, "point_index": 3}]}}
    assert plots.clicked_curve_index(sel, fig) == int(np.argsort(curve.avg_gmacs, kind="stable")[3])
    assert plots.clicked_curve_index({"selection": {"points": [{"curve_number": single_no, "point_index": 0}]}}, fig) is None
    assert plots.clicked_curve_index(None, fig) is None
    assert plots.clicked_curve_index({"selection": {"points": []}}, fig) is None


def test_exit_fractions_bars_and_shape_check():
    fig = plots.from_exit_fractions({"val": [0.6, 0.4], "shifted": [0.3, 0.7]}, ["A", "B"])
    assert [t.name for t in fig.data] == ["val", "shifted"]
    np.testing.assert_allclose(fig.data[1].y, [0.3, 0.7])
    with pytest.raises(ValueError, match="3 stages"):
        plots.from_exit_fractions({"val": [0.2, 0.3, 0.5]}, ["A", "B"])


def test_shift_figure_one_curve_and_point_per_split():
    fig = plots.from_shift({"val": _curve(seed=1), "val-c": _curve(seed=2)},
                           {"val": {"accuracy": 0.6, "avg_gmacs": 0.5}, "val-c": {"accuracy": 0.4, "avg_gmacs": 0.9}})
    names = [t.name for t in fig.data]
    assert names == ["val: cascade", "val: fitted thresholds", "val-c: cascade", "val-c: fitted thresholds"]
    assert fig.data[3].y[0] == 0.4


def test_confidence_histogram_counts_every_finite_sample():
    rng = np.random.default_rng(3)
    conf = rng.random(500)
    correct = rng.random(500) < 0.6
    fig = plots.from_confidences(conf, correct, threshold=0.5)
    total = sum(int(np.sum(t.y)) for t in fig.data)
    assert total == 500
    right = [t for t in fig.data if t.name.endswith("right")][0]
    assert int(np.sum(right.y)) == int(correct.sum())


def test_format_helpers():
    assert plots.format_thresholds([0.5, float("inf")]) == "t1=0.5, t2=never exit"
    assert plots.format_thresholds([]) == "none"
    assert plots.format_fractions([0.25, 0.75]) == "stage 1 25.0% / stage 2 75.0%"


def test_thin_keeps_ends_and_spreads_evenly():
    np.testing.assert_array_equal(plots.thin(5, 10), np.arange(5))
    np.testing.assert_array_equal(plots.thin(5, None), np.arange(5))
    idx = plots.thin(1301, 400)
    assert idx[0] == 0 and idx[-1] == 1300 and len(idx) == 400
    assert np.all(np.diff(idx) > 0) and np.diff(idx).max() <= 4
    with pytest.raises(ValueError):
        plots.thin(10, 1)


def test_thinned_curve_points_keep_their_own_thresholds():
    curve = _curve(p=1000)
    fig = plots.from_tradeoff(_singles(), curve=curve, max_points=50)
    chain = _trace(fig, plots.CHAIN_TRACE)
    assert len(chain.x) == 50
    rows = np.asarray(chain.customdata).ravel()
    np.testing.assert_allclose(chain.x, curve.avg_gmacs[rows])
    np.testing.assert_allclose(chain.y, curve.accuracy[rows])
    assert np.all(np.diff(chain.x) >= 0)
    for k in (0, 17, 49):
        assert f"t1={curve.thresholds[rows[k], 0]:.4g}" in chain.text[k]


def test_bank_labels_are_escaped_for_plotly():
    """Plotly renders a subset of HTML in text, legends and hover labels (links included)."""
    import pandas as pd

    evil = '<a href="http://evil.example">x</a>'
    singles = pd.DataFrame({"display_name": [evil], "accuracy": [0.5], "gmacs": [1.0], "ms": [None]})
    fig = plots.from_tradeoff(singles, chain_name=evil)
    assert all("<a" not in str(t) for trace in fig.data for t in (trace.text or ()))
    bars = plots.from_exit_fractions({evil: [0.5, 0.5]}, [evil, "b"])
    assert "<a" not in bars.data[0].name and "<a" not in bars.data[0].x[0] and "&lt;a" in bars.data[0].x[0]
    assert "%{fullData.name}" in bars.data[0].hovertemplate and "evil" not in bars.data[0].hovertemplate

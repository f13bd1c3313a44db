"""core/router_metrics.py: APGR, CPT, AUC and the oracle, against a brute-force loop over every
threshold, and against RouteLLM's own 10-bin computation re-implemented from its evaluate.py."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.router_metrics import (format_router_metrics, router_curve, router_metrics,
                                                  router_metrics_all_pairs)
from cascade_explorer.core.signals import ModelSignals

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def signals(conf, correct):
    conf = np.asarray(conf, dtype=float)
    return ModelSignals(conf, np.zeros(len(conf), dtype=np.int32), np.asarray(correct, dtype=bool))


def synthetic_pair(n=2000, seed=0, weak_skill=0.65, strong_skill=0.85):
    """A weak model whose confidence is informative (right answers tend to be surer), and a strong one."""
    rng = np.random.default_rng(seed)
    weak_right = rng.random(n) < weak_skill
    strong_right = np.where(weak_right, rng.random(n) < 0.95, rng.random(n) < (strong_skill - 0.6) / 0.4)
    conf = 1.0 / (1.0 + np.exp(-rng.normal(np.where(weak_right, 1.2, -0.2), 0.8)))
    return signals(conf, weak_right), signals(rng.random(n), strong_right)


# ----------------------------------------------------------------------------- brute force

def brute_points(conf, weak, strong):
    """(escalated share, accuracy) at every threshold: each distinct confidence, and +inf."""
    n = len(conf)
    points = []
    for t in sorted(set(float(c) for c in conf)) + [float("inf")]:
        escalated = [c < t for c in conf]
        right = sum(s if e else w for e, w, s in zip(escalated, weak, strong))
        points.append((sum(escalated) / n, right / n))
    return sorted(points)


def brute_metrics(conf, weak, strong, gmacs):
    points = brute_points(conf, weak, strong)
    weak_acc, strong_acc = points[0][1], points[-1][1]
    auc = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        auc += (x1 - x0) * (y0 + y1) / 2
    n = len(conf)
    out = {"auc_accuracy_escalated": auc, "weak_accuracy": weak_acc, "strong_accuracy": strong_acc,
           "oracle_accuracy": sum(w or s for w, s in zip(weak, strong)) / n,
           "oracle_avg_gmacs": gmacs[0] + gmacs[1] * sum(not w for w in weak) / n,
           "oracle_min_escalated": sum((not w) and s for w, s in zip(weak, strong)) / n}
    if strong_acc <= weak_acc:
        out["apgr"] = None
        return out
    out["apgr"] = (auc - weak_acc) / (strong_acc - weak_acc)
    for level in (20, 50, 80):
        target = weak_acc + level / 100 * (strong_acc - weak_acc)
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if y1 >= target - 1e-12:     # first segment reaching the target: walk along it
                out[f"cpt_{level}"] = x0 + (x1 - x0) * min(1.0, max(0.0, (target - y0) / (y1 - y0)))
                break
    return out


def assert_matches_brute(got, want):
    for key, value in want.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.3, 0.3001, 0.5, 0.9, 1.0]) | st.floats(0, 1),
                          st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_matches_a_brute_force_loop_over_every_threshold(rows):
    conf = [c for c, _, _ in rows]
    weak = [w for _, w, _ in rows]
    strong = [s for _, _, s in rows]
    got = router_metrics(signals(conf, weak), signals(np.zeros(len(rows)), strong), gmacs=(0.5, 2.0))
    assert_matches_brute(got, brute_metrics(conf, weak, strong, (0.5, 2.0)))
    curve = router_curve(signals(conf, weak), signals(np.zeros(len(rows)), strong))
    np.testing.assert_allclose(np.column_stack([curve["escalated"], curve["accuracy"]]),
                               brute_points(conf, weak, strong), atol=1e-12)


def test_ties_in_confidence_are_escalated_together_and_interpolated():
    # four samples at one confidence: one achievable step from 0 to 4 escalated, linear in between
    conf = [0.5, 0.5, 0.5, 0.5, 0.9, 0.9]
    weak = [False, False, False, False, True, True]
    strong = [True, True, True, True, True, True]
    got = router_metrics(signals(conf, weak), signals(np.zeros(6), strong), gmacs=(1.0, 3.0))
    curve = router_curve(signals(conf, weak), signals(np.zeros(6), strong))
    np.testing.assert_allclose(curve["escalated"], [0, 4 / 6, 1])
    np.testing.assert_allclose(curve["accuracy"], [2 / 6, 1, 1])
    # gap 4/6 recovered linearly over the first 4/6 of calls: CPT(x) = x * 4/6
    for level in (20, 50, 80):
        assert got[f"cpt_{level}"] == pytest.approx(level / 100 * 4 / 6)
        # a deterministic threshold must escalate the whole tied group
        assert got[f"cpt_{level}_achievable"] == pytest.approx(4 / 6)
        assert got[f"cpt_{level}_threshold"] == 0.9
    assert got["apgr"] == pytest.approx((got["auc_accuracy_escalated"] - 2 / 6) / (4 / 6))
    assert got["oracle_accuracy"] == 1.0 and got["oracle_avg_gmacs"] == pytest.approx(1 + 3 * 4 / 6)


def test_cpt_threshold_reaches_the_target_in_the_cascade_engine():
    weak, strong = synthetic_pair()
    got = router_metrics(weak, strong, gmacs=(0.1, 1.0))
    for level in (20, 50, 80):
        result = evaluate_cascade([weak, strong], [got[f"cpt_{level}_threshold"]], (0.1, 1.0))
        target = got["weak_accuracy"] + level / 100 * (got["strong_accuracy"] - got["weak_accuracy"])
        assert result.accuracy >= target - 1e-12
        assert result.escalated_fraction == pytest.approx(got[f"cpt_{level}_achievable"])
        assert got[f"cpt_{level}"] <= got[f"cpt_{level}_achievable"] <= got[f"cpt_{level}"] + 1 / len(weak)


@pytest.mark.parametrize("strong_skill", [0.65, 0.5])
def test_strong_not_better_than_weak_leaves_pgr_undefined(strong_skill):
    rng = np.random.default_rng(1)
    weak_right = np.arange(1000) < 650
    strong_right = np.arange(1000) < round(strong_skill * 1000)
    got = router_metrics(signals(rng.random(1000), weak_right), signals(rng.random(1000), strong_right),
                         gmacs=(1, 2))
    assert got["apgr"] is None and got["cpt_50"] is None and got["cpt_50_threshold"] is None
    assert "not more accurate" in got["reason"] and "undefined" in got["reason"]
    assert got["weak_accuracy"] == 0.65 and got["auc_accuracy_escalated"] is not None
    assert format_router_metrics(got).startswith("PGR undefined")


def test_oracle_counts_the_weak_model_always_running():
    weak = signals([0.9, 0.8, 0.2, 0.1], [True, False, False, True])
    strong = signals([0, 0, 0, 0], [False, True, False, True])
    got = router_metrics(weak, strong, gmacs=(0.25, 4.0))
    assert got["oracle_accuracy"] == 0.75                  # samples 0, 1, 3
    assert got["oracle_escalated"] == 0.5                  # the weak model is wrong on 1 and 2
    assert got["oracle_min_escalated"] == 0.25             # only sample 1 gains from escalating
    assert got["oracle_avg_gmacs"] == 0.25 + 4.0 * 0.5
    assert router_metrics(weak, strong)["oracle_avg_gmacs"] is None


def test_all_pairs_equal_the_pairwise_function():
    rng = np.random.default_rng(3)
    models = {name: signals(rng.choice([0.2, 0.4, 0.6, 0.8], 300) if name == "b" else rng.random(300),
                            rng.random(300) < skill)
              for name, skill in (("a", 0.5), ("b", 0.6), ("c", 0.8))}
    costs = {"a": 0.1, "b": 0.3, "c": 1.0}
    rows = router_metrics_all_pairs(models, costs)
    assert [(r["first"], r["second"]) for r in rows] == [("a", "b"), ("a", "c"), ("b", "c")]
    for row in rows:
        want = router_metrics(models[row["first"]], models[row["second"]],
                              gmacs=(costs[row["first"]], costs[row["second"]]))
        assert {k: v for k, v in row.items() if k not in ("first", "second")} == want
    every = router_metrics_all_pairs(list(models.values()))
    assert len(every) == 6 and {(r["first"], r["second"]) for r in every} == {
        (i, j) for i in range(3) for j in range(3) if i != j}


@pytest.mark.parametrize("call, message", [
    (lambda a, b: router_metrics(a, "x"), "second must be ModelSignals"),
    (lambda a, b: router_metrics(a, b.subset(np.arange(3))), "same samples"),
    (lambda a, b: router_metrics(a.subset(np.arange(0)), b.subset(np.arange(0))), "at least one sample"),
    (lambda a, b: router_metrics(a, b, gmacs=(1.0,)), "one gmacs value per stage"),
    (lambda a, b: router_metrics_all_pairs([a]), "at least 2 models"),
    (lambda a, b: router_metrics_all_pairs({"a": a, "b": b}, {"a": 1.0}), r"gmacs lacks a cost for \['b'\]"),
])
def test_bad_arguments_are_named(call, message):
    a, b = synthetic_pair(n=10)
    with pytest.raises(UsageError, match=message):
        call(a, b)


# ----------------------------------------------------------------------------- RouteLLM's computation

def routellm_metrics(win_rates, weak_right, strong_right, num_results=10):
    """RouteLLM's numbers, re-implemented from lm-sys/RouteLLM routellm/evals: benchmarks.py
    (thresholds = the edges of pd.qcut(win_rates, num_results); route to the strong model when
    win_rate >= threshold, > for the last edge) and evaluate.py generate_results (np.trapz over those
    points; CPT by np.interp with accuracy as x; APGR = (AUC - weak AUC) / (strong AUC - weak AUC)).
    Accuracies in percent as there."""
    _, thresholds = pd.qcut(win_rates, num_results, retbins=True)
    rows = []
    for i, threshold in enumerate(thresholds):
        selection = win_rates >= threshold if i != len(thresholds) - 1 else win_rates > threshold
        results = np.where(selection, strong_right, weak_right)
        rows.append({"strong_percentage": selection.mean() * 100, "accuracy": results.sum() / len(results) * 100})
    df = pd.DataFrame(rows).sort_values(by=["strong_percentage"])
    weak_accuracy, strong_accuracy = weak_right.mean() * 100, strong_right.mean() * 100
    cpt = [float(np.interp(pct * (strong_accuracy - weak_accuracy) + weak_accuracy, df["accuracy"],
                           df["strong_percentage"])) for pct in (0.2, 0.5, 0.8)]
    share = df["strong_percentage"] / 100
    auc = np.trapezoid(df["accuracy"], share)
    weak_auc = np.trapezoid(np.full(len(df), weak_accuracy), share)
    strong_auc = np.trapezoid(np.full(len(df), strong_accuracy), share)
    return {"apgr": (auc - weak_auc) / (strong_auc - weak_auc), "cpt": cpt, "auc": auc / 100, "points": df}


def test_routellm_with_one_bin_per_sample_equals_the_exact_apgr():
    weak, strong = synthetic_pair(n=500, seed=4)
    assert len(np.unique(weak.confidence)) == 500
    theirs = routellm_metrics(1.0 - weak.confidence, weak.correct, strong.correct, num_results=500)
    ours = router_metrics(weak, strong)
    assert len(theirs["points"]) == 501   # every achievable point
    assert theirs["apgr"] == pytest.approx(ours["apgr"], rel=1e-9)
    assert theirs["auc"] == pytest.approx(ours["auc_accuracy_escalated"], rel=1e-9)


def test_routellm_ten_bins_read_the_exact_curve_through_11_of_its_points():
    weak, strong = synthetic_pair(n=3000, seed=5)
    theirs = routellm_metrics(1.0 - weak.confidence, weak.correct, strong.correct)
    ours = router_metrics(weak, strong)
    curve = router_curve(weak, strong)
    # their 11 points lie on the exact curve: the difference is only the interpolation between them
    points = theirs["points"]
    np.testing.assert_allclose(np.interp(points["strong_percentage"] / 100, curve["escalated"], curve["accuracy"]),
                               points["accuracy"] / 100, atol=1e-12)
    assert len(points) == 11
    # the same curve read two ways: chords between 11 of its points, against all of it
    assert abs(theirs["apgr"] - ours["apgr"]) > 1e-3
    ours_cpt = [ours["cpt_20"], ours["cpt_50"], ours["cpt_80"]]
    assert all(abs(t / 100 - o) > 1e-4 for t, o in zip(theirs["cpt"], ours_cpt))
    # ours is where the exact curve first reaches the target (theirs is where a chord does)
    gap = ours["strong_accuracy"] - ours["weak_accuracy"]
    for level, share in zip((0.2, 0.5, 0.8), ours_cpt):
        target = ours["weak_accuracy"] + level * gap
        assert np.interp(share, curve["escalated"], curve["accuracy"]) == pytest.approx(target, abs=1e-12)
        before = curve["escalated"] < share
        assert (curve["accuracy"][before] < target).all()

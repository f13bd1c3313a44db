"""Router-standard metrics of 2-model cascades, exact over every threshold.

A 2-model cascade is a router: the weak (first, cheaper) model always runs and answers when its
confidence is >= the threshold t; otherwise the sample is escalated ("a call to the strong model").
Lowering t from +inf to the smallest confidence moves the share of calls to the strong model from
1 to 0. The metrics below are those of RouteLLM:

    Ong, Almahairi, Wu, Chiang, Wu, Gonzalez, Kadous, Stoica, "RouteLLM: Learning to Route LLMs with
    Preference Data", 2024 (arXiv:2406.18665), sec. 3.1 / 5, and its code lm-sys/RouteLLM,
    routellm/evals/evaluate.py (generate_results: pct_call_metric, auc_metric, apgr_metric).

- PGR(s), performance gap recovered at a share s of calls to the strong model:
  (accuracy(s) - weak accuracy) / (strong accuracy - weak accuracy).
- APGR: the average of PGR over s in [0, 1], i.e. (AUC - weak) / (strong - weak), where
- AUC (`auc_accuracy_escalated`): the area under accuracy against the escalated share, s in [0, 1].
- CPT(x%), call-performance threshold: the smallest share of calls to the strong model whose
  accuracy recovers x% of the gap, accuracy(s) >= weak + x (strong - weak); here x = 20, 50, 80.
- Oracle: per sample the better of the two: the weak model's answer when it is right, else the
  strong model's. In a cascade the weak model always runs, so its average cost is
  gmacs[0] + gmacs[1] * (share where the weak model is wrong) (`oracle_avg_gmacs`, escalating every
  wrong answer; `oracle_min_escalated` is the smallest share that reaches the same accuracy: only
  where the weak model is wrong and the strong one right, RouteLLM's "optimal" router).

Exact curve. Every distinct confidence of the weak model is a threshold (plus +inf), giving the
achievable points (escalated share, accuracy) from (0, weak) to (1, strong); samples with equal
confidence are escalated together, so one point per distinct confidence. Between two achievable
points the curve is linear: that is what a threshold with random tie-breaking achieves in expectation
(escalating a random part of the next group of samples), so every s in [0, 1] is achievable and
AUC, APGR and CPT are computed on this piecewise-linear curve, in exact counts, with no binning.
A deterministic threshold reaches the CPT target at the next achievable point: its threshold and
share are reported too (`cpt_XX_threshold`, `cpt_XX_achievable`); without ties it is at most 1/N
above the interpolated share.

RouteLLM's evaluate.py instead evaluates 11 thresholds (the edges of 10 equal-count bins of the
router score, pd.qcut), integrates with np.trapz over those 11 points and reads CPT with np.interp
(accuracy as the x axis, which assumes accuracy rises with the share). Its chords cut corners of the
curve, so its numbers differ from the exact ones (see tests/test_router_metrics.py); with one bin
per sample and no ties it uses every achievable point and its APGR equals the exact one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .curves import exact_threshold_sweep
from .engine import check_costs
from .errors import UsageError
from .signals import ModelSignals
from .validate import check_sequence

CPT_LEVELS = (0.2, 0.5, 0.8)
# Counts are integers; the gap share target is a float (0.2 * 15 = 3.0000000000000004).
_COUNT_TOL = 1e-9


def _check_pair(first, second) -> int:
    for name, value in (("first", first), ("second", second)):
        if not isinstance(value, ModelSignals):
            raise UsageError(f"{name} must be ModelSignals (see signals.model_signals), got {type(value).__name__}")
    if len(first) != len(second):
        raise UsageError(f"first and second must cover the same samples, got {len(first)} and {len(second)}")
    if len(first) == 0:
        raise UsageError("router metrics need at least one sample; first and second are empty")
    return len(first)


def router_curve(first: ModelSignals, second: ModelSignals) -> dict:
    """The exact curve of the cascade first -> second over every threshold.

    Returns {"threshold", "escalated", "accuracy"}: arrays, escalated share ascending from 0 (the
    smallest confidence as threshold: nothing escalated) to 1 (+inf: everything escalated). At
    threshold t the samples with first.confidence >= t are answered by `first`, the rest by `second`.
    """
    n = _check_pair(first, second)
    thresholds, n_exit, n_correct = exact_threshold_sweep(first.confidence, first.correct, second.correct)
    return {"threshold": thresholds, "escalated": (n - n_exit) / n, "accuracy": n_correct / n}


def _metrics(thresholds, n_exit, n_correct, weak: np.ndarray, strong: np.ndarray, gmacs) -> dict:
    """Metrics from the sweep of one pair (thresholds ascending, escalated counts ascending)."""
    n = len(weak)
    x = (n - n_exit).astype(np.int64)          # escalated counts, 0 .. n
    y = n_correct.astype(np.int64)             # correct counts, weak .. strong
    weak_c, strong_c = int(y[0]), int(y[-1])
    # trapezoids in counts: exact integers (halves), scaled once
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]))) / 2.0
    auc = area / (n * n)
    oracle_right = weak | strong
    out = {
        "n": n,
        "weak_accuracy": weak_c / n,
        "strong_accuracy": strong_c / n,
        "auc_accuracy_escalated": auc,
        "oracle_accuracy": float(np.count_nonzero(oracle_right) / n),
        "oracle_escalated": float(np.count_nonzero(~weak) / n),
        "oracle_min_escalated": float(np.count_nonzero(~weak & strong) / n),
        "oracle_avg_gmacs": None,
        "apgr": None,
        "reason": None,
    }
    if gmacs is not None:
        out["oracle_avg_gmacs"] = float(gmacs[0] + gmacs[1] * out["oracle_escalated"])
    gap = strong_c - weak_c
    for level in CPT_LEVELS:
        key = f"cpt_{round(level * 100)}"
        out[key] = out[f"{key}_threshold"] = out[f"{key}_achievable"] = None
    if gap <= 0:
        out["reason"] = (f"the second model is not more accurate than the first ({strong_c / n:.4f} vs "
                         f"{weak_c / n:.4f} on these {n} samples): no performance gap to recover, so PGR, "
                         "APGR and CPT are undefined")
        return out
    out["apgr"] = (area / n - weak_c) / gap
    for level in CPT_LEVELS:
        key = f"cpt_{round(level * 100)}"
        target = weak_c + level * gap
        k = int(np.argmax(y >= target - _COUNT_TOL * gap))   # y[-1] = strong_c >= target: always found
        if k == 0:   # cannot happen for level > 0 (y[0] = weak_c < target); kept for safety
            share = 0.0
        else:
            fraction = (target - y[k - 1]) / (y[k] - y[k - 1])
            share = (x[k - 1] + min(max(fraction, 0.0), 1.0) * (x[k] - x[k - 1])) / n
        out[key] = float(share)
        out[f"{key}_threshold"] = float(thresholds[k])
        out[f"{key}_achievable"] = float(x[k] / n)
    return out


def router_metrics(first: ModelSignals, second: ModelSignals, gmacs=None) -> dict:
    """Router metrics of the cascade first -> second, exact over every threshold (see module doc).

    first, second: ModelSignals of the same samples (first = the weak model, which always runs);
    gmacs: optional (g_first, g_second) cost per sample, for `oracle_avg_gmacs`.

    Returns a dict (shares and accuracies as fractions in [0, 1]):
      apgr, cpt_20, cpt_50, cpt_80 (None when the second model is not more accurate; `reason` says
      why), cpt_XX_threshold (the confidence threshold of the first achievable point reaching the
      target) and cpt_XX_achievable (its escalated share), auc_accuracy_escalated, weak_accuracy,
      strong_accuracy, oracle_accuracy, oracle_escalated (every wrong weak answer escalated),
      oracle_min_escalated (only where the strong model is right), oracle_avg_gmacs (None without
      gmacs), n, reason (None, or why PGR is undefined).
    """
    _check_pair(first, second)
    g = None if gmacs is None else check_costs(gmacs, 2, "gmacs")
    thresholds, n_exit, n_correct = exact_threshold_sweep(first.confidence, first.correct, second.correct)
    return _metrics(thresholds, n_exit, n_correct, first.correct, second.correct, g)


def router_metrics_all_pairs(signals, gmacs=None, *, cheaper_first: bool = True, pairs=None) -> list[dict]:
    """`router_metrics` of every ordered pair of models (first -> second), each first model's
    confidences sorted once for all its pairs.

    signals: a mapping name -> ModelSignals, or a list of ModelSignals (named by index), all on the
    same samples; gmacs: optional list (or mapping name -> cost) of one cost per model;
    cheaper_first: with gmacs, keep only pairs whose first model is strictly cheaper (the cascades
    of this project); without gmacs every ordered pair is returned. pairs: only these (first,
    second) pairs (e.g. those on a frontier: all pairs of 500 models are 124,750 sweeps). Each row is
    router_metrics' dict plus "first" and "second" (names or indices), in the order of `signals`.
    """
    if isinstance(signals, Mapping):
        names, stages = list(signals.keys()), list(signals.values())
    else:
        stages = check_sequence(signals, "signals")
        names = list(range(len(stages)))
    if len(stages) < 2:
        raise UsageError(f"signals needs at least 2 models to form a pair, got {len(stages)}")
    for i, stage in enumerate(stages):
        if not isinstance(stage, ModelSignals):
            raise UsageError(f"signals[{names[i]!r}] must be ModelSignals (see signals.model_signals), "
                             f"got {type(stage).__name__}")
    lengths = {len(s) for s in stages}
    if len(lengths) != 1:
        raise UsageError(f"all models must cover the same samples, got lengths {sorted(lengths)}")
    if lengths == {0}:
        raise UsageError("router metrics need at least one sample; the signals are empty")
    costs = None
    if gmacs is not None:
        if isinstance(gmacs, Mapping):
            missing = [name for name in names if name not in gmacs]
            if missing:
                raise UsageError(f"gmacs lacks a cost for {missing}; give one per model of signals")
            gmacs = [gmacs[name] for name in names]
        costs = check_costs(gmacs, len(stages), "gmacs")
    wanted = None if pairs is None else {tuple(pair) for pair in pairs}
    rows = []
    for i, first in enumerate(stages):
        if wanted is not None and not any(pair[0] == names[i] for pair in wanted):
            continue
        order = np.argsort(-first.confidence, kind="stable")
        for j, second in enumerate(stages):
            if i == j or (cheaper_first and costs is not None and not costs[i] < costs[j]):
                continue
            if wanted is not None and (names[i], names[j]) not in wanted:
                continue
            thresholds, n_exit, n_correct = exact_threshold_sweep(first.confidence, first.correct,
                                                                  second.correct, order=order)
            metrics = _metrics(thresholds, n_exit, n_correct, first.correct, second.correct,
                               None if costs is None else costs[[i, j]])
            rows.append({"first": names[i], "second": names[j], **metrics})
    return rows


def format_router_metrics(metrics: Mapping) -> str:
    """One line for a report: 'APGR 0.812, CPT 20/50/80% at 3.1/13.0/26.9% escalated, oracle 91.2%'."""
    if metrics.get("apgr") is None:
        return f"PGR undefined: {metrics.get('reason')}"
    cpts = "/".join(f"{100 * metrics[f'cpt_{p}']:.1f}" for p in (20, 50, 80))
    return (f"APGR {metrics['apgr']:.3f}, CPT 20/50/80% at {cpts}% escalated, "
            f"oracle accuracy {metrics['oracle_accuracy']:.1%}")



# The router metrics a table of cascades carries as columns (leaderboard, `pareto`).
ROUTER_COLUMNS = ("apgr", "cpt_20", "cpt_50", "cpt_80", "auc_accuracy_escalated", "oracle_accuracy",
                  "oracle_avg_gmacs")


def with_router_columns(frame, table, columns=ROUTER_COLUMNS):
    """`frame` (cascades with a "models" column of tuples, e.g. a frontier) plus `columns` of
    `table` (router_metrics_all_pairs rows as a DataFrame: "first", "second", metrics) for each
    2-model row; NaN for other chain lengths, where the metrics are not defined. A new DataFrame,
    rows and index unchanged."""
    import pandas as pd

    lookup = {(row["first"], row["second"]): row for row in table.to_dict(orient="records")} if len(table) else {}
    out = frame.copy()
    for column in columns:
        values = []
        for models in frame["models"]:
            row = lookup.get(tuple(models)) if len(models) == 2 else None
            value = None if row is None else row.get(column)
            values.append(float("nan") if value is None else float(value))
        out[column] = pd.Series(values, index=frame.index, dtype=float)
    return out

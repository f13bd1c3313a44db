"""Slow, obviously-correct reference implementations (loops over samples and thresholds).

Used only by the tests to check the vectorised engine; written for clarity, not speed.
"""

from __future__ import annotations

import math


def ref_softmax_row(row, temperature=1.0):
    scaled = [float(v) / temperature for v in row]
    top = max(scaled)
    exps = [math.exp(v - top) for v in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def ref_confidence_from_probs_row(probs, criterion):
    ordered = sorted((float(p) for p in probs), reverse=True)
    if criterion == "max_softmax":
        return ordered[0]
    if criterion == "softmax_margin":
        return ordered[0] - ordered[1]
    if criterion == "logit_margin":
        tiny = 2.2250738585072014e-308   # smallest normal float64: an underflowed runner-up
        return math.log(max(ordered[0], tiny)) - math.log(max(ordered[1], tiny))
    if criterion == "entropy":
        return sum(p * math.log(p) for p in ordered if p > 0)
    raise ValueError(criterion)


def ref_confidence_row(row, criterion, temperature=1.0):
    if criterion == "logit_margin":
        ordered = sorted((float(v) for v in row), reverse=True)
        return (ordered[0] - ordered[1]) / temperature
    return ref_confidence_from_probs_row(ref_softmax_row(row, temperature), criterion)


def ref_confidence(logits, criterion, temperature=1.0):
    return [ref_confidence_row(row, criterion, temperature) for row in logits]


def ref_argmax(values):
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def ref_nll(logits, labels, temperature):
    total = 0.0
    for row, label in zip(logits, labels):
        total -= math.log(ref_softmax_row(row, temperature)[label])
    return total / len(labels)


def ref_chain(logits_list, labels, criterion, temperatures, ensemble):
    """Per stage: (confidences, predictions, correct) lists."""
    out = []
    for stage in range(len(logits_list)):
        confs, preds = [], []
        for n in range(len(labels)):
            if not ensemble or stage == 0:
                row = logits_list[stage][n]
                confs.append(ref_confidence_row(row, criterion, temperatures[stage]))
                preds.append(ref_argmax([float(v) for v in row]))
            else:
                rows = [ref_softmax_row(logits_list[k][n], temperatures[k]) for k in range(stage + 1)]
                mean = [sum(r[c] for r in rows) / len(rows) for c in range(len(rows[0]))]
                confs.append(ref_confidence_from_probs_row(mean, criterion))
                preds.append(ref_argmax(mean))
        out.append((confs, preds, [p == int(y) for p, y in zip(preds, labels)]))
    return out


def ref_exit_stages(confidences, thresholds):
    n_stages = len(confidences)
    stages = []
    for n in range(len(confidences[0])):
        exit_at = n_stages - 1
        for i in range(n_stages - 1):
            if thresholds[i] != math.inf and confidences[i][n] >= thresholds[i]:
                exit_at = i
                break
        stages.append(exit_at)
    return stages


def ref_evaluate(confidences, corrects, thresholds, gmacs):
    """(accuracy, avg cost, exit fractions) by walking every sample through the cascade."""
    stages = ref_exit_stages(confidences, thresholds)
    n = len(stages)
    n_correct = 0
    total_cost = 0.0
    counts = [0] * len(confidences)
    for sample, stage in enumerate(stages):
        n_correct += bool(corrects[stage][sample])
        total_cost += sum(gmacs[: stage + 1])
        counts[stage] += 1
    return n_correct / n, total_cost / n, [c / n for c in counts]


def ref_pair_curve(conf0, correct0, correct1, gmacs):
    """Every distinct threshold of stage 0 plus +inf, each evaluated from scratch: {t: (acc, cost)}."""
    out = {}
    for t in sorted(set(float(c) for c in conf0)) + [math.inf]:
        acc, cost, _ = ref_evaluate([conf0, conf0], [correct0, correct1], [t], gmacs)
        out[t] = (acc, cost)
    return out


def ref_pareto(cost, accuracy):
    """Indices not dominated by any other point; of exact duplicates only the first. A more accurate
    point dearer by at most 1e-12 (relative) also dominates: that is float rounding, not cost."""
    keep = []
    for i in range(len(cost)):
        dominated = False
        for j in range(len(cost)):
            if j == i:
                continue
            no_worse = cost[j] <= cost[i] and accuracy[j] >= accuracy[i]
            better = cost[j] < cost[i] or accuracy[j] > accuracy[i]
            rounding_tie = accuracy[j] > accuracy[i] and cost[j] - cost[i] <= 1e-12 * max(abs(cost[i]), abs(cost[j]))
            if (no_worse and (better or j < i)) or rounding_tie:
                dominated = True
                break
        if not dominated:
            keep.append(i)
    return keep


def ref_hull_cost_at(costs, accuracies, target):
    """Cheapest expected cost reaching `target` by running one model or randomly switching between two."""
    best = math.inf
    for i in range(len(costs)):
        if accuracies[i] >= target:
            best = min(best, costs[i])
        for j in range(len(costs)):
            lo, hi = accuracies[i], accuracies[j]
            if lo < target <= hi:
                share_j = (target - lo) / (hi - lo)
                best = min(best, (1 - share_j) * costs[i] + share_j * costs[j])
    return math.nan if best == math.inf else best


def ref_ordered_pair_curves(signals, gmacs):
    """(a, b, curve) for every ordered pair with a not more expensive than b, each curve from scratch."""
    for a in signals:
        for b in signals:
            if a == b or gmacs[a] > gmacs[b]:
                continue
            yield a, b, ref_pair_curve(signals[a].confidence, signals[a].correct, signals[b].correct,
                                       [gmacs[a], gmacs[b]])


def ref_pair_frontier(signals, gmacs):
    """All ordered pairs (first not more expensive), every threshold, from scratch; then the global
    Pareto set as a set of rounded (cost, accuracy) points."""
    points = []
    for a, b, curve in ref_ordered_pair_curves(signals, gmacs):
        for t, (acc, cost) in curve.items():
            points.append((cost, acc, a, b, t))
    keep = ref_pareto([p[0] for p in points], [p[1] for p in points])
    return [points[i] for i in keep]


def ref_hull_accuracy_at(costs, accuracies, budget):
    """Best expected accuracy within `budget` by running one model or randomly switching between two."""
    best = -math.inf
    for i in range(len(costs)):
        if costs[i] <= budget:
            best = max(best, accuracies[i])
        for j in range(len(costs)):
            lo, hi = costs[i], costs[j]
            if lo < budget <= hi:
                share_j = (budget - lo) / (hi - lo)
                best = max(best, (1 - share_j) * accuracies[i] + share_j * accuracies[j])
    return math.nan if best == -math.inf else best


def ref_best_cascade(rows, target_accuracy=None, max_gmacs=None, max_escalated=None):
    """rows: list of (accuracy, cost, escalated). Index of the best row under the constraints, or None."""
    best = None
    for index, (acc, cost, esc) in enumerate(rows):
        if target_accuracy is not None and acc < target_accuracy:
            continue
        if max_gmacs is not None and cost > max_gmacs:
            continue
        if max_escalated is not None and esc > max_escalated:
            continue
        if best is None:
            best = index
            continue
        b_acc, b_cost, _ = rows[best]
        if target_accuracy is not None:
            better = cost < b_cost or (cost == b_cost and acc > b_acc)
        else:
            better = acc > b_acc or (acc == b_acc and cost < b_cost)
        if better:
            best = index
    return best

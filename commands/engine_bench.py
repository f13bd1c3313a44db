"""The engine benchmark behind `cascade-explorer bench`: speed and memory of the engine on a synthetic bank.

Every figure is a median over --repeats runs, next to a naive baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from .common import say

from cascade_explorer.core.curves import cascade_curve, pareto_front
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.search import pair_frontier
from cascade_explorer.core.signals import model_signals
from cascade_explorer.core.synthetic import make_synthetic_bank

CRITERION = "max_softmax"
GRID_POINTS = 100          # the naive sweep: a 100-point threshold grid, each point evaluated from scratch
NAIVE_PAIR_SAMPLE = 8      # pairs timed the naive way; the total is extrapolated to all pairs
TARGETS_S = {"evaluate_3_model": 0.020, "pair_curve": 0.020, "pair_search": 5.0}
TARGET_SEARCH_SPEEDUP = 20.0


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _naive_cascade_loop(stages, thresholds) -> float:
    """Algorithm 1 sample by sample (Python loop over precomputed signals): the naive evaluator."""
    confs = [s.confidence.tolist() for s in stages]
    corrects = [s.correct.tolist() for s in stages]
    last = len(stages) - 1
    n_correct = 0
    for n in range(len(confs[0])):
        stage = last
        for i in range(last):
            if confs[i][n] >= thresholds[i]:
                stage = i
                break
        n_correct += corrects[stage][n]
    return n_correct / len(confs[0])


def _grid(confidence) -> np.ndarray:
    return np.quantile(confidence, np.linspace(0, 1, GRID_POINTS))


def _naive_pair_curve(first, second, gmacs) -> tuple[np.ndarray, np.ndarray]:
    """100 thresholds, each evaluated from scratch with evaluate_cascade."""
    points = [evaluate_cascade([first, second], [t], gmacs) for t in _grid(first.confidence)]
    return np.array([p.avg_gmacs for p in points]), np.array([p.accuracy for p in points])


def _check_args(args) -> None:
    for name, low in (("models", 3), ("samples", 1), ("classes", 2), ("repeats", 1), ("large_models", 0)):
        value = getattr(args, name)
        if value < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.large_models and args.large_models < 2:
        raise UsageError(f"--large-models must be 0 (skip) or >= 2, got {args.large_models}")


def _stage(name: str, json_mode: bool) -> None:
    if not json_mode:
        say(f"  ... {name}", err=True, flush=True)


def run(args) -> int:
    _check_args(args)
    n_models, n, n_classes, repeats = args.models, args.samples, args.classes, args.repeats
    results: dict = {}
    _stage(f"building a synthetic bank: {n_models} models x {n} samples x {n_classes} classes", args.json)
    t0 = time.perf_counter()
    bank = make_synthetic_bank(n_models, n, n_classes, seed=0)
    signals = bank.all_signals(CRITERION)
    setup_s = time.perf_counter() - t0
    ids = bank.model_ids

    # signals from real logits: one model's float16 logits saved and memory-mapped like a bank
    _stage("deriving signals from memory-mapped float16 logits", args.json)
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        path = Path(tmp) / "logits.npy"
        np.save(path, bank.logits(ids[len(ids) // 2], np.float16))
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        signals_s, derived = _median_time(lambda: model_signals(mapped, bank.labels, CRITERION), repeats)
        tracemalloc.start()
        model_signals(mapped, bank.labels, CRITERION)
        _, signals_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del mapped
    reference = bank.signals(ids[len(ids) // 2], CRITERION)
    results["signals_from_logits"] = {
        "median_s": signals_s, "logits_mb": n * n_classes * 2 / 1e6, "peak_mb": signals_peak / 1e6,
        "float64_copy_mb": n * n_classes * 8 / 1e6,
        # the synthetic signals describe float32 logits; the bank file rounds them to float16
        "prediction_agreement_vs_float32": float(np.mean(derived.prediction == reference.prediction)),
        "max_confidence_diff_vs_float32": float(np.max(np.abs(derived.confidence - reference.confidence))),
        "what": "model_signals on one model's memory-mapped float16 logits, in row chunks",
    }

    # 1. one 3-model cascade
    _stage("evaluating one 3-model cascade", args.json)
    three = [ids[len(ids) // 4], ids[len(ids) // 2], ids[-1]]
    stages = [signals[m] for m in three]
    thresholds = [float(np.quantile(stages[0].confidence, 0.4)), float(np.quantile(stages[1].confidence, 0.5))]
    costs = [bank.gmacs[m] for m in three]
    fast_s, result = _median_time(lambda: evaluate_cascade(stages, thresholds, costs, models=three), max(repeats, 5))
    naive_s, naive_acc = _median_time(lambda: _naive_cascade_loop(stages, thresholds), repeats)
    assert abs(naive_acc - result.accuracy) < 1e-12, "naive and vectorised cascade disagree"
    results["evaluate_3_model"] = {
        "median_s": fast_s, "naive_median_s": naive_s, "speedup": naive_s / fast_s,
        "target_s": TARGETS_S["evaluate_3_model"], "meets_target": fast_s <= TARGETS_S["evaluate_3_model"],
        "naive": "Algorithm 1 as a per-sample Python loop over the same signals",
    }

    # 2. one pair's full curve
    _stage("one pair's curve over every distinct threshold", args.json)
    pair = [signals[ids[len(ids) // 3]], signals[ids[-1]]]
    pair_costs = [bank.gmacs[ids[len(ids) // 3]], bank.gmacs[ids[-1]]]
    fast_s, curve = _median_time(lambda: cascade_curve(pair, pair_costs), max(repeats, 5))
    naive_s, _ = _median_time(lambda: _naive_pair_curve(pair[0], pair[1], pair_costs), repeats)
    results["pair_curve"] = {
        "median_s": fast_s, "points": len(curve), "naive_median_s": naive_s, "naive_points": GRID_POINTS,
        "speedup": naive_s / fast_s, "target_s": TARGETS_S["pair_curve"],
        "meets_target": fast_s <= TARGETS_S["pair_curve"],
        "naive": f"{GRID_POINTS}-point threshold grid, each point evaluated from scratch",
    }

    # 3. all ordered pairs + global frontier
    _stage(f"all ordered pairs of {n_models} models + global frontier", args.json)
    search_repeats = min(repeats, 3)
    fast_s, frontier = _median_time(lambda: pair_frontier(signals, bank.gmacs, bank.ms), search_repeats)
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1:]]
    rng = random.Random(0)
    sample = rng.sample(pairs, min(NAIVE_PAIR_SAMPLE, len(pairs)))

    def naive_sample():
        cost, acc = [], []
        for a, b in sample:
            c, x = _naive_pair_curve(signals[a], signals[b], [bank.gmacs[a], bank.gmacs[b]])
            cost.append(c), acc.append(x)
        return pareto_front(np.concatenate(cost), np.concatenate(acc))

    sample_s, _ = _median_time(naive_sample, 1)
    naive_total = sample_s / len(sample) * len(pairs)
    results["pair_search"] = {
        "median_s": fast_s, "pairs": len(pairs), "frontier_points": len(frontier),
        "naive_extrapolated_s": naive_total, "naive_timed_pairs": len(sample),
        "speedup": naive_total / fast_s, "target_s": TARGETS_S["pair_search"],
        "target_speedup": TARGET_SEARCH_SPEEDUP,
        "meets_target": fast_s <= TARGETS_S["pair_search"] and naive_total / fast_s >= TARGET_SEARCH_SPEEDUP,
        "naive": (f"{GRID_POINTS}-point grid per pair, each point evaluated from scratch; timed on "
                  f"{len(sample)} random pairs and extrapolated to all {len(pairs)} pairs"),
        "exact": "fast search uses every distinct threshold of every pair (not a grid)",
    }

    # 4. peak memory of the pair search: it holds signals, never logits
    tracemalloc.start()
    pair_frontier(signals, bank.gmacs, bank.ms)
    _, search_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    signal_bytes = sum(s.confidence.nbytes + s.prediction.nbytes + s.correct.nbytes for s in signals.values())
    results["memory"] = {
        "pair_search_peak_mb": search_peak / 1e6, "signals_mb": signal_bytes / 1e6,
        "all_logits_float16_mb": bank.logits_nbytes / 1e6,
        "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        "what": "tracemalloc peak of new allocations during pair_frontier, next to the size of the signals "
                "it reads and of the logits it never loads",
    }

    # 5. many models
    if args.large_models:
        _stage(f"pair search at {args.large_models} models", args.json)
        t0 = time.perf_counter()
        big = make_synthetic_bank(args.large_models, n, n_classes, seed=1)
        big_signals = big.all_signals(CRITERION)
        big_setup = time.perf_counter() - t0
        big_s, big_frontier = _median_time(lambda: pair_frontier(big_signals, big.gmacs, big.ms), 1)
        m = args.large_models
        results["pair_search_large"] = {
            "models": m, "pairs": m * (m - 1) // 2, "median_s": big_s, "runs": 1,
            "frontier_points": len(big_frontier), "signals_setup_s": big_setup,
        }
    else:
        results["pair_search_large"] = None

    report = {
        "config": {"models": n_models, "samples": n, "classes": n_classes, "repeats": repeats,
                   "large_models": args.large_models, "criterion": CRITERION},
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpu_count": os.cpu_count(),
                    "platform": platform.platform()},
        "setup_s": setup_s,
        "results": results,
    }
    if args.json:
        say(json.dumps(report, indent=2, allow_nan=False))
    else:
        say(_table(report))
    return 0


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.2f} ms"


def _table(report: dict) -> str:
    c, r = report["config"], report["results"]
    lines = [f"cascade-explorer bench: {c['models']} models x {c['samples']:,} samples x {c['classes']} classes, "
             f"criterion {c['criterion']}, medians of {c['repeats']} runs ({report['machine']['cpu_count']} CPUs)",
             f"synthetic bank + signals of all models: {_fmt_s(report['setup_s'])}", ""]
    header = f"{'benchmark':<34}{'fast (median)':>15}{'naive (median)':>17}{'ratio':>9}{'target':>16}  ok"
    lines += [header, "-" * len(header)]
    rows = [("evaluate one 3-model cascade", r["evaluate_3_model"], "<= 20 ms"),
            (f"pair curve ({r['pair_curve']['points']:,} thresholds)", r["pair_curve"], "<= 20 ms"),
            (f"all {r['pair_search']['pairs']:,} pairs + frontier", r["pair_search"], "<= 5 s, >=20x")]
    for name, item, target in rows:
        naive = item.get("naive_median_s", item.get("naive_extrapolated_s"))
        mark = "*" if "naive_extrapolated_s" in item else ""
        lines.append(f"{name:<34}{_fmt_s(item['median_s']):>15}{_fmt_s(naive) + mark:>17}"
                     f"{item['speedup']:>8.0f}x{target:>16}  {'yes' if item['meets_target'] else 'NO'}")
    lines += ["",
              f"naive: 3-model = {r['evaluate_3_model']['naive']}; curve = {r['pair_curve']['naive']} "
              f"(only {GRID_POINTS} points vs {r['pair_curve']['points']:,} exact).",
              f"* {r['pair_search']['naive']}.",
              f"pair search frontier: {r['pair_search']['frontier_points']:,} cascades "
              f"(exact: every distinct threshold of every pair)."]
    s = r["signals_from_logits"]
    lines.append(f"signals from memory-mapped float16 logits ({s['logits_mb']:.0f} MB): {_fmt_s(s['median_s'])} "
                 f"per model, peak {s['peak_mb']:.0f} MB (a float64 copy would be {s['float64_copy_mb']:.0f} MB); "
                 f"predictions agree with the float32 synthetic signals on "
                 f"{100 * s['prediction_agreement_vs_float32']:.2f}% (float16 rounding)")
    m = r["memory"]
    lines.append(f"memory: pair search peak {m['pair_search_peak_mb']:.0f} MB over the {m['signals_mb']:.0f} MB of "
                 f"signals it reads; all logits as float16 would be {m['all_logits_float16_mb']:,.0f} MB "
                 f"(never loaded); process max RSS {m['process_max_rss_mb']:.0f} MB")
    big = r["pair_search_large"]
    if big:
        lines.append(f"{big['models']} models ({big['pairs']:,} pairs): pair search + frontier {_fmt_s(big['median_s'])} "
                     f"(1 run), {big['frontier_points']:,} frontier cascades; signals built in "
                     f"{_fmt_s(big['signals_setup_s'])}")
    return "\n".join(lines)

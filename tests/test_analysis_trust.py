"""BankAnalysis wiring of issue 11: exact intervals, router metrics, temperature fits with flags and
certified thresholds, each checked against an independent computation on the raw .npy files
(scipy, brute-force loops), not against the modules the facade calls."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from scipy.stats import binom, binomtest

from cascade_explorer.core import analysis, protocol
from cascade_explorer.core.bank import BankWriter
from cascade_explorer.core import errors
from cascade_explorer.core.errors import UsageError
from test_analysis import MODELS, build_random_bank, raw, raw_ids, raw_labels

N_CLASSES = 6


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    return build_random_bank(tmp_path_factory.mktemp("bank") / "random-bank", n=400, shifted=False)


def _part(bank_path, on, fraction=0.5, seed=0):
    mask = protocol.calibration_mask(raw_ids(bank_path, "val"), fraction, seed)
    return np.flatnonzero(mask if on == "calibration" else ~mask)


def _signals(bank_path, model_id, rows, temperature=1.0):
    """Max-softmax confidence and correctness by plain numpy (float64), independent of core.criteria."""
    z = raw(bank_path, "val", model_id).astype(np.float64)[rows] / temperature
    p = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    labels = raw_labels(bank_path, "val")[rows]
    return p.max(axis=1), p.argmax(axis=1) == labels


def test_evaluate_reports_exact_intervals_for_accuracy_and_escalated_share(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "large"), thresholds=(0.45,))
    got = analysis.evaluate(bank_path, spec, on="eval", n_bootstrap=200)
    rows = _part(bank_path, "eval")
    conf, right_tiny = _signals(bank_path, "tiny", rows)
    _, right_large = _signals(bank_path, "large", rows)
    escalated = conf < 0.45
    correct = np.where(escalated, right_large, right_tiny)
    cost = np.where(escalated, MODELS["tiny"][0] + MODELS["large"][0], MODELS["tiny"][0])
    n = len(rows)
    for key, k in (("accuracy_ci", correct.sum()), ("escalated_fraction_ci", escalated.sum())):
        want = binomtest(int(k), n).proportion_ci(0.95, method="exact")
        np.testing.assert_allclose(got[key], (want.low, want.high), rtol=1e-9, atol=1e-12)
    assert got["escalated_fraction"] == pytest.approx(escalated.mean())
    low, high = got["avg_gmacs_ci"]
    assert low <= cost.mean() <= high and low < high
    assert "Clopper-Pearson" in got["ci_methods"]["accuracy"]
    assert "Clopper-Pearson" in got["ci_methods"]["escalated_fraction"]
    assert "bootstrap" in got["ci_methods"]["avg_gmacs"] and got["ci_level"] == 0.95
    # n_bootstrap=0: no intervals and no methods claimed
    bare = analysis.evaluate(bank_path, spec, on="eval", n_bootstrap=0)
    assert bare["accuracy_ci"] is None and bare["escalated_fraction_ci"] is None and bare["ci_methods"] is None


def _router_reference(conf, right_weak, right_strong):
    """Accuracy against escalated share at every threshold by a loop, trapezoid area, APGR."""
    n = len(conf)
    points = []
    for t in sorted(set(conf.tolist())) + [np.inf]:
        answered = conf >= t
        points.append((np.mean(~answered), np.mean(np.where(answered, right_weak, right_strong))))
    points.sort()
    area = sum((x1 - x0) * (y1 + y0) / 2 for (x0, y0), (x1, y1) in zip(points, points[1:]))
    weak, strong = right_weak.mean(), right_strong.mean()
    cpt = {}
    for level in (0.2, 0.5, 0.8):
        target = weak + level * (strong - weak)
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if y1 >= target - 1e-12:
                cpt[level] = x0 + (x1 - x0) * (target - y0) / (y1 - y0) if y1 != y0 else x1
                break
    return {"auc": area, "apgr": (area - weak) / (strong - weak), "cpt": cpt, "n": n,
            "oracle": np.mean(right_weak | right_strong)}


def test_evaluate_reports_router_metrics_of_a_pair_matching_a_loop(bank_path):
    spec = analysis.CascadeSpec(models=("small", "large"), thresholds=(0.5,))
    got = analysis.evaluate(bank_path, spec, on="all")["router_metrics"]
    rows = np.arange(len(raw_labels(bank_path, "val")))
    conf, right_small = _signals(bank_path, "small", rows)
    _, right_large = _signals(bank_path, "large", rows)
    want = _router_reference(conf, right_small, right_large)
    assert got["auc_accuracy_escalated"] == pytest.approx(want["auc"], abs=1e-12)
    assert got["apgr"] == pytest.approx(want["apgr"], abs=1e-9)
    for level, key in ((0.2, "cpt_20"), (0.5, "cpt_50"), (0.8, "cpt_80")):
        assert got[key] == pytest.approx(want["cpt"][level], abs=1e-9)
    assert got["oracle_accuracy"] == pytest.approx(want["oracle"])
    assert got["oracle_avg_gmacs"] == pytest.approx(MODELS["small"][0] + MODELS["large"][0] * np.mean(~right_small))
    # 3 models: no router metrics; the table has one row per cheaper-first pair
    three = analysis.evaluate(bank_path, replace(spec, models=("tiny", "small", "large"), thresholds=(0.5, 0.5)))
    assert three["router_metrics"] is None
    table = analysis.router_table(bank_path)
    assert len(table) == 6 and set(zip(table["first"], table["second"])) >= {("small", "large"), ("tiny", "medium")}
    row = table[(table["first"] == "small") & (table["second"] == "large")].iloc[0]
    assert row["apgr"] == pytest.approx(want["apgr"], abs=1e-9)
    # only some pairs (a frontier's): the same rows as the full table, nothing else computed
    some = analysis.router_table(bank_path, pairs=[("small", "large"), ("tiny", "medium")])
    assert sorted(zip(some["first"], some["second"])) == [("small", "large"), ("tiny", "medium")]
    full = table.set_index(["first", "second"]).loc[[("small", "large"), ("tiny", "medium")]].reset_index()
    pd.testing.assert_frame_equal(some.sort_values(["first", "second"]).reset_index(drop=True),
                                  full.sort_values(["first", "second"]).reset_index(drop=True), check_like=True)
    with pytest.raises(UsageError, match="^models: router metrics"):
        analysis.router(bank_path, replace(spec, models=("tiny", "small", "large")))


def _temperature_bank(path: Path, n: int = 300) -> Path:
    """'overconfident': right ~45% of the time but with logits scaled x40 (NLL optimum T >> 20);
    'blind': logits unrelated to the labels, sharp (worse than uniform at any finite T);
    'good': logits drawn with the true class lifted, temperature near 1."""
    rng = np.random.default_rng(5)
    writer = BankWriter(path, create={
        "dataset": {"name": "temperature-test", "description": "t", "licence": "CC0", "caveats": ["random"],
                    "task": "image-classification"},
        "class_names": [f"c{i}" for i in range(N_CLASSES)]})
    labels = rng.integers(0, N_CLASSES, size=n)
    ids = [f"s{i:04d}" for i in range(n)]
    writer.add_split("val", ids, [f"{i}.jpg" for i in ids], labels, description="val")
    for model_id, gmacs in (("overconfident", 0.1), ("blind", 0.2), ("good", 1.0)):
        writer.add_model(model_id, display_name=model_id, backend="external", source={"kind": "user"}, gmacs=gmacs)
    over = rng.normal(0, 1, size=(n, N_CLASSES))
    over[np.arange(n), labels] += 1.0
    blind = rng.normal(0, 5, size=(n, N_CLASSES))
    good = rng.normal(0, 1, size=(n, N_CLASSES))
    good[np.arange(n), labels] += 3.0
    for model_id, logits in (("overconfident", 40 * over), ("blind", blind), ("good", good)):
        writer.add_logits(model_id, "val", logits.astype(np.float32))
    return path


def _nll_optimum(logits, labels):
    """NLL-optimal T by scipy's bounded search over a very wide log-T range (independent reference)."""
    z = logits.astype(np.float64)

    def nll(log_t):
        scaled = z / np.exp(log_t)
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(len(z)), labels]))
    return float(np.exp(minimize_scalar(nll, bounds=(np.log(1e-4), np.log(1e4)), method="bounded",
                                        options={"xatol": 1e-9}).x)), nll


def test_temperature_fits_are_not_clipped_and_flag_what_they_should(tmp_path):
    path = _temperature_bank(tmp_path / "bank")
    spec = analysis.CascadeSpec(models=("overconfident", "blind", "good"), thresholds=(0.5, 0.5), temperature="fit")
    a = analysis.BankAnalysis(path)
    got = a.evaluate(spec, on="eval")
    rows = np.flatnonzero(protocol.calibration_mask([f"s{i:04d}" for i in range(300)], 0.5, 0))
    labels = np.load(path / "splits" / "val" / "labels.npy")[rows]
    logits = {m: np.load(path / "splits" / "val" / "logits" / f"{m}.npy")[rows] for m in spec.models}

    want_t, nll = _nll_optimum(logits["overconfident"], labels)
    assert want_t > 20          # the old fit clipped this to 20
    over = got["temperature_fits"]["overconfident"]
    assert over["temperature"] == pytest.approx(want_t, rel=1e-4)
    assert got["temperatures"]["overconfident"] == pytest.approx(want_t, rel=1e-4)
    assert over["nll_after"] == pytest.approx(nll(np.log(want_t)), rel=1e-6)
    assert over["nll_before"] == pytest.approx(nll(0.0), rel=1e-6) and over["nll_after"] < np.log(N_CLASSES)

    blind = got["temperature_fits"]["blind"]
    assert "worse_than_uniform" in blind["flags"]
    assert any(w.startswith("temperature of blind:") and "no better than" in w for w in got["temperature_warnings"])

    good = got["temperature_fits"]["good"]
    want_good, _ = _nll_optimum(logits["good"], labels)
    assert good["flags"] == [] and good["temperature"] == pytest.approx(want_good, rel=1e-4)
    assert good["ece_after"] < good["ece_before"]
    assert not any(w.startswith("temperature of good") for w in got["temperature_warnings"])
    # the detailed fits come from the same memoised fit as the temperatures (one fit per model)
    fits = a.temperature_fits(spec)
    assert fits["overconfident"].temperature == got["temperatures"]["overconfident"]
    # temperature 'none': no fits reported, no warnings
    plain = a.evaluate(replace(spec, temperature="none"))
    assert plain["temperature_fits"] == {} and plain["temperature_warnings"] == []


def test_certified_fit_holds_its_p_value_and_is_more_conservative_than_the_plain_fit(tmp_path):
    path = build_random_bank(tmp_path / "big", n=3000, shifted=False)
    spec = analysis.CascadeSpec(models=("small", "large"))
    a = analysis.BankAnalysis(path)
    target = 0.8
    certificate = a.certify(spec, delta=0.1, target_accuracy=target)
    assert certificate.certified
    thresholds = a.fit_for_target(spec, target_accuracy=target, certify=0.1)
    assert thresholds == certificate.thresholds
    plain = a.fit_for_target(spec, target_accuracy=target)
    assert thresholds[0] > plain[0]    # a margin for the draw: escalate more than the in-sample fit

    # independent check on the raw calibration rows: errors at the certified threshold, binomial tail
    rows = _part(path, "calibration")
    conf, right_small = _signals(path, "small", rows)
    _, right_large = _signals(path, "large", rows)
    wrong = np.where(conf >= thresholds[0], ~right_small, ~right_large)
    p_value = binom.cdf(int(wrong.sum()), len(rows), 1 - target)
    assert p_value <= 0.1 and certificate.p_value == pytest.approx(p_value, rel=1e-9)
    assert certificate.accuracy == pytest.approx(1 - wrong.mean())


def test_uncertifiable_target_says_how_many_samples_would_be_needed(bank_path):
    spec = analysis.CascadeSpec(models=("small", "large"))
    last = _signals(bank_path, "large", _part(bank_path, "calibration"))[1].mean()
    target = last - 0.02   # reachable on the calibration part, not certifiable from ~200 samples
    with pytest.raises(getattr(errors, "NotCertifiedError", ()), match="calibration samples would be needed") as caught:
        analysis.fit_for_target(bank_path, spec, target_accuracy=target, certify=0.05)
    certificate = caught.value.certificate
    assert not certificate.certified and certificate.samples_needed > certificate.n_calibration
    # the plain fit finds thresholds (no guarantee)
    assert len(analysis.fit_for_target(bank_path, spec, target_accuracy=target)) == 1
    with pytest.raises(UsageError, match="^delta must be strictly between 0 and 1"):
        analysis.certify(bank_path, spec, delta=1.5, target_accuracy=target)


def test_plain_fit_for_an_accuracy_drop_measures_it_against_the_last_model(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "large"))
    fit = analysis.fit_for_target_detailed(bank_path, spec, max_accuracy_drop=0.03)
    rows = _part(bank_path, "calibration")
    conf, right_tiny = _signals(bank_path, "tiny", rows)
    _, right_large = _signals(bank_path, "large", rows)
    accuracy = np.where(conf >= fit.thresholds[0], right_tiny, right_large).mean()
    assert accuracy >= right_large.mean() - 0.03 - 1e-12
    assert fit.target == {"max_accuracy_drop": 0.03}
    with pytest.raises(UsageError, match="exactly one target"):
        analysis.fit_for_target(bank_path, spec, max_accuracy_drop=0.03, target_accuracy=0.5)

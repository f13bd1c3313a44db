"""The analysis facade on a small random bank, checked against the engine called directly on the
raw .npy files (an independent path: no bank memoisation, no facade caching)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade_explorer.core import analysis, protocol
from cascade_explorer.core.bank import BankWriter
from cascade_explorer.core.curves import single_model_hull
from cascade_explorer.core.engine import evaluate_cascade
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.signals import SignalSource
from cascade_explorer.core.signals import chain_signals, model_signals
from cascade_explorer.core.temperature import fit_temperature

# id -> (gmacs, skill: how far the true class's logit is lifted, latency ms)
MODELS = {"tiny": (0.05, 0.8, 1.0), "small": (0.3, 1.6, 2.5), "medium": (1.2, 2.4, 6.0), "large": (4.0, 3.2, 20.0)}
N_CLASSES = 6
DEVICE = "test cpu"


def build_random_bank(path: Path, n: int = 240, seed: int = 0, shifted: bool = True) -> Path:
    """A bank of random but model-like logits: split 'val' and (optionally) a noisier 'val-shifted'
    with the same sample ids; model 'large' has no logits on the shifted split."""
    rng = np.random.default_rng(seed)
    writer = BankWriter(path, create={
        "dataset": {"name": "random-test", "description": "random logits for tests", "licence": "CC0",
                    "caveats": ["random"], "task": "image-classification"},
        "class_names": [f"class_{i}" for i in range(N_CLASSES)]})
    labels = rng.integers(0, N_CLASSES, size=n)
    ids = [f"img_{i:05d}" for i in range(n)]
    splits = {"val": 1.0}
    if shifted:
        splits["val-shifted"] = 2.0
    for split in splits:
        writer.add_split(split, ids, [f"{split}/{i}.jpg" for i in ids], labels, description=split)
    for model_id, (gmacs, _, ms) in MODELS.items():
        writer.add_model(model_id, display_name=model_id.title(), backend="external", source={"kind": "user"},
                         gmacs=gmacs, latency_ms={DEVICE: {"batch_1": ms}})
    for split, noise in splits.items():
        for model_id, (_, skill, _) in MODELS.items():
            if split == "val-shifted" and model_id == "large":
                continue
            logits = rng.normal(0.0, noise, size=(n, N_CLASSES))
            logits[np.arange(n), labels] += skill
            dtype = np.float16 if model_id == "small" else np.float32
            writer.add_logits(model_id, split, logits.astype(dtype))
    return path


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    return build_random_bank(tmp_path_factory.mktemp("bank") / "random-bank")


def raw(bank_path: Path, split: str, model_id: str) -> np.ndarray:
    return np.load(bank_path / "splits" / split / "logits" / f"{model_id}.npy", allow_pickle=False)


def raw_labels(bank_path: Path, split: str) -> np.ndarray:
    return np.load(bank_path / "splits" / split / "labels.npy", allow_pickle=False)


def raw_ids(bank_path: Path, split: str) -> list[str]:
    lines = (bank_path / "splits" / split / "samples.csv").read_text().splitlines()[1:]
    return [line.split(",")[0] for line in lines]


def direct(bank_path, split, models, criterion, thresholds, *, rows=None, temperatures=None, ensemble=False):
    """Engine on the raw files, bypassing the facade."""
    labels = raw_labels(bank_path, split)
    logits = [raw(bank_path, split, m) for m in models]
    stages = chain_signals(logits, labels, criterion, temperatures=temperatures, ensemble=ensemble)
    if rows is not None:
        stages = [s.subset(rows) for s in stages]
    return evaluate_cascade(stages, thresholds, [MODELS[m][0] for m in models],
                            ms=[MODELS[m][2] for m in models], models=models)


@pytest.mark.parametrize("criterion", ["max_softmax", "softmax_margin", "logit_margin", "entropy"])
@pytest.mark.parametrize("models, thresholds", [
    (("tiny", "large"), (0.5,)), (("small", "medium", "large"), (0.6, 0.4)), (("medium",), ())])
def test_evaluate_on_all_samples_equals_the_engine(bank_path, criterion, models, thresholds):
    if criterion in ("logit_margin", "entropy") and thresholds:
        thresholds = tuple(-0.5 if criterion == "entropy" else 0.8 for _ in thresholds)
    spec = analysis.CascadeSpec(models=models, criterion=criterion, thresholds=thresholds)
    got = analysis.evaluate(str(bank_path), spec, split="val", on="all", device=DEVICE)
    want = direct(bank_path, "val", models, criterion, thresholds)
    assert got["n_samples"] == want.n_samples == 240
    assert got["accuracy"] == want.accuracy
    assert got["avg_gmacs"] == pytest.approx(want.avg_gmacs, rel=1e-12)
    assert got["avg_ms"] == pytest.approx(want.avg_ms, rel=1e-12)
    assert got["worst_gmacs"] == pytest.approx(sum(MODELS[m][0] for m in models))
    np.testing.assert_allclose(got["exit_fractions"], want.exit_fractions)
    np.testing.assert_array_equal(got.result.prediction, want.prediction)
    lo, hi = got["accuracy_ci"]
    assert lo <= got["accuracy"] <= hi
    assert got["temperatures"] == {m: 1.0 for m in models}


def test_evaluate_on_held_out_part(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "medium"), thresholds=(0.45,))
    got = analysis.evaluate(bank_path, spec, on="eval", calibration_fraction=0.3, seed=4, device=DEVICE)
    held_out = ~protocol.calibration_mask(raw_ids(bank_path, "val"), 0.3, seed=4)
    want = direct(bank_path, "val", ("tiny", "medium"), "max_softmax", (0.45,), rows=held_out)
    assert got["n_samples"] == held_out.sum() == want.n_samples
    assert got["accuracy"] == want.accuracy
    assert got["avg_gmacs"] == pytest.approx(want.avg_gmacs)
    np.testing.assert_array_equal(got.index, np.flatnonzero(held_out))
    assert got["split"] == "val" and got["on"] == "eval"


def test_speedup_is_against_the_hull_of_the_same_samples(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "large"), thresholds=(0.4,))
    for on in ("all", "eval"):
        got = analysis.evaluate(bank_path, spec, on=on)
        rows = got.index if got.index is not None else slice(None)
        labels = raw_labels(bank_path, "val")[rows]
        accuracies = [np.mean(raw(bank_path, "val", m)[rows].argmax(axis=1) == labels) for m in MODELS]
        hull = single_model_hull(np.array([v[0] for v in MODELS.values()]), np.array(accuracies))
        expected = hull.cost_at(got["accuracy"]) / got["avg_gmacs"]
        if np.isnan(expected):
            assert got["speedup"] is None
        else:
            assert got["speedup"] == pytest.approx(float(expected))


def test_fitted_temperatures_use_only_the_calibration_part(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "large"), thresholds=(0.5,), temperature="fit")
    got = analysis.evaluate(bank_path, spec, on="eval", seed=1)
    calibration = protocol.calibration_mask(raw_ids(bank_path, "val"), 0.5, seed=1)
    labels = raw_labels(bank_path, "val")
    for model_id in spec.models:
        expected = fit_temperature(raw(bank_path, "val", model_id), labels, calibration).temperature
        assert got["temperatures"][model_id] == pytest.approx(expected, rel=1e-9)
        assert got["temperatures"][model_id] != 1.0
    temps = [got["temperatures"][m] for m in spec.models]
    want = direct(bank_path, "val", spec.models, "max_softmax", (0.5,), rows=~calibration, temperatures=temps)
    assert got["accuracy"] == want.accuracy
    np.testing.assert_allclose(got["exit_fractions"], want.exit_fractions)


def test_ensemble_matches_chain_signals(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "small", "large"), thresholds=(0.6, 0.5), ensemble=True)
    got = analysis.evaluate(bank_path, spec, on="all")
    want = direct(bank_path, "val", spec.models, "max_softmax", (0.6, 0.5), ensemble=True)
    assert got["accuracy"] == want.accuracy
    np.testing.assert_allclose(got["exit_fractions"], want.exit_fractions)
    plain = analysis.evaluate(bank_path, analysis.CascadeSpec(models=spec.models, thresholds=(0.6, 0.5)), on="all")
    assert not np.array_equal(plain.result.prediction, got.result.prediction)


@pytest.mark.parametrize("target", [{"target_accuracy": 0.55}, {"max_gmacs": 1.0}, {"max_escalated": 0.3}])
def test_fit_for_target_is_brute_force_optimal_on_the_calibration_part(bank_path, target):
    spec = analysis.CascadeSpec(models=("small", "large"))
    thresholds = analysis.fit_for_target(bank_path, spec, seed=2, **target)
    calibration = protocol.calibration_mask(raw_ids(bank_path, "val"), 0.5, seed=2)
    labels = raw_labels(bank_path, "val")[calibration]
    first = model_signals(raw(bank_path, "val", "small")[calibration], labels, "max_softmax")
    second = model_signals(raw(bank_path, "val", "large")[calibration], labels, "max_softmax")
    points = []
    for t in list(np.unique(first.confidence)) + [np.inf]:
        exits = first.confidence >= t
        points.append((np.where(exits, first.correct, second.correct).mean(), 0.3 + 4.0 * (1 - exits.mean()),
                       1 - exits.mean()))
    chosen = evaluate_cascade([first, second], thresholds, [0.3, 4.0])
    (kind, value), = target.items()
    if kind == "target_accuracy":
        best_cost = min(p[1] for p in points if p[0] >= value)
        assert chosen.accuracy >= value and chosen.avg_gmacs == pytest.approx(best_cost)
    else:
        column = 1 if kind == "max_gmacs" else 2
        best_accuracy = max(p[0] for p in points if p[column] <= value + 1e-12)
        assert chosen.accuracy == pytest.approx(best_accuracy)
    # the facade's evaluation on the calibration part reports the same point
    on_calibration = analysis.evaluate(bank_path, analysis.CascadeSpec(models=spec.models, thresholds=thresholds),
                                       on="calibration", seed=2)
    assert on_calibration["accuracy"] == chosen.accuracy


def test_fit_for_target_out_of_reach_names_the_best(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "small"))
    with pytest.raises(UsageError, match="best achievable"):
        analysis.fit_for_target(bank_path, spec, target_accuracy=0.999)
    with pytest.raises(UsageError, match="exactly one target"):
        analysis.fit_for_target(bank_path, spec)


def test_single_models_and_frontier(bank_path):
    singles = analysis.single_models(bank_path, "val")
    assert list(singles["id"]) == list(MODELS)
    labels = raw_labels(bank_path, "val")
    for row in singles.itertuples():
        assert row.accuracy == np.mean(raw(bank_path, "val", row.id).argmax(axis=1) == labels)
        assert row.ms == MODELS[row.id][2]
    front = analysis.frontier(bank_path, split="val")
    assert len(front) > 0
    assert np.all(np.diff(front["avg_gmacs"].to_numpy()) > 0)
    assert np.all(np.diff(front["accuracy"].to_numpy()) > 0)
    for row in front.head(5).itertuples():
        check = analysis.evaluate(bank_path, analysis.CascadeSpec(models=tuple(row.models),
                                                                  thresholds=tuple(row.thresholds)), on="all")
        assert check["accuracy"] == pytest.approx(row.accuracy)
        assert check["avg_gmacs"] == pytest.approx(row.avg_gmacs)
    three = analysis.frontier(bank_path, split="val", max_stages=3, shortlist=["small", "tiny", "large"])
    # the 3-model frontier includes the pair frontier's options, so it is never worse
    for row in front.itertuples():
        at_most = three[three["avg_gmacs"] <= row.avg_gmacs + 1e-12]["accuracy"]
        assert len(at_most) and at_most.max() >= row.accuracy - 1e-12


def test_shift_uses_source_temperatures_and_thresholds(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "medium"), temperature="fit")
    out = analysis.shift(bank_path, spec, "val", "val-shifted", target_accuracy=0.5)
    assert out["source"]["thresholds"] == out["target"]["thresholds"] == out["thresholds"]
    assert out["source"]["temperatures"] == out["target"]["temperatures"]
    temps = [out["temperatures"][m] for m in spec.models]
    held_out = ~protocol.calibration_mask(raw_ids(bank_path, "val-shifted"), 0.5, seed=0)
    want = direct(bank_path, "val-shifted", spec.models, "max_softmax", out["thresholds"], rows=held_out,
                  temperatures=temps)
    assert out["target"]["accuracy"] == want.accuracy
    assert out["target"]["accuracy"] < out["source"]["accuracy"]   # the shifted split is noisier
    assert out["delta"]["accuracy"] == pytest.approx(out["target"]["accuracy"] - out["source"]["accuracy"])
    assert out["fitted"]["target"] == {"target_accuracy": 0.5}


@pytest.mark.parametrize("spec, split, message", [
    (dict(models=("tiny", "huge"), thresholds=(0.5,)), "val", "unknown model 'huge'.*tiny, small, medium, large"),
    (dict(models=("large", "tiny"), thresholds=(0.5,)), "val", "cheapest first: tiny,large"),
    (dict(models=("tiny", "large"), thresholds=(0.5, 0.6)), "val", "needs 1 threshold"),
    (dict(models=("tiny", "tiny"), thresholds=(0.5,)), "val", "appears twice"),
    (dict(models=("tiny", "large"), thresholds=(0.5,)), "test", "unknown split 'test'.*val, val-shifted"),
    (dict(models=("tiny", "large"), thresholds=(0.5,)), "val-shifted", "'large' has no logits for split"),
])
def test_usage_mistakes_are_clear(bank_path, spec, split, message):
    with pytest.raises(UsageError, match=message):
        analysis.evaluate(bank_path, analysis.CascadeSpec(**spec), split=split)


def test_bad_spec_values():
    with pytest.raises(UsageError, match="unknown confidence criterion"):
        analysis.CascadeSpec(models=("a",), criterion="vibes")
    with pytest.raises(UsageError, match="temperature mode"):
        analysis.CascadeSpec(models=("a",), temperature="auto")


@pytest.mark.parametrize("fields, message", [
    (dict(models=("a", "b"), thresholds=(0.5,), ensemble="false"), "ensemble must be True or False"),
    (dict(models=None), "models must be a list"),
    (dict(models=("a", 3)), "models must be model ids"),
    (dict(models=("a", "b"), thresholds=None), "thresholds must be a list"),
    (dict(models=("a", "b"), thresholds=0.5), "thresholds must be a list"),
    (dict(models=("a", "b"), thresholds=("abc",)), r"thresholds\[0\] must be a number"),
    (dict(models=("a", "b"), thresholds=(float("nan"),)), r"thresholds\[0\] must be a finite number"),
])
def test_spec_refuses_values_it_would_coerce(fields, message):
    with pytest.raises(UsageError, match=message):
        analysis.CascadeSpec(**fields)


def test_spec_keeps_infinite_thresholds():
    assert analysis.CascadeSpec(models=("a", "b"), thresholds=[float("-inf")]).thresholds == (float("-inf"),)


@pytest.mark.parametrize("call, message", [
    (lambda b, s: analysis.evaluate(b, s, seed="x"), "seed must be an integer"),
    (lambda b, s: analysis.evaluate(b, s, seed=1.7), "seed must be a whole number"),
    (lambda b, s: analysis.evaluate(b, s, on="all", calibration_fraction=1.5), "calibration_fraction must be < 1"),
    (lambda b, s: analysis.evaluate(b, s, device="gpu-xyz"), "device 'gpu-xyz' has no latency.*'test cpu'"),
    (lambda b, s: analysis.frontier(b, device="gpu-xyz"), "device 'gpu-xyz'"),
    (lambda b, s: analysis.frontier(b, grid_size=0), "grid_size must be >= 2"),
    (lambda b, s: analysis.frontier(b, max_stages=2.7), "max_stages must be a whole number"),
    (lambda b, s: analysis.curve(b, s, grid_size="x"), "grid_size must be an integer"),
    (lambda b, s: analysis.fit_for_target(b, replace_thresholds(s), target_accuracy=0.5, grid_size=float("nan")),
     "grid_size must be a whole number"),
    (lambda b, s: analysis.shift(b, s, "val", "val-shifted", target_accuracy=0.5), "not both"),
    (lambda b, s: analysis.open_bank(5), "bank must be a Bank, a folder path or None"),
    (lambda b, s: analysis.evaluate(b, {"models": ("tiny", "medium"), "thresholds": (0.5,)}),
     "spec must be a CascadeSpec"),
])
def test_library_mistakes_name_the_argument(bank_path, call, message):
    spec = analysis.CascadeSpec(models=("tiny", "medium"), thresholds=(0.5,))
    with pytest.raises(UsageError, match=message):
        call(bank_path, spec)


def replace_thresholds(spec):
    return analysis.CascadeSpec(models=spec.models)


def test_known_device_still_gives_latency(bank_path):
    spec = analysis.CascadeSpec(models=("tiny", "medium"), thresholds=(0.5,))
    assert analysis.evaluate(bank_path, spec, device=DEVICE)["avg_ms"] is not None


def test_bank_writer_refuses_empty_and_string_splits(tmp_path):
    from cascade_explorer.core.bank import BankError

    writer = BankWriter(tmp_path / "b", create={"dataset": {"name": "b"}, "class_names": ["x", "y"]})
    with pytest.raises(BankError, match="at least one sample"):
        writer.add_split("empty", [], [], [])
    with pytest.raises(BankError, match="must be lists, not a string"):
        writer.add_split("s2", "ab", ["", ""], [0, 1])


def test_caches_are_reused_and_invalidated_by_a_bank_write(tmp_path):
    path = build_random_bank(tmp_path / "bank", n=60, shifted=False)
    spec = analysis.CascadeSpec(models=("tiny", "large"), thresholds=(0.5,))
    computed = []

    class CountingSource(SignalSource):
        def model_signals(self, bank, model_id, split, criterion, temperature=1.0):
            computed.append(model_id)
            return super().model_signals(bank, model_id, split, criterion, temperature)

    shared = analysis.BankAnalysis(path, signal_source=CountingSource())
    shared.evaluate(spec)
    assert computed and len(computed) == len(set(computed))   # each model's signals computed once
    before = len(computed)
    shared.evaluate(analysis.CascadeSpec(models=("tiny", "large"), thresholds=(0.7,)))
    assert len(computed) == before   # a threshold change reuses the signals
    assert shared.memory_bytes > 0
    assert "extra" not in set(analysis.single_models(path)["id"])
    writer = BankWriter(path)
    writer.add_model("extra", display_name="Extra", backend="external", source={"kind": "user"}, gmacs=9.0)
    writer.add_logits("extra", "val", np.random.default_rng(0).normal(size=(60, N_CLASSES)).astype(np.float32))
    assert "extra" in set(analysis.single_models(path)["id"])


def test_frontier_on_the_held_out_part_matches_evaluate(bank_path):
    front = analysis.frontier(bank_path, on="eval", seed=3)
    held_out = ~protocol.calibration_mask(raw_ids(bank_path, "val"), 0.5, seed=3)
    row = front.iloc[len(front) // 2]
    check = analysis.evaluate(bank_path, analysis.CascadeSpec(models=tuple(row["models"]),
                                                              thresholds=tuple(row["thresholds"])), on="eval", seed=3)
    assert check["n_samples"] == held_out.sum()
    assert check["accuracy"] == pytest.approx(row["accuracy"])
    assert check["speedup"] == pytest.approx(row["speedup"]) if check["speedup"] is not None \
        else np.isnan(row["speedup"])

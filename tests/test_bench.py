"""The synthetic bank (its O(N K) signals equal signals of its materialised logits) and the bench command."""

import json

import numpy as np
import pytest

from cascade_explorer.commands.cli import main
from cascade_explorer.core.criteria import CRITERIA
from cascade_explorer.core.synthetic import make_synthetic_bank

TINY = ["bench", "--models", "6", "--samples", "2000", "--classes", "10", "--large-models", "0", "--repeats", "1"]


@pytest.mark.parametrize("n_classes", [2, 3, 9, 10, 50])
def test_synthetic_signals_equal_signals_of_its_logits(n_classes):
    bank = make_synthetic_bank(4, 600, n_classes, seed=3)
    for model in bank.model_ids:
        for criterion in CRITERIA:
            for temperature in (1.0, 2.5):
                fast = bank.signals(model, criterion, temperature)
                slow = bank.signals_from_logits(model, criterion, temperature, chunk_rows=128)
                np.testing.assert_array_equal(fast.prediction, slow.prediction)
                np.testing.assert_array_equal(fast.correct, slow.correct)
                np.testing.assert_allclose(fast.confidence, slow.confidence, rtol=1e-6, atol=1e-9)


def test_synthetic_bank_is_model_like_and_reproducible():
    bank = make_synthetic_bank(12, 3000, 100, seed=7)
    again = make_synthetic_bank(12, 3000, 100, seed=7)
    costs = [bank.gmacs[m] for m in bank.model_ids]
    assert costs == sorted(costs) and min(costs) > 0
    accuracy = [bank.signals(m).accuracy for m in bank.model_ids]
    assert np.corrcoef(np.log(costs), accuracy)[0, 1] > 0.5         # dearer models are mostly better
    assert 0.05 < min(accuracy) and max(accuracy) < 0.99
    np.testing.assert_array_equal(bank.logits(bank.model_ids[0]), again.logits(again.model_ids[0]))
    logits = bank.logits(bank.model_ids[-1])
    assert logits.shape == (3000, 100) and logits.dtype == np.float16
    # correlated errors: two models are wrong on the same samples more often than independence predicts
    a, b = (bank.signals(m).correct for m in bank.model_ids[-2:])
    assert np.mean(~a & ~b) > np.mean(~a) * np.mean(~b) * 1.2
    # confidence is informative: correct predictions are more confident on average
    s = bank.signals(bank.model_ids[5])
    assert s.confidence[s.correct].mean() > s.confidence[~s.correct].mean()
    assert bank.logits_nbytes == 12 * 3000 * 100 * 2


def test_synthetic_bank_rejects_bad_sizes():
    with pytest.raises(ValueError, match=">= 2 classes"):
        make_synthetic_bank(2, 10, 1)


def test_bench_json_on_a_tiny_bank(capsys):
    assert main(TINY + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"] == {"models": 6, "samples": 2000, "classes": 10, "repeats": 1, "large_models": 0,
                                "criterion": "max_softmax"}
    results = report["results"]
    for key in ("evaluate_3_model", "pair_curve", "pair_search"):
        item = results[key]
        assert item["median_s"] > 0 and item["speedup"] > 0 and isinstance(item["meets_target"], bool)
        assert item.get("naive_median_s", item.get("naive_extrapolated_s")) > 0
    assert results["pair_search"]["pairs"] == 15
    assert results["pair_search"]["frontier_points"] > 0
    assert results["pair_curve"]["points"] > 100
    assert results["memory"]["pair_search_peak_mb"] > 0
    assert results["memory"]["all_logits_float16_mb"] == pytest.approx(6 * 2000 * 10 * 2 / 1e6)
    assert results["signals_from_logits"]["prediction_agreement_vs_float32"] > 0.99
    assert results["pair_search_large"] is None


def test_bench_table_and_large_models(capsys):
    args = TINY.copy()
    args[args.index("--large-models") + 1] = "3"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "all 15 pairs + frontier" in out and "naive" in out and "3 models (3 pairs)" in out


def test_bench_usage_error_exits_2(capsys):
    assert main(["bench", "--models", "2"]) == 2   # one benchmark is a 3-model cascade
    assert "--models must be >= 3" in capsys.readouterr().err

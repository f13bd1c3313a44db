"""`cascade-explorer evaluate` and `pareto` end to end on a small random bank."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cascade_explorer.commands import cli
from cascade_explorer.core import protocol
from test_analysis import MODELS, build_random_bank, direct, raw_ids


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    return build_random_bank(tmp_path_factory.mktemp("cli") / "bank", n=200, seed=3)


def run_json(capsys, argv):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1   # one JSON document on one line
    return json.loads(out)


@pytest.mark.parametrize("models, thresholds, criterion", [
    ("tiny,large", "0.5", "max_softmax"),
    ("tiny,small,large", "0.7,0.4", "softmax_margin"),
    ("small,medium", "1.0", "logit_margin"),
    ("medium", None, "entropy"),
])
def test_evaluate_all_none_equals_the_engine(bank_path, capsys, models, thresholds, criterion):
    argv = ["evaluate", "--bank", str(bank_path), "--models", models, "--criterion", criterion,
            "--on", "all", "--temperature", "none", "--json"]
    if thresholds:
        argv += ["--thresholds", thresholds]
    got = run_json(capsys, argv)
    ids = tuple(models.split(","))
    t = tuple(float(x) for x in thresholds.split(",")) if thresholds else ()
    want = direct(bank_path, "val", ids, criterion, t)
    assert got["n_samples"] == 200
    assert got["accuracy"] == want.accuracy
    assert got["avg_gmacs"] == pytest.approx(want.avg_gmacs, rel=1e-12)
    assert got["exit_fractions"] == pytest.approx(list(want.exit_fractions))
    assert got["models"] == list(ids) and got["thresholds"] == list(t)
    assert got["criterion"] == criterion and got["split"] == "val" and got["on"] == "all"
    assert got["worst_gmacs"] == pytest.approx(sum(MODELS[m][0] for m in ids))
    assert got["accuracy_ci"][0] <= got["accuracy"] <= got["accuracy_ci"][1]
    assert got["avg_ms"] == pytest.approx(want.avg_ms)


def test_evaluate_default_is_the_held_out_part(bank_path, capsys):
    got = run_json(capsys, ["evaluate", "--bank", str(bank_path), "--models", "tiny,large", "--thresholds", "0.5",
                            "--seed", "5", "--calibration-fraction", "0.25", "--json"])
    held_out = ~protocol.calibration_mask(raw_ids(bank_path, "val"), 0.25, seed=5)
    assert got["n_samples"] == held_out.sum()
    assert got["accuracy"] == direct(bank_path, "val", ("tiny", "large"), "max_softmax", (0.5,), rows=held_out).accuracy


def test_evaluate_with_target_and_shift(bank_path, capsys):
    got = run_json(capsys, ["evaluate", "--bank", str(bank_path), "--models", "small,medium",
                            "--target-accuracy", "0.5", "--temperature", "fit", "--shift-to", "val-shifted", "--json"])
    assert got["fitted"]["target"] == {"target_accuracy": 0.5}
    assert got["fitted"]["calibration_accuracy"] >= 0.5
    assert len(got["thresholds"]) == 1
    assert set(got["temperatures"]) == {"small", "medium"}
    shifted = got["shift"]
    assert shifted["target_split"] == "val-shifted"
    assert shifted["delta"]["accuracy"] == pytest.approx(shifted["target"]["accuracy"] - got["accuracy"])


def test_evaluate_infinite_threshold_is_strict_json(bank_path, capsys):
    got = run_json(capsys, ["evaluate", "--bank", str(bank_path), "--models", "tiny,large", "--thresholds", "inf",
                            "--on", "all", "--json"])
    assert got["thresholds"] == ["inf"]
    assert got["exit_fractions"] == [0.0, 1.0]


def test_evaluate_human_readable(bank_path, capsys):
    assert cli.main(["evaluate", "--bank", str(bank_path), "--models", "tiny,large", "--thresholds", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "95% CI" in out and "tiny -> large" in out and "speed-up" in out


def test_pareto_json_csv_and_target(bank_path, capsys):
    rows = run_json(capsys, ["pareto", "--bank", str(bank_path), "--json"])
    assert rows and {"models", "thresholds", "accuracy", "avg_gmacs", "avg_ms", "speedup"} <= set(rows[0])
    costs = [r["avg_gmacs"] for r in rows]
    assert costs == sorted(costs)
    # every frontier row reproduces with `evaluate` on all samples
    row = rows[len(rows) // 2]
    check = run_json(capsys, ["evaluate", "--bank", str(bank_path), "--models", ",".join(row["models"]),
                              "--thresholds", ",".join(str(t) for t in row["thresholds"]), "--on", "all", "--json"])
    assert check["accuracy"] == pytest.approx(row["accuracy"])
    assert check["avg_gmacs"] == pytest.approx(row["avg_gmacs"])

    assert cli.main(["pareto", "--bank", str(bank_path), "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == len(rows) and table[0]["models"] == "+".join(rows[0]["models"])

    target = sorted(r["accuracy"] for r in rows)[len(rows) // 2]
    best = run_json(capsys, ["pareto", "--bank", str(bank_path), "--target-accuracy", str(target), "--json"])
    assert len(best) == 1
    assert best[0]["accuracy"] >= target
    assert best[0]["avg_gmacs"] == min(r["avg_gmacs"] for r in rows if r["accuracy"] >= target)

    three = run_json(capsys, ["pareto", "--bank", str(bank_path), "--max-stages", "3",
                              "--shortlist", "tiny,small,large", "--json"])
    assert {len(r["models"]) for r in three} <= {2, 3}
    for pair in rows:   # adding 3-model chains never makes the frontier worse at any cost
        assert max(r["accuracy"] for r in three if r["avg_gmacs"] <= pair["avg_gmacs"] + 1e-12) >= pair["accuracy"]


@pytest.mark.parametrize("argv, fragment", [
    (["evaluate", "--models", "tiny,huge", "--thresholds", "0.5"], "unknown model 'huge'"),
    (["evaluate", "--models", "tiny,large", "--thresholds", "0.5,0.6"], "needs 1 threshold"),
    (["evaluate", "--models", "large,tiny", "--thresholds", "0.5"], "cheapest first: tiny,large"),
    (["evaluate", "--models", "tiny,large", "--thresholds", "0.5", "--split", "test"], "unknown split 'test'"),
    (["evaluate", "--models", "tiny,large"], "needs --thresholds"),
    (["evaluate", "--models", "tiny,large", "--thresholds", "0.5", "--target-accuracy", "0.6"], "not both"),
    (["evaluate", "--models", "tiny,large", "--target-accuracy", "0.9999"], "best achievable"),
    (["evaluate", "--models", "tiny,large", "--thresholds", "0.5", "--calibration-fraction", "1.5"],
     "calibration-fraction"),
    (["evaluate", "--models", "tiny,large", "--thresholds", "0.5", "--split", "val-shifted"], "no logits"),
    (["evaluate", "--models", "tiny,large", "--thresholds", "0.5", "--shift-to", "nope"], "unknown split 'nope'"),
    (["pareto", "--split", "test"], "unknown split 'test'"),
    (["pareto", "--shortlist", "tiny,small,large"], "--max-stages 3"),
    (["pareto", "--max-stages", "3", "--shortlist", "tiny,huge,large"], "unknown model 'huge'"),
    (["pareto", "--target-accuracy", "0.9999", "--json"], "no cascade reaches"),
])
def test_usage_mistakes_exit_2_with_one_line(bank_path, capsys, argv, fragment):
    assert cli.main([argv[0], "--bank", str(bank_path), *argv[1:]]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert fragment in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert captured.out == ""
    if "unknown model" in fragment:
        assert "tiny, small, medium, large" in err   # the known ids, cheapest first


def test_missing_bank_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["evaluate", "--bank", str(tmp_path / "nowhere"), "--models", "a,b", "--thresholds", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err

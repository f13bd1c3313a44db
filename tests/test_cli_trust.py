"""`evaluate --certify`, the certificate in the config, interval methods, router metrics and
temperature warnings on the command line (issue 11), on the shipped default bank and small banks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from cascade_explorer.commands import cli
from cascade_explorer.core import analysis
from cascade_explorer.core.config import CascadeConfig
from cascade_explorer.core.errors import ConfigError
from test_analysis_trust import _temperature_bank

PAIR = "mobilenet_v3_small_224,efficientnet_lite0"


def _run(capsys, argv):
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_certified_budget_json_matches_the_library_and_names_its_methods(capsys):
    status, out, err = _run(capsys, ["evaluate", "--models", PAIR, "--max-escalated", "0.4", "--certify", "0.05",
                                     "--json"])
    assert status == 0 and err == ""
    report = json.loads(out)
    certificate = report["certificate"]
    want = analysis.certify(None, analysis.CascadeSpec(models=tuple(PAIR.split(","))), delta=0.05,
                            max_escalated=0.4)
    assert certificate["certified"] is True and certificate["thresholds"] == list(want.thresholds)
    assert report["thresholds"] == list(want.thresholds) and certificate["delta"] == 0.05
    n = report["n_samples"]
    for key, share in (("accuracy_ci", report["accuracy"]), ("escalated_fraction_ci", report["escalated_fraction"])):
        exact = binomtest(round(share * n), n).proportion_ci(0.95, method="exact")
        np.testing.assert_allclose(report[key], (exact.low, exact.high), rtol=1e-9)
    assert "Clopper-Pearson" in report["ci_methods"]["accuracy"]
    router = report["router_metrics"]
    assert 0 < router["apgr"] < 1 and router["cpt_20"] < router["cpt_50"] < router["cpt_80"]


def test_uncertifiable_target_exits_1_and_says_how_many_samples(capsys):
    status, out, err = _run(capsys, ["evaluate", "--models", PAIR, "--target-accuracy", "0.82", "--certify", "0.05"])
    assert status == 1
    assert "not certifiable: about" in err and "calibration samples needed" in err
    assert "NOT certified" in out and "Clopper-Pearson" in out and "APGR" in out
    status, out, _ = _run(capsys, ["evaluate", "--models", PAIR, "--target-accuracy", "0.82", "--certify", "0.05",
                                   "--json"])
    certificate = json.loads(out)["certificate"]
    assert status == 1 and certificate["certified"] is False and certificate["samples_needed"] > 641


def test_certify_flag_errors_name_the_flag(capsys):
    status, _, err = _run(capsys, ["evaluate", "--models", PAIR, "--target-accuracy", "0.7", "--certify", "1.5"])
    assert status == 2 and err.startswith("cascade-explorer evaluate: error: --certify must be strictly between 0 and 1")
    status, _, err = _run(capsys, ["evaluate", "--models", PAIR, "--thresholds", "0.5", "--certify", "0.05"])
    assert status == 2 and "--certify certifies thresholds fitted for a target" in err


def test_save_config_embeds_the_certificate_and_load_checks_it(capsys, tmp_path):
    path = tmp_path / "cascade.json"
    status, out, _ = _run(capsys, ["evaluate", "--models", PAIR, "--max-accuracy-drop", "0.02", "--certify", "0.05",
                                   "--save-config", str(path), "--json"])
    assert status == 0
    saved = CascadeConfig.load(path)
    assert saved.certificate["certified"] is True and saved.certificate["target"] == "max_accuracy_drop"
    assert saved.certificate["thresholds"] == saved.thresholds == json.loads(out)["thresholds"]
    data = json.loads(path.read_text())
    data["thresholds"] = [0.1]   # thresholds edited by hand: the certificate no longer applies
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"certificate.thresholds.*re-run `evaluate --certify`"):
        CascadeConfig.load(path)
    data["thresholds"], data["certificate"]["delta"] = saved.thresholds, 1.5
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="certificate.delta"):
        CascadeConfig.load(path)


def test_flagged_temperature_fit_is_a_warning_line_and_a_json_field(capsys, tmp_path):
    bank = _temperature_bank(tmp_path / "bank")
    argv = ["evaluate", "--bank", str(bank), "--models", "blind,good", "--thresholds", "0.5", "--temperature", "fit"]
    status, out, err = _run(capsys, argv + ["--json"])
    report = json.loads(out)
    assert status == 0
    assert "worse_than_uniform" in report["temperature_fits"]["blind"]["flags"]
    assert report["temperature_warnings"] and all(w.startswith("temperature of blind") for w in
                                                  report["temperature_warnings"])
    assert "cascade-explorer evaluate: warning: temperature of blind:" in err
    status, out, err = _run(capsys, argv)
    assert "[flagged: " in out and "warning: temperature of blind" in err


def test_pareto_json_carries_router_metrics_of_each_pair(capsys):
    status, out, _ = _run(capsys, ["pareto", "--json"])
    records = json.loads(out)
    table = analysis.router_table(None)
    pairs = [r for r in records if len(r["models"]) == 2]
    assert status == 0 and pairs
    for record in pairs:
        row = table[(table["first"] == record["models"][0]) & (table["second"] == record["models"][1])].iloc[0]
        for key in ("apgr", "cpt_50", "oracle_accuracy"):
            if row[key] is None or np.isnan(row[key]):   # the second model is not more accurate: undefined
                assert record[key] is None and row["reason"]
            else:
                assert record[key] == pytest.approx(row[key])
    assert any(r["apgr"] is not None for r in pairs)
    status, out, _ = _run(capsys, ["pareto", "--csv"])
    assert "apgr" in out.splitlines()[0].split(",")

"""`cascade-explorer bench --scale`: a tiny run of the paper-scale benchmark (the figures come from
real runs; here only that it builds its bank through import, times what it is asked and says why not)."""

from __future__ import annotations

import json

import pytest

from cascade_explorer.commands.cli import main


def test_scale_bench_times_the_chosen_cases_against_their_baselines(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CASCADE_EXPLORER_BENCH_DIR", str(tmp_path))
    assert main(["bench", "--scale", "8,300,5", "--repeats", "1", "--json",
                 "--cases", "softmax_pass_one_thread,pareto_json_second,evaluate_3_models_fit"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"softmax_pass_one_thread", "pareto_json_second", "evaluate_3_models_fit"} <= set(report)
    assert "import" not in report and "pareto_json_first" not in report
    assert report["pareto_json_second"]["median_s"] > 0 and report["evaluate_3_models_fit"]["peak_rss_mb"] > 0
    assert set(report["ratios"]) == {"pareto_second_vs_softmax_pass"}
    assert (tmp_path / "8x300x5" / "bank" / "manifest.json").is_file()   # imported once, cached


def test_scale_bench_import_comes_with_its_copy_baseline_and_unknown_cases_are_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CASCADE_EXPLORER_BENCH_DIR", str(tmp_path))
    assert main(["bench", "--scale", "8,300,5", "--repeats", "1", "--json", "--cases", "import"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ratios"]["import_vs_copy_with_fsync"] == pytest.approx(
        report["import"]["median_s"] / report["copy_with_fsync"]["median_s"])
    assert main(["bench", "--scale", "8,300,5", "--cases", "pareto_json_third"]) == 2
    assert "pareto_json_third" in capsys.readouterr().err

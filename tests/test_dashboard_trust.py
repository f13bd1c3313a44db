"""AppTest of issue 11's dashboard parts: the guarantee control and certificate, the calibration tabs
(right/wrong counts at the current threshold, reliability, risk-coverage), router metrics on the
Explorer and the leaderboard, temperature warnings, interval methods. Numbers are checked against
core's signals counted here with numpy, or core's own reports where the view only formats them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cascade_explorer.core import analysis
from cascade_explorer.core.config import CascadeConfig
from cascade_explorer.dashboard import state
from test_analysis_trust import _temperature_bank
from test_dashboard_app import APP, app, assert_cards_match, assert_clean, bank_path, core_eval, metric, view  # noqa: F401


def _stage_line(at, stage: int) -> str:
    found = [m.value for m in at.markdown if m.value.startswith(f"**Stage {stage}** (")]
    assert len(found) == 1, [m.value for m in at.markdown]
    return found[0]


def _counts(line: str) -> tuple[int, int, int, int]:
    match = re.search(r"escalates (\d+) of (\d+) right answers.*keeps (\d+) of (\d+) wrong answers", line)
    assert match, line
    return tuple(int(g) for g in match.groups())


def _want_counts(bank_path, models, thresholds, stage=0):
    """Right answers escalated / wrong answers kept at stage `stage`, among the images reaching it."""
    stages = analysis.stage_signals(str(bank_path), analysis.CascadeSpec(models=tuple(models)))
    reach = np.ones(len(stages[0]), dtype=bool)
    for i in range(stage):
        reach &= stages[i].confidence < thresholds[i]
    conf, right = stages[stage].confidence[reach], stages[stage].correct[reach]
    kept = conf >= thresholds[stage]
    return int((right & ~kept).sum()), int(right.sum()), int((~right & kept).sum()), int((~right).sum())


def test_right_wrong_counts_follow_the_slider(app, bank_path):
    at = app("explorer")
    v = view(at)
    assert _counts(_stage_line(at, 1)) == _want_counts(bank_path, v.models, v.thresholds)
    slider = at.slider(key="w_thr_0")
    slider.set_value(slider.min + 0.8 * (slider.max - slider.min)).run()
    assert_clean(at)
    v2 = view(at)
    moved = _counts(_stage_line(at, 1))
    assert moved == _want_counts(bank_path, v2.models, v2.thresholds)
    assert moved[0] > _want_counts(bank_path, v.models, v.thresholds)[0]   # higher threshold: more escalated
    # a 3-model chain: stage 2 counts only the images that reach it
    at.multiselect(key="w_models").set_value(["tiny", "medium", "huge"]).run()
    assert_clean(at)
    v3 = view(at)
    assert _counts(_stage_line(at, 2)) == _want_counts(bank_path, v3.models, v3.thresholds, stage=1)


def test_reliability_tab_reports_core_temperature_fits(app, bank_path):
    at = app("explorer")
    assert not [c for c in at.caption if c.value.startswith("T = ")]    # only the view shown is built
    at.segmented_control(key="w_calibration").set_value("reliability").run()
    assert_clean(at)
    assert at.query_params["calib"] == "reliability"
    v = view(at)
    fits = analysis.temperature_fits(str(bank_path), analysis.CascadeSpec(models=v.models))
    captions = [c.value for c in at.caption if c.value.startswith("T = ")]
    assert len(captions) == len(v.models)
    for caption, model_id in zip(captions, v.models):
        fit = fits[model_id]
        assert caption.startswith(f"T = {fit.temperature:.4g} fitted on {fit.n:,} calibration images")
        assert f"ECE {fit.ece_before:.2%} → {fit.ece_after:.2%}" in caption


def test_risk_coverage_view_renders_and_hide_builds_nothing(app):
    at = app("explorer")
    at.segmented_control(key="w_calibration").set_value("risk").run()
    assert_clean(at)
    assert any(c.value.startswith("Each model alone") for c in at.caption)
    at.segmented_control(key="w_calibration").set_value("off").run()
    assert_clean(at)
    assert not [m for m in at.markdown if m.value.startswith("**Stage 1** (")]


def test_router_cards_show_core_router_metrics(app, bank_path):
    at = app("explorer")
    v = view(at)
    router = core_eval(bank_path, v.models, v.thresholds)["router_metrics"]
    assert metric(at, "APGR") == f"{router['apgr']:.3f}"
    assert metric(at, "CPT 50%") == f"{router['cpt_50']:.2%}"
    assert f"CPT 20% {router['cpt_20']:.2%} · CPT 80% {router['cpt_80']:.2%}" in [c.value for c in at.caption]
    assert metric(at, "Oracle accuracy") == f"{router['oracle_accuracy']:.2%}"
    at.multiselect(key="w_models").set_value(["tiny", "medium", "huge"]).run()
    assert not [m for m in at.metric if m.label == "APGR"]     # defined for pairs only


def test_accuracy_interval_names_the_exact_method(app):
    at = app("explorer")
    accuracy = [m for m in at.metric if m.label == "Accuracy"][0]
    assert "Clopper-Pearson" in accuracy.help and "bootstrap" not in accuracy.help
    assert any("(exact Clopper-Pearson)" in c.value for c in at.caption)
    assert any("escalated 95% interval" in c.value for c in at.caption)


def test_guarantee_certifies_the_thresholds_and_exports_the_certificate(app, bank_path, monkeypatch, downloads):
    captured = downloads
    at = app("explorer")
    at.multiselect(key="w_models").set_value(["small", "large"]).run()
    models = ("small", "large")
    at.segmented_control(key="w_mode").set_value("target").run()
    at.selectbox(key="w_target_kind").set_value("escalated").run()
    at.number_input(key="w_target_value").set_value(0.3).run()
    at.selectbox(key="w_delta").set_value(0.05).run()
    assert_clean(at)
    spec = analysis.CascadeSpec(models=models)
    certificate = analysis.certify(str(bank_path), spec, delta=0.05, max_escalated=0.3)
    assert certificate.certified
    plain = analysis.fit_for_target(str(bank_path), spec, max_escalated=0.3)
    assert certificate.thresholds[0] < plain[0]   # a margin: escalate fewer than the plain fit
    assert_cards_match(at, core_eval(bank_path, models, certificate.thresholds, on="eval"))
    assert any(s.value.startswith("**Certified at 95%** (Learn then Test)") for s in at.success)
    assert at.query_params["delta"] == "0.05" and view(at).delta == 0.05
    config = CascadeConfig.from_dict(json.loads(captured["export"]))
    assert config.certificate["certified"] and config.certificate["thresholds"] == config.thresholds \
        == list(certificate.thresholds)


def test_uncertifiable_target_says_how_many_samples(app, bank_path):
    at = app("explorer")
    models = view(at).models
    at.segmented_control(key="w_mode").set_value("target").run()
    at.selectbox(key="w_delta").set_value(0.01).run()
    last = core_eval(bank_path, models[-1:], (), on="calibration")["accuracy"]
    at.number_input(key="w_target_value").set_value(round(last - 0.005, 3)).run()
    assert_clean(at)
    certificate = analysis.certify(str(bank_path), analysis.CascadeSpec(models=models), delta=0.01,
                                   target_accuracy=round(last - 0.005, 3))
    assert not certificate.certified and certificate.samples_needed
    warnings = [w.value for w in at.warning if w.value.startswith("**Not certifiable**")]
    assert len(warnings) == 1 and f"about {certificate.samples_needed:,} calibration samples" in warnings[0]


def test_flagged_temperature_fit_is_a_note(monkeypatch, tmp_path):
    path = _temperature_bank(tmp_path / "bank")
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(path))
    monkeypatch.delenv("CASCADE_EXPLORER_BANKS", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["models"] = "blind,good"
    at.query_params["temp"] = "fit"
    at.run()
    at.switch_page("views/explorer.py").run()
    assert_clean(at)
    notes = [w.value for w in at.warning if w.value.startswith("Temperature fit flagged")]
    assert notes and "temperature of blind" in notes[0] and "never clipped" in notes[0]


def test_leaderboard_has_router_columns_of_each_pair(app, bank_path):
    at = app("leaderboard")
    table = at.dataframe[0].value
    router = analysis.router_table(str(bank_path))
    frontier = analysis.frontier(str(bank_path))
    assert {"APGR", "CPT 50%", "oracle accuracy"} <= set(table.columns)
    for index, row in table.iterrows():
        first, second = frontier.loc[index, "models"]
        want = router[(router["first"] == first) & (router["second"] == second)].iloc[0]
        if want["apgr"] is None or np.isnan(want["apgr"]):
            assert np.isnan(row["APGR"])
        else:
            assert row["APGR"] == pytest.approx(want["apgr"])
            assert row["CPT 50%"] == pytest.approx(want["cpt_50"])


def test_delta_round_trips_through_the_url():
    v = state.DEFAULT.replace(mode="target", delta=0.05)
    assert state.from_query(state.to_query(v)) == (v, [])
    parsed, problems = state.from_query({"delta": "1.5"})
    assert parsed.delta is None and "delta='1.5' ignored" in problems[0]

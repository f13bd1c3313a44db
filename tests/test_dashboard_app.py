"""Streamlit AppTest of every dashboard page: widget changes show exactly the numbers core computes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cascade_explorer.core import analysis
from cascade_explorer.core.config import CascadeConfig
from cascade_explorer.dashboard import demo_bank, state, ui

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-1300"


def pct(x) -> str:
    return f"{float(x):.2%}"


def num(x) -> str:
    return f"{float(x):.4g}"


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory):
    """Model-like logits on the real ../shared image list when present (so the gallery has images)."""
    path = tmp_path_factory.mktemp("banks") / "demo"
    if (SHARED_IMAGES / "dataset.txt").is_file():
        return demo_bank.write_demo_bank_on_shared_images(path, SHARED_IMAGES.parents[1])
    return demo_bank.write_demo_bank(path, n_samples=600, n_classes=50)


@pytest.fixture
def app(bank_path, monkeypatch):
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(bank_path))
    monkeypatch.delenv("CASCADE_EXPLORER_BANKS", raising=False)

    def start(page: str | None = None, query: dict | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=120)
        for k, v in (query or {}).items():
            at.query_params[k] = v
        at.run()
        if page:
            at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
        return at

    return start


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def seen(markdown: str) -> str:
    """What a reader sees of Markdown source: bank/URL text is escaped (core.text.markdown_text), so
    resolve the backslash escapes and drop the invisible word joiners."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace("\u2060", "")


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if seen(m.label) == label]
    assert len(found) == 1, (label, [m.label for m in at.metric])
    return found[0]


def view(at: AppTest) -> state.ViewState:
    return at.session_state[state.VIEW_KEY]


def core_eval(bank_path, models, thresholds, *, criterion="max_softmax", temperature="none", ensemble=False,
              split=None, on="all"):
    spec = analysis.CascadeSpec(models=tuple(models), criterion=criterion, thresholds=tuple(thresholds),
                                temperature=temperature, ensemble=ensemble)
    return analysis.evaluate(str(bank_path), spec, split=split, on=on)


def assert_cards_match(at, ev) -> None:
    assert metric(at, "Accuracy") == pct(ev["accuracy"])
    assert metric(at, "Average GMACs") == num(ev["avg_gmacs"])
    assert metric(at, "Speed-up") == ui.speedup(ev["speedup"])
    for i, fraction in enumerate(ev["exit_fractions"]):
        assert metric(at, f"Answered by stage {i + 1}") == pct(fraction)


# ------------------------------------------------------------------------------------------- Explorer

def test_explorer_default_and_slider_match_core(app, bank_path):
    at = app("explorer")
    v = view(at)
    assert len(v.models) == 2 and len(v.thresholds) == 1
    assert_cards_match(at, core_eval(bank_path, v.models, v.thresholds))

    slider = at.slider(key="w_thr_0")
    new = slider.min + 0.3 * (slider.max - slider.min)
    slider.set_value(new).run()
    assert_clean(at)
    v2 = view(at)
    assert v2.thresholds == (pytest.approx(new),)
    ev = core_eval(bank_path, v2.models, v2.thresholds)
    assert_cards_match(at, ev)
    # the URL now reproduces the view exactly
    assert at.query_params["thr"] == repr(v2.thresholds[0])


def test_explorer_chain_criterion_temperature_ensemble(app, bank_path):
    at = app("explorer")
    at.multiselect(key="w_models").set_value(["tiny", "medium", "huge"]).run()
    assert_clean(at)
    assert view(at).models == ("tiny", "medium", "huge")
    assert len(at.slider) == 2  # one threshold per non-final stage
    at.selectbox(key="w_criterion").set_value("entropy").run()
    at.segmented_control(key="w_temperature").set_value("fit").run()
    at.toggle(key="w_ensemble").set_value(True).run()
    assert_clean(at)
    at.slider(key="w_thr_1").set_value(at.slider(key="w_thr_1").max).run()  # stage 2 never answers
    assert_clean(at)
    v = view(at)
    assert (v.criterion, v.temperature, v.ensemble) == ("entropy", "fit", True)
    ev = core_eval(bank_path, v.models, v.thresholds, criterion="entropy", temperature="fit", ensemble=True)
    assert ev["exit_fractions"][1] == 0.0
    assert_cards_match(at, ev)


def test_single_model_chain_on_every_page(app, bank_path):
    at = app("explorer")
    at.multiselect(key="w_models").set_value(["medium"]).run()
    assert_clean(at)
    assert len(at.slider) == 0
    ev = core_eval(bank_path, ("medium",), ())
    assert metric(at, "Accuracy") == pct(ev["accuracy"])
    for page in ("gallery", "shift", "overview", "leaderboard", "zoo"):
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
    at.switch_page("views/gallery.py").run()
    assert metric(at, "Answered by stage 1, right") == f"{int(ev.result.correct.sum()):,}"


def test_explorer_models_are_ordered_by_cost(app):
    at = app("explorer")
    at.multiselect(key="w_models").set_value(["huge", "small"]).run()
    assert view(at).models == ("small", "huge")


def test_explorer_target_mode_fits_on_calibration_and_reports_held_out(app, bank_path):
    at = app("explorer")
    models = view(at).models
    at.segmented_control(key="w_mode").set_value("target").run()
    at.number_input(key="w_target_value").set_value(0.9).run()
    assert_clean(at)
    spec = analysis.CascadeSpec(models=models)
    fitted = analysis.fit_for_target(str(bank_path), spec, target_accuracy=0.9)
    ev = core_eval(bank_path, models, fitted, on="eval")
    assert_cards_match(at, ev)
    assert ev["n_samples"] < ev["n_split_samples"]

    at.selectbox(key="w_target_kind").set_value("gmacs").run()
    budget = 0.5 * sum(analysis.open_bank(str(bank_path)).model(m).gmacs for m in models)
    at.number_input(key="w_target_value").set_value(budget).run()
    assert_clean(at)
    fitted = analysis.fit_for_target(str(bank_path), spec, max_gmacs=budget)
    assert_cards_match(at, core_eval(bank_path, models, fitted, on="eval"))

    # out of reach: a warning naming the problem, the page still shows the hand-set cascade
    at.number_input(key="w_target_value").set_value(0.0001).run()
    assert_clean(at)
    assert any("No thresholds meet this target" in w.value for w in at.warning)
    v = view(at)
    assert_cards_match(at, core_eval(bank_path, models, v.thresholds, on=v.on))


def test_explorer_metrics_on_held_out_half(app, bank_path):
    at = app("explorer")
    at.segmented_control(key="w_on").set_value("eval").run()
    v = view(at)
    assert_cards_match(at, core_eval(bank_path, v.models, v.thresholds, on="eval"))


def test_copied_link_reproduces_the_view(app, bank_path):
    at = app("explorer")
    at.multiselect(key="w_models").set_value(["small", "large"]).run()
    at.slider(key="w_thr_0").set_value(0.01).run()
    at.selectbox(key="w_criterion").set_value("softmax_margin").run()
    at.slider(key="w_thr_0").set_value(0.02).run()
    query = {k: at.query_params[k] for k in at.query_params}
    accuracy = metric(at, "Accuracy")
    again = app("explorer", query=query)
    assert view(again) == view(at)
    assert metric(again, "Accuracy") == accuracy
    ev = core_eval(bank_path, ("small", "large"), (0.02,), criterion="softmax_margin")
    assert accuracy == pct(ev["accuracy"])


def test_bad_url_parameters_fall_back_without_error(app):
    at = app("explorer", query={"crit": "vibes", "models": "nope,huge", "thr": "abc", "bank": "elsewhere"})
    v = view(at)
    assert v.criterion == "max_softmax" and v.models == ("huge",) and v.thresholds == ()
    assert not at.error


def test_export_config_round_trips_through_core(app, bank_path, monkeypatch, tmp_path, downloads):
    captured = downloads
    at = app("explorer")
    v = view(at)
    payload = json.loads(captured["export"])
    (tmp_path / "c.json").write_text(json.dumps(payload))
    config = CascadeConfig.load(tmp_path / "c.json")
    assert config.model_ids == list(v.models)
    assert config.thresholds == list(v.thresholds)
    ev = core_eval(bank_path, v.models, v.thresholds)
    assert config.expected["accuracy"] == pytest.approx(ev["accuracy"])
    assert config.expected["exit_fractions"] == pytest.approx(ev["exit_fractions"])


# ------------------------------------------------------------------------------------------- other pages

def test_overview_headline_matches_core_and_opens_explorer(app, bank_path):
    at = app()
    frontier = analysis.frontier(str(bank_path))
    singles = analysis.single_models(str(bank_path))
    from cascade_explorer.core.search import headline_cascade

    best = headline_cascade(frontier, float(singles["accuracy"].max()), tolerance=0.01)
    ev = core_eval(bank_path, best["models"], best["thresholds"])
    assert metric(at, "Cascade accuracy") == pct(ev["accuracy"])
    assert metric(at, "Best single model") == pct(singles["accuracy"].max())
    assert metric(at, "Speed-up at equal accuracy") == ui.speedup(ev["speedup"])
    at.button[0].click().run()
    assert_clean(at)
    assert [t.value for t in at.title] == ["Explorer"]
    assert view(at).models == tuple(best["models"])
    assert metric(at, "Accuracy") == pct(ev["accuracy"])


def test_leaderboard_lists_core_frontier(app, bank_path):
    at = app("leaderboard")
    frontier = analysis.frontier(str(bank_path))
    # default: each chain's best speed-up, best first
    table = at.dataframe[0].value
    chains = {tuple(m) for m in frontier["models"]}
    assert len(table) == len(chains)
    speedups = table["speed-up"].to_numpy(dtype=float)
    finite = speedups[np.isfinite(speedups)]
    assert np.all(np.diff(finite) <= 0)
    best = frontier.assign(key=[tuple(m) for m in frontier["models"]]).groupby("key")["speedup"].max()
    np.testing.assert_allclose(np.sort(finite)[::-1], np.sort(best.dropna().to_numpy(dtype=float))[::-1])

    # every frontier point, cheapest first: the same numbers as core
    at.toggle(key="w_per_pair").set_value(False).run()
    at.selectbox(key="w_rank").set_value("cost").run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == min(len(frontier), 500)      # paged: one page of 500 rows
    at.selectbox(key="flt_leaderboard_page_size").set_value(2000).run()  # one page holds them all
    table = at.dataframe[0].value
    assert len(table) == len(frontier)
    np.testing.assert_allclose(np.sort(table["accuracy"].to_numpy()), np.sort(frontier["accuracy"].to_numpy()))
    np.testing.assert_allclose(table["avg GMACs"].to_numpy(), np.sort(frontier["avg_gmacs"].to_numpy()))
    assert at.download_button(key="leaderboard_csv")

    at.segmented_control(key="w_stages").set_value(3).run()
    assert_clean(at)
    at.multiselect(key="w_shortlist").set_value(["tiny", "small", "large"]).run()
    assert_clean(at)
    three = analysis.frontier(str(bank_path), max_stages=3, shortlist=["tiny", "small", "large"])
    assert len(at.dataframe[0].value) == len(three)
    assert view(at).shortlist == ("tiny", "small", "large")


def test_gallery_groups_match_core_result(app, bank_path, monkeypatch):
    monkeypatch.setenv("CASCADE_EXPLORER_IMAGES", str(SHARED_IMAGES / "data"))
    at = app("gallery")
    # the gallery shows the current cascade: the Explorer's default one
    v = view(app("explorer"))
    ev = core_eval(bank_path, v.models, v.thresholds)
    result = ev.result
    first_right = ev.stages[0].correct
    exited = result.exit_stage == 0
    expected = {
        "Answered by stage 1, right": int((exited & result.correct).sum()),
        "Answered by stage 1, wrong (over-confident)": int((exited & ~result.correct).sum()),
        "Escalated, fixed by a bigger model": int((~exited & result.correct & ~first_right).sum()),
        "Escalated, still wrong": int((~exited & ~result.correct).sum()),
    }
    for label, count in expected.items():
        assert metric(at, label) == f"{count:,}"
    if (SHARED_IMAGES / "data").is_dir():
        assert len(at.get("image")) > 0
    at.selectbox(key="w_group").set_value("exited-wrong").run()
    assert_clean(at)
    labels = analysis.open_bank(str(bank_path)).labels("val")
    cls = int(labels[0])
    at.selectbox(key="w_class").set_value(cls).run()
    assert_clean(at)
    assert view(at).gallery_class == cls
    in_class = int((exited & ~result.correct & (np.asarray(labels) == cls)).sum())
    assert any(h.value.endswith(f"— {in_class:,} images") for h in at.subheader), [h.value for h in at.subheader]
    # the four counts follow the class filter too
    assert metric(at, "Answered by stage 1, wrong (over-confident)") == f"{in_class:,}"
    assert metric(at, "Escalated, still wrong") == \
        f"{int((~exited & ~result.correct & (np.asarray(labels) == cls)).sum()):,}"
    at.selectbox(key="w_class").set_value(-1).run()  # back to all classes
    assert view(at).gallery_class is None
    assert any(h.value.endswith(f"— {expected['Answered by stage 1, wrong (over-confident)']:,} images")
               for h in at.subheader)


def test_gallery_without_images_says_how_to_get_them(app, monkeypatch, tmp_path):
    monkeypatch.setenv("CASCADE_EXPLORER_IMAGES", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("CASCADE_EXPLORER_CACHE", str(tmp_path / "cache"))
    at = app("gallery")
    assert len(at.get("image")) == 0
    assert any("CASCADE_EXPLORER_IMAGES" in i.value for i in at.info)
    assert len(at.metric) >= 4  # the rest still shows


def test_shift_matches_core(app, bank_path):
    at = app("shift")
    v = view(at)
    models, thresholds = v.models, v.thresholds
    if not models:  # the Explorer default cascade
        models, thresholds = view(app("explorer")).models, view(app("explorer")).thresholds
    spec = analysis.CascadeSpec(models=tuple(models), thresholds=tuple(thresholds))
    report = analysis.shift(str(bank_path), spec, "val", "val-shifted", on="all")
    assert metric(at, "Accuracy on val") == pct(report["source"]["accuracy"])
    assert metric(at, "Accuracy on val-shifted") == pct(report["target"]["accuracy"])
    assert metric(at, "Accuracy change") == f"{report['delta']['accuracy'] * 100:+.2f} pts"
    at.selectbox(key="w_shift_fit").set_value("val-shifted").run()
    assert_clean(at)
    report = analysis.shift(str(bank_path), spec, "val-shifted", "val", on="all")
    assert metric(at, "Accuracy on val-shifted") == pct(report["source"]["accuracy"])


def test_zoo_lists_every_model(app, bank_path):
    at = app("zoo")
    table = at.dataframe[0].value
    bank = analysis.open_bank(str(bank_path))
    assert list(table["id"]) == bank.model_ids
    np.testing.assert_allclose(table["top-1 val"].to_numpy(), [m.top1["val"] for m in bank.models])
    at.toggle(key="w_logx").set_value(False).run()
    assert_clean(at)


def test_live_page_renders(app):
    at = app("live")
    assert [t.value for t in at.title]


def test_split_picker_changes_every_number(app, bank_path):
    at = app("explorer")
    at.selectbox(key="w_split").set_value("val-shifted").run()
    assert_clean(at)
    v = view(at)
    assert v.split == "val-shifted"
    assert_cards_match(at, core_eval(bank_path, v.models, v.thresholds, split="val-shifted"))


def test_bank_picker_lists_and_switches_banks(bank_path, monkeypatch, tmp_path):
    other = demo_bank.write_demo_bank(tmp_path / "banks" / "second", n_samples=300, n_classes=20,
                                      shifted_split=False, seed=5)
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(bank_path))
    monkeypatch.setenv("CASCADE_EXPLORER_BANKS", str(tmp_path / "banks"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    picker = at.selectbox(key="w_bank")
    assert {"demo", "second"} <= set(picker.options)
    picker.set_value("second").run()
    at.switch_page("views/zoo.py").run()
    assert_clean(at)
    assert at.query_params["bank"] == "second"
    assert len(at.dataframe[0].value) == len(analysis.open_bank(str(other)).models)


# ------------------------------------------------------------------------------------------- bad banks

def _bad_bank(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / kind
    if kind == "missing":
        return path
    if kind == "empty":
        path.mkdir()
        return path
    if kind == "corrupt-json":
        path.mkdir()
        (path / "manifest.json").write_text('{"schema_version": 1, "dataset": ')
        return path
    if kind == "no-models":
        from cascade_explorer.core.bank import BankWriter

        writer = BankWriter(path, create={"dataset": {"name": "x", "description": "", "licence": "CC0",
                                                      "caveats": [], "task": "image-classification"},
                                          "class_names": ["a", "b"]})
        writer.add_split("val", ["s1", "s2"], ["", ""], np.array([0, 1]))
        return path
    demo_bank.write_demo_bank(path, n_samples=100, n_classes=10, shifted_split=False)
    if kind == "nan-logits":
        f = path / "splits" / "val" / "logits" / "medium.npy"
        a = np.load(f)
        a[3, 2] = np.nan
        np.save(f, a)
    elif kind == "missing-logits":
        (path / "splits" / "val" / "logits" / "medium.npy").unlink()
    elif kind == "wrong-shape":
        np.save(path / "splits" / "val" / "logits" / "medium.npy", np.zeros((99, 10), np.float32))
    return path


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt-json", "no-models", "nan-logits", "missing-logits",
                                  "wrong-shape"])
def test_bad_bank_gives_a_message_page(kind, tmp_path, monkeypatch):
    path = _bad_bank(kind, tmp_path)
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(path))
    monkeypatch.setenv("CASCADE_EXPLORER_BANKS", str(tmp_path / "none"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert_clean(at)
    assert at.error, f"no message for a {kind} bank"
    text = seen(at.error[0].value)
    assert str(path) in text
    assert "How to fix" in " ".join(m.value for m in at.markdown)
    if kind not in ("missing", "empty", "corrupt-json", "no-models"):
        for page in ("explorer", "leaderboard", "gallery", "shift", "zoo"):
            try:
                at.switch_page(f"views/{page}.py").run()
            except ValueError:  # the bank failed to open: only the message page is registered
                break
            assert_clean(at)
            assert at.error or page == "shift"  # one image set: the shift page only explains that


def test_incomplete_bank_leaves_missing_models_out(tmp_path, monkeypatch):
    """A model without outputs on one image set (unfinished precompute): pages still work there."""
    path = demo_bank.write_demo_bank(tmp_path / "partial", n_samples=200, n_classes=10)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["models"]["huge"]["top1"]["val-shifted"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "splits" / "val-shifted" / "logits" / "huge.npy").unlink()
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(path))
    monkeypatch.setenv("CASCADE_EXPLORER_BANKS", str(tmp_path / "none"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert_clean(at)
    assert not at.error
    assert any("Incomplete bank" in seen(c.value) and "Huge net on val-shifted" in seen(c.value)
               for c in at.sidebar.caption)
    at.switch_page("views/explorer.py").run()
    at.multiselect(key="w_models").set_value(["small", "huge"]).run()
    at.switch_page("views/shift.py").run()
    assert_clean(at)
    assert any("needs two" in i.value for i in at.info)
    at.switch_page("views/explorer.py").run()
    at.selectbox(key="w_split").set_value("val-shifted").run()
    assert_clean(at)
    assert "huge" not in view(at).models
    # and the page says why the chain lost a model
    assert any("left out of the cascade: Huge net has no outputs on val-shifted" in seen(t.value) for t in at.toast), \
        [t.value for t in at.toast]
    assert not any(o.startswith("Huge net") for o in at.multiselect(key="w_models").options)
    assert any(o.startswith("Large net") for o in at.multiselect(key="w_models").options)
    for page in ("overview", "leaderboard", "gallery", "zoo"):
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
        assert not at.error


def test_page_scripts_are_not_in_a_pages_folder():
    """A dashboard/pages/ folder puts Streamlit in legacy multipage mode: a fresh server then runs a
    linked page (e.g. /explorer) without app.py and crashes. Page scripts belong in dashboard/views/."""
    pages = APP.parent / "pages"
    assert not pages.exists(), f"move {pages}/*.py into {APP.parent / 'views'} and register them in app.py"


def test_all_pages_registered_and_exist():
    import ast

    tree = ast.parse(APP.read_text())
    files = [node.elts[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Tuple) and len(node.elts) == 4 and isinstance(node.elts[0], ast.Constant)
             and str(node.elts[0].value).endswith(".py")]
    assert len(files) == 7
    for name in files:
        assert (APP.parent / "views" / name).is_file(), name


def test_nan_speedup_formats():
    assert ui.speedup(None) == "–" and ui.speedup(math.inf) == "–" and ui.speedup(2.0) == "2.00×"
    assert ui.speedup_caption(None, "9 images").startswith("more accurate than every single model")
    assert ui.speedup_caption(None, "9 images").endswith("9 images")
    assert ui.speedup_caption(2.0, "9 images") == "9 images"


@pytest.fixture
def default_bank_app(monkeypatch) -> tuple[Path, AppTest]:
    """The app on the shipped default bank (skips where it is not built)."""
    from cascade_explorer.core.bank import DEFAULT_BANK_PATH

    bank = Path(DEFAULT_BANK_PATH)
    if not (bank / "manifest.json").is_file():
        pytest.skip(f"default bank not built at {bank}")
    monkeypatch.delenv("CASCADE_EXPLORER_BANK", raising=False)
    monkeypatch.delenv("CASCADE_EXPLORER_BANKS", raising=False)
    return bank, AppTest.from_file(str(APP), default_timeout=300).run()


def test_shift_page_explains_a_missing_speedup(default_bank_app):
    """On the shipped bank, val's default thresholds applied to val-corrupted give a cascade more
    accurate than every single model there: core has no speed-up, and the page says why."""
    bank, at = default_bank_app
    at.switch_page("views/explorer.py").run()
    v = view(at)    # the default cascade, which the shift page shows too
    at.switch_page("views/shift.py").run()
    assert_clean(at)
    spec = analysis.CascadeSpec(models=tuple(v.models), thresholds=tuple(v.thresholds))
    report = analysis.shift(str(bank), spec, "val", "val-corrupted", on="all")
    assert report["source"]["speedup"] is not None and report["target"]["speedup"] is None
    assert report["target"]["accuracy"] > max(m.top1["val-corrupted"] for m in analysis.open_bank(str(bank)).models)
    assert metric(at, "Speed-up on val") == ui.speedup(report["source"]["speedup"])
    assert metric(at, "Speed-up on val-corrupted") == "–"
    notes = [c.value for c in at.caption if c.value.startswith("more accurate than every single model")]
    assert len(notes) == 1 and "1,300 images" in notes[0]


def test_default_bank_every_page(default_bank_app):
    """The shipped bank (real models): every page renders and the Explorer shows core's numbers."""
    bank, at = default_bank_app
    assert_clean(at)
    for page in ("explorer", "leaderboard", "gallery", "shift", "zoo", "overview"):
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at)
        assert not at.error, [e.value for e in at.error]
        if page == "explorer":
            v = view(at)
            assert_cards_match(at, core_eval(bank, v.models, v.thresholds))
            at.slider(key="w_thr_0").set_value(float(at.slider(key="w_thr_0").min)).run()
            v = view(at)
            assert_cards_match(at, core_eval(bank, v.models, v.thresholds))


# ------------------------------------------------------------------- what a link asks for but cannot get

def toasts(at) -> list[str]:
    return [seen(t.value) for t in at.toast]


@pytest.mark.parametrize("query, fragment", [
    ({"bank": "elsewhere"}, "bank='elsewhere' is not a bank found here"),
    ({"models": "nope,large"}, "left out of the cascade: 'nope' not in this bank"),
    ({"split": "nope"}, "image set 'nope' is not in this bank"),
    ({"models": "tiny,large", "thr": "0.5,0.6,0.7"}, "3 threshold(s) given for 2 models"),
    ({"stages": "3", "short": "zzz,tiny,small,large"}, "shortlist: 'zzz'"),
    ({"cls": "99999"}, "class 99999 does not exist"),
    ({"fit_on": "zzz"}, "image set 'zzz' (thresholds chosen on) is not in this bank"),
])
def test_a_link_asking_for_what_the_bank_lacks_says_so(app, query, fragment):
    at = app(None, query)     # the first run of a shared link, where its toasts show
    assert any(fragment in t for t in toasts(at)), toasts(at)


def test_default_target_is_reachable(app, bank_path):
    """'fit for a target' without a value starts from a target the chain meets on the calibration half."""
    at = app("explorer", {"mode": "target", "models": "tiny,medium"})
    assert_clean(at)
    assert not [w.value for w in at.warning if "No thresholds meet" in w.value]
    assert any("Thresholds fitted" in i.value for i in at.info)
    spec = analysis.CascadeSpec(models=("tiny", "medium"))
    reach = analysis.target_range(str(bank_path), spec)
    best_single = max(analysis.single_models(str(bank_path))["accuracy"])
    target = at.number_input(key="w_target_value").value
    assert target <= reach["accuracy"][1] and target <= best_single - 0.01 + 1e-9
    at.selectbox(key="w_target_kind").set_value("gmacs").run()
    budget = at.number_input(key="w_target_value").value
    assert reach["avg_gmacs"][0] <= budget <= reach["avg_gmacs"][1]
    assert any("Thresholds fitted" in i.value for i in at.info)


def test_shift_with_an_unreachable_target_still_shows_the_shift(app):
    at = app("shift", {"mode": "target", "target": "accuracy", "tval": "1.0", "models": "tiny,medium"})
    assert_clean(at)
    assert any("showing the hand-set thresholds instead" in w.value for w in at.warning)
    assert metric(at, "Accuracy on val") and metric(at, "Accuracy on val-shifted")
    assert not at.error


def test_live_says_when_the_target_is_out_of_reach(app):
    at = app("live", {"mode": "target", "target": "accuracy", "tval": "1.0", "models": "tiny,medium"})
    assert_clean(at)
    assert any("No thresholds meet the Explorer's target" in w.value for w in at.warning)


def test_the_shift_page_resolves_its_cascade_once_per_run(app, monkeypatch):
    """Distribution shift renders from dashboard/resolve.py's one resolved cascade (it used to work the
    chain out again through ui.chain_and_thresholds)."""
    from cascade_explorer.dashboard import resolve

    at = app("shift")
    calls = []
    original = resolve.view_chain
    monkeypatch.setattr(resolve, "view_chain", lambda *a, **k: calls.append(1) or original(*a, **k))
    at.run()
    assert_clean(at)
    assert len(calls) == 1 and at.metric

"""Issue 10, the dashboard at paper scale: families, filters, chart labels, log axis default, shortlist
bounds (pure, core/families.py) and AppTest on a generated bank of 120 timm-named models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cascade_explorer.core import analysis, families, plots
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.store import SignalStore

from zoo_bank import timm_names, write_zoo_bank

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


# ------------------------------------------------------------------------------------------- pure

def test_family_is_the_timm_prefix_or_the_manifest_field():
    assert families.family_of("vit_base_patch16_224.augreg2_in21k_ft_in1k") == "vit"
    assert families.family_of("resnet50") == "resnet"
    assert families.family_of("mobilenetv3_large_100") == "mobilenetv"
    assert families.family_of("convnext_tiny.fb_in22k") == "convnext"
    assert families.family_of("efficientnet-lite0") == "efficientnet"
    assert families.family_of("3d_net") == "3d_net"                  # no prefix: its own family
    assert families.family_of("resnet50", "ResNets") == "ResNets"      # the manifest wins
    assert families.family_of("resnet50", "  ") == "resnet"


def test_log_axis_default_when_costs_span_more_than_30x():
    assert families.log_axis_default([0.05, 0.3, 2.0]) is True        # 40x
    assert families.log_axis_default([1.0, 5.0, 29.0]) is False
    assert families.log_axis_default([0.0, float("nan"), 1.0]) is False   # one usable cost


def _frame():
    return pd.DataFrame({"id": ["resnet18", "resnet50", "vit_base_patch16_224", "vit_large_patch16_384"],
                         "display_name": ["ResNet-18", "ResNet-50", "ViT-B/16", "ViT-L/16 384"],
                         "gmacs": [1.8, 4.1, 17.6, 191.0], "accuracy": [0.69, 0.76, 0.81, 0.85]})


def test_filter_models_by_name_family_cost_and_accuracy():
    df = _frame()
    fams = {m: families.family_of(m) for m in df["id"]}
    assert families.filter_models(df, fams, families.ModelFilter()) == list(df["id"])
    assert families.filter_models(df, fams, families.ModelFilter(text="VIT-L")) == ["vit_large_patch16_384"]
    assert families.filter_models(df, fams, families.ModelFilter(family="resnet")) == ["resnet18", "resnet50"]
    assert families.filter_models(df, fams, families.ModelFilter(min_gmacs=2, max_gmacs=20)) == [
        "resnet50", "vit_base_patch16_224"]
    assert families.filter_models(df, fams, families.ModelFilter(min_accuracy=0.8, family="vit")) == [
        "vit_base_patch16_224", "vit_large_patch16_384"]
    with pytest.raises(UsageError, match="^min_gmacs must be <= `max_gmacs`"):
        families.ModelFilter(min_gmacs=3, max_gmacs=1)


def test_labelled_models_are_frontier_current_and_best_only_on_big_banks():
    df = _frame()
    assert families.labelled_models(df) == set(df["id"])             # few models: every name
    frontier = pd.DataFrame({"models": [("resnet18", "vit_base_patch16_224")]})
    got = families.labelled_models(df, frontier=frontier, current=("resnet50",), limit=2)
    assert got == {"resnet18", "vit_base_patch16_224", "resnet50", "vit_large_patch16_384"}   # + best single
    got = families.labelled_models(df, frontier=None, current=(), limit=2)
    assert got == {"vit_large_patch16_384"}


def test_chart_prints_only_the_labelled_names_and_hovers_every_name():
    df = _frame()
    fig = plots.from_tradeoff(df, labels={"resnet50"}, highlight={"resnet18", "resnet50"})
    trace = next(t for t in fig.data if t.name == "single models")
    assert list(trace.text) == ["", "ResNet-50", "", ""]
    assert list(trace.hovertext) == ["ResNet-18", "ResNet-50", "ViT-B/16", "ViT-L/16 384"]
    assert "%{hovertext}" in trace.hovertemplate
    assert list(trace.marker.opacity) == [1.0, 1.0, 0.35, 0.35]


def test_shortlist_bound_and_default():
    assert families.max_shortlist(50_000) == 12
    budget = families.shortlist_bytes(5, 50_000)                       # a tight budget: the memory binds
    assert families.max_shortlist(50_000, budget) == 5
    assert families.max_shortlist(50_000, budget - 1) == 4
    assert families.max_shortlist(50_000, 1) == 3                       # never below a 3-model chain
    ids = [f"m{i}" for i in range(10)]
    frontier = pd.DataFrame({"models": [("m0", "m4"), ("m2", "m4"), ("m2", "m9")]})
    assert families.default_shortlist(frontier, ids, 12) == ["m0", "m2", "m4", "m9"]
    assert families.default_shortlist(frontier, ids, 3) == ["m0", "m4", "m9"]      # spread, ends kept
    assert families.default_shortlist(pd.DataFrame({"models": []}), ids, 5) == ["m7", "m8", "m9"]


# ------------------------------------------------------------------------------------------- AppTest

@pytest.fixture(scope="module")
def zoo_bank(tmp_path_factory):
    return write_zoo_bank(tmp_path_factory.mktemp("zoo") / "zoo", n_models=120)


def _start(bank, monkeypatch, page=None, query=None) -> AppTest:
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(bank))
    monkeypatch.delenv("CASCADE_EXPLORER_BANKS", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=300)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _singles_trace(at: AppTest, index: int = 0) -> dict:
    spec = json.loads(at.get("plotly_chart")[index].proto.spec)
    return next(t for t in spec["data"] if t.get("name") == "single models")


@pytest.mark.parametrize("page", [None, "explorer", "zoo"])
def test_charts_do_not_print_every_name_of_120_models(zoo_bank, monkeypatch, page):
    at = _start(zoo_bank, monkeypatch, page)
    trace = _singles_trace(at)
    printed = [t for t in trace["text"] if t]
    assert len(trace["hovertext"]) == 120 and all(trace["hovertext"])   # every point named on hover
    assert 1 <= len(printed) < 60                                         # not a band of 120 names
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["type"] == "log"                       # costs span > 30x


def test_filters_narrow_the_zoo_and_the_picker(zoo_bank, monkeypatch):
    at = _start(zoo_bank, monkeypatch, "zoo")
    assert len(at.dataframe[0].value) == 120
    at.text_input(key="flt_zoo_text").set_value("VIT_base").run()
    ids = list(at.dataframe[0].value["id"])
    assert len(ids) == 20 and all(i.startswith("vit_base") for i in ids)
    at.text_input(key="flt_zoo_text").set_value("").run()
    at.selectbox(key="flt_zoo_family").set_value("regnety").run()
    assert set(at.dataframe[0].value["family"]) == {"regnety"} and len(at.dataframe[0].value) == 20

    at.selectbox(key="flt_zoo_family").set_value("").run()
    at.selectbox(key="flt_zoo_sort").set_value("top-1 val").run()
    top1 = at.dataframe[0].value["top-1 val"].to_numpy(dtype=float)
    assert len(top1) == 120 and (np.diff(top1) <= 0).all() and top1[0] > top1[-1]   # best first
    at.selectbox(key="flt_zoo_sort").set_value("GMACs").run()
    assert (np.diff(at.dataframe[0].value["GMACs"].to_numpy(dtype=float)) >= 0).all()

    at = _start(zoo_bank, monkeypatch, "explorer")
    picker = at.multiselect(key="w_models")
    chosen = list(picker.value)
    assert len(picker.options) == 120
    assert "%" in picker.options[0]                                       # accuracy beside the name
    at.text_input(key="flt_explorer_text").set_value("convnext").run()
    picker = at.multiselect(key="w_models")
    assert len(picker.options) == 20 + sum(not m.startswith("convnext") for m in chosen)
    assert list(picker.value) == chosen                                   # the cascade is kept


def test_a_deep_link_into_the_big_bank_opens(zoo_bank, monkeypatch):
    names = timm_names(120)
    at = _start(zoo_bank, monkeypatch, query={"models": f"{names[100]},{names[7]}", "thr": "0.55"})
    at.switch_page("views/explorer.py").run()
    assert not at.exception
    view = at.session_state["_view"]
    assert set(view.models) == {names[100], names[7]} and view.thresholds == (0.55,)
    assert at.slider(key="w_thr_0").value == pytest.approx(0.55)


def test_leaderboard_shortlist_defaults_to_frontier_models_and_filters_by_model(zoo_bank, monkeypatch):
    at = _start(zoo_bank, monkeypatch, "leaderboard")
    rows = len(at.dataframe[0].value)
    bank_analysis = analysis.BankAnalysis(str(zoo_bank))
    front = families.frontier_models(bank_analysis.frontier())
    uses = at.selectbox(key="flt_leaderboard_uses")
    pick = front[len(front) // 2]
    uses.set_value(pick).run()
    kept = at.dataframe[0].value
    assert 0 < len(kept) < rows
    name = bank_analysis.bank.model(pick).display_name
    assert all(name in c for c in kept["cascade"])
    at.selectbox(key="flt_leaderboard_uses").set_value("").run()
    at.selectbox(key="flt_leaderboard_family").set_value("vit").run()      # chains with a ViT in them
    with_vit = at.dataframe[0].value
    vit_names = {bank_analysis.bank.model(m).display_name for m in bank_analysis.bank.model_ids
                 if m.startswith("vit_")}
    assert 0 < len(with_vit) < rows
    assert all(set(c.split(" → ")) & vit_names for c in with_vit["cascade"])
    at.selectbox(key="flt_leaderboard_family").set_value("").run()
    at.segmented_control(key="w_stages").set_value(3).run()
    assert not at.exception
    shortlist = list(at.multiselect(key="w_shortlist").value)
    assert 3 <= len(shortlist) <= families.max_shortlist(300) and set(shortlist) <= set(front)


def test_a_cold_signal_store_renders_the_page_at_once_with_progress_then_fills_in(tmp_path, monkeypatch):
    """The bank is opened by a background job: the first run returns at once with the page's title and
    a progress bar naming the model being read (no chart: not the full page); once the job has ended a
    rerun draws the whole page, and a second session on the same bank opens without any progress."""
    import threading
    import time

    from cascade_explorer.core.bank import Bank
    from cascade_explorer.dashboard import jobs, scale_ui

    bank = write_zoo_bank(tmp_path / "cold", n_models=104, signals=False)
    store = SignalStore()
    assert not store.info(Bank.open(bank)).get("models")
    gate = threading.Event()          # holds the job inside its first model until the first run is checked
    original = SignalStore.model_signals

    def held(self, *args, **kwargs):
        gate.wait(60)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SignalStore, "model_signals", held)
    monkeypatch.setattr(scale_ui, "GRACE_S", 0.2)       # the product's grace, not the tests' (conftest)
    started = time.perf_counter()
    at = _start(bank, monkeypatch)
    assert time.perf_counter() - started < 30                           # not behind 104 models
    assert [t.value for t in at.title] == ["Overview"]
    bar = at.get("progress")
    assert len(bar) == 1 and "Reading" in bar[0].proto.text and "of 104" in bar[0].proto.text
    assert not at.get("plotly_chart")                                     # the page waits, it does not block
    assert any("fills in by itself" in i.value for i in at.info)
    gate.set()
    job = scale_ui.registry().peek(scale_ui.warm_key(Bank.open(bank), "val"))
    assert job.wait(120) and job.state == jobs.DONE, job.snapshot()
    assert job.result["stored"] == 104
    at.run()
    assert not at.exception
    assert at.get("plotly_chart") and not at.get("progress")             # the full page
    assert "Read 104 models of val into the signal store" in " ".join(c.value for c in at.caption)
    assert len(store.info(Bank.open(bank))["models"]["val"]) == 104     # the next server start is fast
    again = _start(bank, monkeypatch)                                     # a new session: ready, no note
    assert again.get("plotly_chart") and not again.get("progress")
    assert "into the signal store" not in " ".join(c.value for c in again.caption)


def test_another_criterion_on_a_big_bank_is_opened_in_the_background_too(tmp_path, monkeypatch):
    """A deep link to the Explorer under another criterion needs every model's signals under it: the
    page shows that job's progress (naming the criterion) instead of computing them in the request,
    then fills in; its frontier is the one the core computes for that criterion."""
    import threading

    from cascade_explorer.core.bank import Bank
    from cascade_explorer.dashboard import jobs, scale_ui

    bank = write_zoo_bank(tmp_path / "crit", n_models=104)
    scale_ui.warm_job(Bank.open(bank), "val").wait(120)        # the default criterion is open already
    gate = threading.Event()
    original = SignalStore.model_signals

    def held(self, bank_, model_id, split, criterion, *args, **kwargs):
        if criterion == "entropy":
            gate.wait(60)
        return original(self, bank_, model_id, split, criterion, *args, **kwargs)

    monkeypatch.setattr(SignalStore, "model_signals", held)
    monkeypatch.setattr(scale_ui, "GRACE_S", 0.2)
    at = _start(bank, monkeypatch, query={"crit": "entropy"})
    bar = at.get("progress")
    assert len(bar) == 1 and "of 104) under entropy" in bar[0].proto.text, [b.proto.text for b in bar]
    assert not at.get("plotly_chart")
    gate.set()
    job = scale_ui.registry().peek(scale_ui.warm_key(Bank.open(bank), "val", "entropy"))
    assert job.wait(120) and job.state == jobs.DONE, job.snapshot()
    at.run()
    assert not at.exception and not at.get("progress")
    from cascade_explorer.dashboard import data

    analysis = data._analysis(data.key(Bank.open(bank)))
    assert len(analysis.frontier(split="val", criterion="entropy")) > 0


@pytest.mark.parametrize("kind", ["bank", "other"])
def test_a_failing_bank_job_says_what_failed_as_text_and_can_be_tried_again(tmp_path, monkeypatch, kind):
    from cascade_explorer.core.bank import Bank
    from cascade_explorer.core.errors import BankError
    from cascade_explorer.dashboard import scale_ui

    bank = write_zoo_bank(tmp_path / "bad", n_models=14, signals=False)
    original = SignalStore.model_signals
    fail = [True]

    def broken(self, bank_, model_id, *args, **kwargs):
        if fail[0] and kind == "bank":
            raise BankError("logits contain NaN or inf", model=model_id, split="val", fix="re-export them")
        if fail[0]:
            raise RuntimeError("the disk went away")
        return original(self, bank_, model_id, *args, **kwargs)

    monkeypatch.setattr(SignalStore, "model_signals", broken)
    monkeypatch.setattr(scale_ui, "GRACE_S", 0.2)
    at = _start(bank, monkeypatch)
    job = scale_ui.registry().peek(scale_ui.warm_key(Bank.open(bank), "val"))
    assert job.wait(60)
    at.run()
    assert not at.exception and not at.get("plotly_chart")
    said = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", " ".join(e.value for e in at.error)).replace("\u2060", "")
    if kind == "bank":   # the bank's own message page, with how to fix it
        assert "The bank is damaged" in said and "logits contain NaN or inf" in said and "Fix: re-export them" in said
        assert "How to fix" in " ".join(m.value for m in at.markdown)
    else:
        assert "Opening zoo-bad on val failed: RuntimeError: the disk went away" in said
    assert "Traceback" not in said
    fail[0] = False
    at.button(key="warm_retry").click().run()                              # forgets the failed job
    new_job = scale_ui.registry().peek(scale_ui.warm_key(Bank.open(bank), "val"))
    assert new_job is not job and new_job.wait(60)
    at.run()
    assert not at.exception and at.get("plotly_chart")


# ------------------------------------------------------------------------------ one resolved cascade

def test_the_explorer_resolves_its_cascade_once_per_run(zoo_bank, monkeypatch):
    from cascade_explorer.dashboard import resolve

    at = _start(zoo_bank, monkeypatch, "explorer")
    calls = []
    original = resolve.view_chain
    monkeypatch.setattr(resolve, "view_chain", lambda *a, **k: calls.append(1) or original(*a, **k))
    slider = at.slider(key="w_thr_0")
    at.slider(key="w_thr_0").set_value((float(slider.min) + float(slider.max)) / 2).run()
    assert not at.exception
    assert len(calls) == 1          # the old Explorer worked the chain out twice (and fitted/evaluated twice)


def test_resolve_clamps_hand_thresholds_and_fits_targets(zoo_bank, monkeypatch):
    from cascade_explorer.dashboard import resolve, state

    names = timm_names(120)
    models = (names[7], names[100])
    at = _start(zoo_bank, monkeypatch, "explorer",
                query={"models": ",".join(models), "thr": "7.5"})        # above every confidence
    bank = at.session_state["_bank"]
    got = resolve.resolve(bank, state.ViewState(models=models, thresholds=(7.5,)))
    assert got.models == tuple(m for m in bank.model_ids if m in models)
    assert len(got.sliders) == 1 and got.hand_thresholds == (got.sliders[0].top,) == got.thresholds
    assert got.on == "all" and not got.fitted
    bank_analysis = analysis.BankAnalysis(str(zoo_bank))
    stage = bank_analysis.stage_signals(analysis.CascadeSpec(models=got.models))[0]
    assert got.sliders[0].low == float(np.min(stage.confidence)) and got.sliders[0].top > float(np.max(stage.confidence))
    target = resolve.resolve(bank, state.ViewState(models=models, mode="target", target_kind="escalated",
                                                   target_value=0.4))
    expected = bank_analysis.fit_for_target(analysis.CascadeSpec(models=got.models), max_escalated=0.4)
    assert target.fitted and target.on == "eval" and target.sliders == ()
    assert target.thresholds == tuple(float(t) for t in expected)
    assert at.slider(key="w_thr_0").value == pytest.approx(got.sliders[0].top)


def test_no_model_picker_offers_select_all(zoo_bank, monkeypatch):
    """Streamlit's multiselect shows a "Select all" action for up to 1,000 options unless told not to;
    a cascade holds at most 4 models and the shortlist a memory-bound handful."""
    at = _start(zoo_bank, monkeypatch, "explorer")
    picker = at.multiselect(key="w_models")
    assert len(picker.options) == 120 and picker.proto.select_all == 0
    assert picker.proto.max_selections == 4
    at = _start(zoo_bank, monkeypatch, "leaderboard")
    at.segmented_control(key="w_stages").set_value(3).run()
    shortlist = at.multiselect(key="w_shortlist")
    assert shortlist.proto.select_all == 0 and shortlist.proto.max_selections == families.max_shortlist(300)


@pytest.mark.parametrize("page", ["explorer", "gallery", "live"])
def test_every_cascade_page_resolves_its_cascade_once_per_run(zoo_bank, monkeypatch, page):
    from cascade_explorer.dashboard import resolve

    at = _start(zoo_bank, monkeypatch, page)
    calls = []
    original = resolve.view_chain
    monkeypatch.setattr(resolve, "view_chain", lambda *a, **k: calls.append(1) or original(*a, **k))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(calls) == 1         # the old Gallery and Live worked it out through ui.resolve_cascade instead


def test_the_3_model_search_runs_in_the_background_and_a_new_shortlist_cancels_it(zoo_bank, monkeypatch):
    """The leaderboard's 3-model search shows its progress instead of blocking the page; changing the
    shortlist abandons the old search (it stops at its next chain, its result is never shown) and the
    table then comes from the new one, equal to the direct computation."""
    import threading

    from cascade_explorer.core import search
    from cascade_explorer.dashboard import jobs, scale_ui

    gate = threading.Event()
    curves = []
    original = search.cascade_curve

    def held(*args, **kwargs):
        curves.append(1)
        gate.wait(60)
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "cascade_curve", held)
    monkeypatch.setattr(scale_ui, "GRACE_S", 0.2)
    at = _start(zoo_bank, monkeypatch, "leaderboard")
    at.selectbox(key="w_criterion").set_value("entropy").run()      # a criterion no other test searched
    from cascade_explorer.core.bank import Bank

    # another criterion's signals are opened in the background first (see the test above)
    assert scale_ui.warm_job(Bank.open(zoo_bank), "val", "entropy").wait(120)
    at.run()
    at.segmented_control(key="w_stages").set_value(3).run()
    assert not at.exception
    bar = at.get("progress")
    assert len(bar) == 1 and "Searching the cascades of" in bar[0].proto.text and not at.dataframe
    shortlist = list(at.multiselect(key="w_shortlist").value)
    old = scale_ui.registry().peek(at.session_state["_job_leaderboard_search"])
    assert old.state == jobs.RUNNING and len(shortlist) >= 4
    at.multiselect(key="w_shortlist").set_value(shortlist[:-1]).run()
    assert old.cancelled and at.get("progress")
    gate.set()
    assert old.wait(60) and old.state == jobs.CANCELLED and old.result is None
    new = scale_ui.registry().peek(at.session_state["_job_leaderboard_search"])
    assert new is not old and new.wait(120) and new.state == jobs.DONE
    at.run()
    assert not at.exception and len(at.dataframe) == 1 and not at.get("progress")
    direct = analysis.BankAnalysis(str(zoo_bank), store=False).frontier(
        criterion="entropy", max_stages=3, shortlist=[m for m in shortlist[:-1]])
    pd.testing.assert_frame_equal(new.result, direct)
    stopped = old.snapshot()
    assert stopped.done - 120 <= 1 < stopped.total - 120           # the old search stopped after its first chain


def test_the_leaderboard_pages_through_its_rows(zoo_bank, monkeypatch, downloads):
    at = _start(zoo_bank, monkeypatch, "leaderboard")
    at.toggle(key="w_per_pair").set_value(False).run()          # every frontier point: hundreds of rows
    n_rows = len(analysis.BankAnalysis(str(zoo_bank)).frontier())
    assert n_rows > 100
    assert len(at.dataframe[0].value) == min(n_rows, 500)         # one page of the default size
    at.selectbox(key="flt_leaderboard_page_size").set_value(100).run()
    first = at.dataframe[0].value
    assert len(first) == 100
    pages = -(-n_rows // 100)
    at.number_input(key="flt_leaderboard_page").set_value(pages).run()
    last = at.dataframe[0].value
    assert len(last) == n_rows - 100 * (pages - 1)
    assert not set(map(tuple, last[["cascade", "thresholds"]].values)) & set(map(tuple, first[["cascade", "thresholds"]].values))
    assert f"of {n_rows:,}" in " ".join(c.value for c in at.caption)
    assert len(downloads["leaderboard_csv"].splitlines()) == n_rows + 1     # the CSV holds every page
    at.selectbox(key="flt_leaderboard_family").set_value("vit").run()      # fewer rows: the page is clamped
    assert not at.exception and len(at.dataframe[0].value) >= 1

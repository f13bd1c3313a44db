"""The Exit gallery shows a corrupted split's images as its models saw them."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cascade_explorer.core.adapters import create_adapter
from cascade_explorer.core.bank import DEFAULT_BANK_PATH, Bank
from cascade_explorer.dashboard import data

from image_cases import EPS, plugin_spy
from test_dashboard_app import seen

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
SPLIT = "val-corrupted"
MODEL = "mobilenet_v1_025_128"


@pytest.fixture
def corrupted_bank(shared_dir, monkeypatch):
    bank = Bank.open(DEFAULT_BANK_PATH)
    if SPLIT not in bank.splits or MODEL not in bank.models_for(SPLIT):
        pytest.skip(f"default bank has no {MODEL} logits on {SPLIT}")
    monkeypatch.setenv("CASCADE_EXPLORER_IMAGES", str(shared_dir / "data" / "imagenet-val-1300" / "data"))
    monkeypatch.setenv("CASCADE_EXPLORER_MODELS", str(shared_dir / "models" / "tflite"))
    return bank


def test_gallery_pixels_reproduce_the_stored_corrupted_logits(corrupted_bank, shared_dir):
    bank = corrupted_bank
    transform = bank.manifest["splits"][SPLIT]["transform"]
    adapter = create_adapter(bank.model(MODEL).spec)
    stored = np.asarray(bank.logits(MODEL, SPLIT), dtype=np.float32)
    clean = np.asarray(bank.logits(MODEL, bank.default_split), dtype=np.float32)
    images = shared_dir / "data" / "imagenet-val-1300" / "data"
    for row in (0, 1, 2):
        path = images / Path(bank.image_paths(SPLIT)[row]).name
        pixels = data.transformed_image(str(path), transform, str(bank.sample_ids(SPLIT)[row]))
        assert pixels.dtype == np.uint8 and pixels.ndim == 3
        logits = adapter.forward(adapter.preprocess(Image.fromarray(pixels))[None])[0]
        np.testing.assert_allclose(logits, stored[row], atol=2e-3 * max(1.0, np.abs(stored[row]).max()))
        # and the corruption really changed what the model saw
        assert not np.allclose(stored[row], clean[row])


def test_gallery_page_on_the_corrupted_split_renders(corrupted_bank, monkeypatch):
    monkeypatch.delenv("CASCADE_EXPLORER_BANK", raising=False)
    monkeypatch.delenv("CASCADE_EXPLORER_BANKS", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.query_params["split"] = SPLIT
    at.run()
    at.switch_page("views/gallery.py").run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    assert "shown as stored" not in captions and "cannot redo" not in captions


def test_gallery_decodes_bank_images_safely(tmp_path, monkeypatch):
    """Issue #12: the gallery decodes every picture with core.images (not st.image on the path, which lets
    Pillow open any format): a PostScript file under a bank image's name never reaches the EPS plugin
    (Ghostscript); the card says what the file is instead of a picture."""
    bank = Bank.open(DEFAULT_BANK_PATH)
    split = bank.default_split
    folder = tmp_path / "images"
    folder.mkdir()
    for rel in bank.image_paths(split):
        if rel:
            (folder / Path(rel).name).write_bytes(EPS)
    for name in ("CASCADE_EXPLORER_BANK", "CASCADE_EXPLORER_BANKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CASCADE_EXPLORER_IMAGES", str(folder))
    monkeypatch.setenv("CASCADE_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CASCADE_EXPLORER_OFFLINE", "1")
    data.plain_image.clear()
    with plugin_spy(monkeypatch) as opened:
        at = AppTest.from_file(str(APP), default_timeout=300)
        at.query_params["split"] = split
        at.run()
        at.switch_page("views/gallery.py").run()
    assert not at.exception, [e.value for e in at.exception]
    refused = [seen(c.value) for c in at.caption if seen(c.value).startswith("Cannot show this picture")]
    assert refused and all("PostScript (EPS)" in c and "convert it to PNG or JPEG" in c for c in refused), refused
    assert opened == [], f"plugins outside the allow-list saw a bank image: {opened}"


def test_gallery_picture_is_the_decoded_image_shrunk(tmp_path):
    path = tmp_path / "photo.JPEG"
    Image.new("RGB", (1200, 600), (10, 200, 30)).save(path, quality=95)
    pixels = data.plain_image(str(path))
    assert pixels.shape == (data.GALLERY_PX // 2, data.GALLERY_PX, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - (10, 200, 30)).max() <= 3

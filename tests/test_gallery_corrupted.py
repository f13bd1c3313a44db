"""The Exit gallery shows a corrupted split's images as its models saw them."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cascade_explorer.core.adapters import create_adapter
from cascade_explorer.core.bank import DEFAULT_BANK_PATH, Bank
from cascade_explorer.dashboard import data

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

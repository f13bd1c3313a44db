import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests derandomized (HYPOTHESIS_PROFILE=ci, set by .ci/run) so that a landing
# is reproducible; a developer's plain run explores new random examples each time (pytest
# --hypothesis-seed=N replays one).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared next to the checkout, or wherever CASCADE_EXPLORER_SHARED points.
SHARED_DIR = Path(os.environ.get("CASCADE_EXPLORER_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder (real images, TFLite models); skips the test when absent."""
    if not (SHARED_DIR / "data" / "imagenet-val-1300" / "dataset.txt").is_file():
        pytest.skip(f"../shared not found at {SHARED_DIR} (set CASCADE_EXPLORER_SHARED)")
    return SHARED_DIR


@pytest.fixture
def cases_dir(shared_dir) -> Path:
    """../shared/cases/images: small bad inputs from the audit (skips without them)."""
    folder = shared_dir / "cases" / "images"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture(scope="session")
def tiny_specs(tmp_path_factory):
    """Two tiny timm models with different preprocessing (random weights, saved locally): model specs."""
    import timm
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    specs = []
    for arch in ("test_efficientnet", "test_vit"):
        torch.manual_seed(0)
        model = timm.create_model(arch)
        path = folder / f"{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        specs.append(f"timm:{arch}={path}")
    return specs


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """What the dashboard's download buttons would hand the user: {button key or label: payload}."""
    import streamlit

    captured = {}
    original = streamlit.download_button

    def recorder(label, data, *args, **kwargs):
        captured[kwargs.get("key") or label] = data() if callable(data) else data
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(streamlit, "download_button", recorder)
    return captured


@pytest.fixture(autouse=True)
def _await_background_jobs(monkeypatch):
    """AppTest runs are single script runs with no browser to poll a job's progress: let the page wait
    for the background job that opens a bank (dashboard/scale_ui.bank_ready) instead of showing its
    progress after GRACE_S, so a test on a slow machine sees the page it asked for. The tests of the
    progress page itself set GRACE_S back."""
    from cascade_explorer.dashboard import scale_ui

    monkeypatch.setattr(scale_ui, "GRACE_S", 120.0)

"""Real-browser test of the Live page: headless Chromium uploads pictures to the real Streamlit server
and sees the cascade's trace (the answer core gives), a clear message for a bad file, no exception
box, no console error. Screenshots go to test-artifacts/. Reuses tests/test_browser.py's server."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade_explorer.core.bank import Bank
from cascade_explorer.core.live import Cascade

from live_support import encode, make_bank, photo_like, shared_images
from test_browser import (ARTIFACTS, CHROMIUM, SHARED_IMAGES, chromium_page, dashboard_server, is_base_path_probe,
                          metric_value, wait_drawn, wait_idle)

pytestmark = [pytest.mark.slow, pytest.mark.browser]
MODELS = "efficientnet_lite0,efficientnet_lite1"


@pytest.fixture(scope="module")
def live_bank(tmp_path_factory) -> Path:
    shared = SHARED_IMAGES.parents[1] if (SHARED_IMAGES / "dataset.txt").is_file() else None
    return make_bank(tmp_path_factory.mktemp("browser-live") / "live-bank", n=20, shared_dir=shared)


def wait_for_answers(page, count: int, timeout_ms: int = 240_000):
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=\"stAlert\"]')]"
        ".filter(a => a.innerText.includes('Answer:')).length >= n", arg=count, timeout=timeout_ms)
    wait_idle(page, timeout_ms)


def test_upload_pictures_and_see_the_trace(live_bank, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is absent (Debian package 'chromium'; scripts/test.sh installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    if (SHARED_IMAGES / "dataset.txt").is_file():
        picture, _ = shared_images(SHARED_IMAGES.parents[1], 1)[0]
    else:
        picture = tmp_path / "photo.jpg"
        picture.write_bytes(encode(photo_like(seed=4), "JPEG", quality=90))
    bad = tmp_path / "not-a-picture.png"
    bad.write_bytes(b"this is text with a .png name\n")
    want = Cascade.from_bank(Bank.open(live_bank), MODELS.split(","), "max_softmax", [0.5]).predict(picture)

    env = {"CASCADE_EXPLORER_IMAGES": str(SHARED_IMAGES / "data")} if SHARED_IMAGES.is_dir() else {}
    with dashboard_server(live_bank, ARTIFACTS / "browser-live-server.log", env) as base, chromium_page() as page:
        console_errors: list[str] = []

        def on_console(message):
            url = (message.location or {}).get("url", "")
            # The favicon (a Material icon) is fetched from fonts.gstatic.com, unreachable offline:
            # that is the app shell's, not this page's; everything served by our server must load.
            if message.type == "error" and not (url and not url.startswith(base)) \
                    and not is_base_path_probe(url, message.text):
                console_errors.append(f"{message.type}: {message.text} ({url})")

        page.on("console", on_console)
        page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
        page.on("response", lambda r: failed.append(f"{r.url} {r.status}")
                if r.status >= 400 and not is_base_path_probe(r.url, str(r.status)) else None)

        # A shared deep link to Live with the cascade in the URL, on a fresh server.
        page.goto(f"{base}/live?models={MODELS}&thr=0.5")
        page.get_by_role("heading", name="Live", level=1).first.wait_for(timeout=120_000)
        uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        uploader.wait_for(state="attached", timeout=240_000)   # after the models loaded
        wait_idle(page, 240_000)

        uploader.set_input_files([str(picture), str(bad)])
        wait_for_answers(page, 1)
        answer = page.locator('[data-testid="stAlert"]').filter(has_text="Answer:").first.inner_text()
        assert want.class_name in answer and f"class {want.prediction}" in answer, answer
        assert f"from stage {want.exit_stage + 1} of 2" in answer
        refused = page.locator('[data-testid="stAlert"]').filter(has_text="not-a-picture.png").first.inner_text()
        assert "not a recognised image" in refused
        assert page.get_by_text("Stage 1 of 2", exact=False).count() >= 1
        assert metric_value(page, "Images this session") == "1"
        assert metric_value(page, "Cascade time").endswith("ms")
        assert metric_value(page, "Last model alone").endswith("ms")
        assert page.locator('[data-testid="stException"]').count() == 0
        # the uploaded picture is shown beside its trace (and loaded before the screenshot)
        page.wait_for_function(
            "() => { const imgs = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
            " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }", timeout=60_000)
        wait_drawn(page)
        page.screenshot(path=str(ARTIFACTS / "browser-live-upload.png"), full_page=True)
        assert console_errors == [], (console_errors, failed)

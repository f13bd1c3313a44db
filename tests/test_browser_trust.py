"""Real-browser test of issue 11's views (headless Chromium via Playwright, the real Streamlit server):
the right/wrong histograms' counts follow the threshold slider and match core; the reliability and
risk-coverage tabs draw; target mode with a guarantee shows the certificate; the leaderboard has the
router columns. Screenshots of each go to test-artifacts/trust-*.png."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from cascade_explorer.core import analysis
from test_browser import (ARTIFACTS, CHROMIUM, SHARED_IMAGES, browser_bank, chromium_page,  # noqa: F401
                          dashboard_server, url_params, wait_idle)

pytestmark = [pytest.mark.slow, pytest.mark.browser]
HEADLINE = "mobilenet_v3_small_224,efficientnet_lite0"


def wait_visible_drawn(page, timeout_ms: int = 60_000) -> None:
    """Until every visible Plotly chart has drawn its SVG (charts in hidden tabs draw when shown)."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
        ".filter(c => c.offsetParent !== null).every(c => c.querySelector('.js-plotly-plot .main-svg'))",
        timeout=timeout_ms)


def stage_counts(page) -> tuple[int, ...]:
    text = page.get_by_text(re.compile(r"^Stage 1 \(")).first.locator("xpath=..").inner_text()
    match = re.search(r"escalates (\d+) of (\d+) right answers.*keeps (\d+) of (\d+) wrong answers", text)
    assert match, text
    return tuple(int(g) for g in match.groups())


def core_counts(bank: Path, params: dict) -> tuple[int, ...]:
    models = tuple(params["models"].split(","))
    threshold = float(params["thr"].split(",")[0])
    first = analysis.stage_signals(str(bank), analysis.CascadeSpec(models=models))[0]
    kept = first.confidence >= threshold
    right = first.correct
    return int((right & ~kept).sum()), int(right.sum()), int((~right & kept).sum()), int((~right).sum())


def wait_counts_match_core(page, bank: Path, timeout_s: float = 60) -> tuple[tuple[int, ...], dict]:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        wait_idle(page)
        params = url_params(page)
        shown = stage_counts(page)
        if "thr" in params and shown == core_counts(bank, params):
            return shown, params
        if time.monotonic() > deadline:
            raise AssertionError(f"counts shown {shown} are not core's {core_counts(bank, params)} for {params}")
        page.wait_for_timeout(250)


def test_calibration_views_and_certificate_in_a_real_browser(browser_bank):
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is absent (Debian package 'chromium')")
    ARTIFACTS.mkdir(exist_ok=True)
    models = HEADLINE if browser_bank.name == "imagenet-val-1300" else "small,large"
    with dashboard_server(browser_bank, ARTIFACTS / "trust-server.log") as base, \
            chromium_page((1400, 1100)) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        page.goto(f"{base}/explorer?{urllib.parse.urlencode({'models': models})}")
        page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
        wait_idle(page)
        panel = page.get_by_text(re.compile(r"^Stage 1 \(")).first
        panel.wait_for(timeout=60_000)
        before, params = wait_counts_match_core(page, browser_bank)

        thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
        thumb.focus()
        for _ in range(60):
            page.keyboard.press("ArrowRight")
        after, params_after = wait_counts_match_core(page, browser_bank)
        assert float(params_after["thr"]) > float(params["thr"]) and after[0] > before[0]
        assert page.locator('[data-testid="stException"]').count() == 0
        heading = page.get_by_role("heading", name=re.compile("Why the thresholds work"))
        heading.scroll_into_view_if_needed()
        page.evaluate("() => document.querySelector('h3').scrollIntoView({block: 'start'})")
        wait_visible_drawn(page)
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "trust-right-wrong.png"))
        page.screenshot(path=str(ARTIFACTS / "trust-explorer-router.png"), full_page=True)

        for name, file in (("Reliability (calibration)", "trust-reliability.png"),
                           ("Risk-coverage", "trust-risk-coverage.png")):
            page.get_by_text(name, exact=True).first.click()
            page.wait_for_function(f"() => window.location.search.includes('calib=')", timeout=30_000)
            wait_idle(page)
            wait_visible_drawn(page)
            page.wait_for_timeout(800)
            page.evaluate("() => document.querySelector('h3').scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / file))
        assert page.locator('[data-testid="stException"]').count() == 0

        # target mode with a 95% guarantee: the certificate beside the metrics
        query = {"models": models, "mode": "target", "target": "escalated", "tval": "0.4", "delta": "0.05"}
        page.goto(f"{base}/explorer?{urllib.parse.urlencode(query)}")
        page.get_by_text("Certified", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_function("() => document.querySelectorAll('[data-stale=\"true\"]').length === 0 && "
                               "document.querySelectorAll('[data-testid=\"stMetricValue\"]').length >= 6",
                               timeout=60_000)
        page.wait_for_timeout(1500)
        certificate = analysis.certify(str(browser_bank), analysis.CascadeSpec(models=tuple(models.split(","))),
                                       delta=0.05, max_escalated=0.4)
        assert certificate.certified
        assert page.locator('[data-testid="stAlert"]').filter(has_text="Certified at 95% (Learn then Test)").count() == 1
        wait_visible_drawn(page)
        page.screenshot(path=str(ARTIFACTS / "trust-certificate.png"), full_page=False)

        page.goto(f"{base}/leaderboard")
        grid = page.locator('[data-testid="stDataFrame"]').first
        grid.wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "trust-leaderboard.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert errors == [], errors

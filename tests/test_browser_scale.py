"""Real Chromium on a bank of 120 timm-named models (issue 10): the Overview's chart prints a name for
only some models (frontier, headline cascade, best single model), every dot names its model on
hover, and the Model zoo's filter narrows its table."""

from __future__ import annotations

import pytest

from test_browser import ARTIFACTS, CHROMIUM, chromium_page, dashboard_server, wait_drawn, wait_idle
from zoo_bank import write_zoo_bank

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_a_120_model_bank_in_a_real_browser(tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is absent")
    bank = write_zoo_bank(tmp_path / "zoo", n_models=120)
    with dashboard_server(bank, ARTIFACTS / "browser-scale-server.log") as base, chromium_page() as page:
        page.goto(base + "/")
        wait_idle(page, 180_000)
        wait_drawn(page, 180_000)
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        # the single-model trace: 120 dots, text only where a label is printed
        counts = chart.evaluate(
            "el => { const gd = el.querySelector('.js-plotly-plot');"
            " const t = gd.data.find(d => d.name === 'single models');"
            " return [t.text.length, t.text.filter(s => s).length, t.hovertext.filter(s => s).length,"
            " [...el.querySelectorAll('.scatterlayer .textpoint text')].filter(x => x.textContent).length,"
            " gd.layout.xaxis.type]; }")
        n, printed, hover, drawn_text, axis = counts
        assert n == 120 and hover == 120
        assert 1 <= printed < 60 and drawn_text == printed               # names drawn: only the labelled ones
        assert axis == "log"
        page.screenshot(path=str(ARTIFACTS / "browser-scale-overview.png"), full_page=True)

        page.goto(base + "/zoo")
        wait_idle(page, 180_000)
        wait_drawn(page, 180_000)
        page.get_by_text("Filter models").click()
        box = page.locator('input[aria-label="Name contains"]')
        box.fill("vit_base")
        box.press("Enter")
        page.wait_for_function("() => document.body.innerText.includes('20 of 120 models match the filter')",
                               timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "browser-scale-zoo.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count()


def test_a_cold_bank_fills_in_by_itself_in_a_real_browser(tmp_path):
    """A bank whose signal store is cold: the server answers at once (a title, the opening progress, or
    the page when the background job was quicker than its grace), and the page then fills in without
    any click: the progress fragment's st.rerun reaches the browser (what AppTest cannot run)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is absent")
    bank = write_zoo_bank(tmp_path / "cold", n_models=120, signals=False)
    with dashboard_server(bank, ARTIFACTS / "browser-scale-cold-server.log") as base, chromium_page() as page:
        page.goto(base + "/")
        page.wait_for_selector('h1', timeout=60_000)                       # never a blank page
        page.wait_for_selector('[data-testid="stPlotlyChart"]', timeout=180_000)   # filled in, no click
        wait_idle(page, 180_000)
        wait_drawn(page, 180_000)
        assert not page.locator('[data-testid="stException"]').count()
        assert not page.locator('[data-testid="stProgress"]').count()
        page.screenshot(path=str(ARTIFACTS / "browser-scale-cold.png"), full_page=True)

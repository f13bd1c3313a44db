"""Real-browser test: headless Debian Chromium (Playwright) against the real Streamlit server.

Opens every page, moves the Explorer's threshold slider with the keyboard, and checks that the
accuracy shown is the value core computes for the threshold now in the URL; no exception box, no
console error; screenshots go to test-artifacts/. `python tests/test_browser.py` saves the README
screenshot (docs/screenshot-explorer.png) from the default bank.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from cascade_explorer.core import analysis, plots
from cascade_explorer.core.bank import DEFAULT_BANK_PATH
from cascade_explorer.commands.dashboard import dashboard_command
from cascade_explorer.dashboard import demo_bank

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
SHARED_IMAGES = REPO.parent / "shared" / "data" / "imagenet-val-1300"
PAGES = [("", "Cascade Explorer"), ("explorer", "Explorer"), ("leaderboard", "Leaderboard"),
         ("gallery", "Exit gallery"), ("shift", "Distribution shift"), ("zoo", "Model zoo"), ("live", "Live")]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(bank: Path, log_path: Path, extra_env: dict | None = None):
    """Start `cascade-explorer dashboard` (its exact command) on a free port; yield the base URL."""
    port = free_port()
    env = dict(os.environ, CASCADE_EXPLORER_BANK=str(bank), **(extra_env or {}))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(dashboard_command(port=port), env=env, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=REPO)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"dashboard exited with {server.returncode}; see {log_path}")
                try:
                    with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard not healthy after 90 s; see {log_path}")
                time.sleep(0.3)
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def is_base_path_probe(url: str, text: str) -> bool:
    """Streamlit's frontend, opened at /<page>, first tries /<page>/ as the server's base path
    (GET /<page>/_stcore/health and /host-config answer 404), then falls back to /. Those two 404s
    are its normal start-up, not an error of the app; anything else counts."""
    path = urllib.parse.urlparse(url).path
    pages = "|".join(p for p, _ in PAGES if p)
    return "404" in text and re.fullmatch(rf"/({pages})/_stcore/(health|host-config)", path) is not None


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Until the app's script run finished (stApp's data-test-script-state leaves 'running')."""
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " return app && app.getAttribute('data-test-script-state') === 'notRunning'; }",
        timeout=timeout_ms)


def wait_drawn(page, timeout_ms: int = 60_000) -> None:
    """Until every Plotly chart has drawn its SVG and every dataframe its canvas: Streamlit loads both
    lazily, so a finished script run can still show grey placeholders; one that never draws is a bug."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
        ".every(c => c.querySelector('.js-plotly-plot .main-svg'))"
        " && [...document.querySelectorAll('[data-testid=\"stDataFrame\"]')].every(f => f.querySelector('canvas'))",
        timeout=timeout_ms)


def metric_value(page, label: str) -> str:
    card = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)).first
    return card.locator('[data-testid="stMetricValue"]').inner_text().strip()


def url_params(page) -> dict:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query).items()}


def expected_accuracy(bank: Path, params: dict) -> str:
    spec = analysis.CascadeSpec(models=tuple(params["models"].split(",")),
                                criterion=params.get("crit", "max_softmax"),
                                thresholds=tuple(float(t) for t in params["thr"].split(",")))
    ev = analysis.evaluate(str(bank), spec, split=params.get("split") or None, on=params.get("on", "all"))
    return f"{ev['accuracy']:.2%}"


def wait_accuracy_matches_core(page, bank: Path, timeout_s: float = 60, moved: bool = True) -> tuple[str, dict]:
    """Once the server has caught up with the slider (URL threshold == slider value, no run going),
    the accuracy shown must be core's for the URL's cascade. Before the slider was moved its thumb
    sits on the step grid while the threshold may lie between steps (moved=False skips that check)."""
    deadline = time.monotonic() + timeout_s
    slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
    while True:
        wait_idle(page)
        params = url_params(page)
        shown = metric_value(page, "Accuracy")
        caught_up = "thr" in params and "models" in params and (
            not moved or slider.count() == 0 or abs(float(params["thr"].split(",")[0]) - float(slider.get_attribute("value"))) < 1e-9)
        if caught_up and shown == expected_accuracy(bank, params):
            return shown, params
        if time.monotonic() > deadline:
            raise AssertionError(f"accuracy shown {shown!r} is not core's for URL {params} "
                                 f"(slider at {slider.get_attribute('value') if slider.count() else None})")
        page.wait_for_timeout(250)


@pytest.fixture(scope="module")
def browser_bank(tmp_path_factory) -> Path:
    """The shipped default bank when built; otherwise the demo bank (on the real images when present)."""
    if (Path(DEFAULT_BANK_PATH) / "manifest.json").is_file():
        return Path(DEFAULT_BANK_PATH)
    path = tmp_path_factory.mktemp("browser") / "demo"
    if (SHARED_IMAGES / "dataset.txt").is_file():
        return demo_bank.write_demo_bank_on_shared_images(path, SHARED_IMAGES.parents[1])
    return demo_bank.write_demo_bank(path, n_samples=500, n_classes=50)


@contextlib.contextmanager
def chromium_page(viewport=(1400, 1000), color_scheme="light"):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                          color_scheme=color_scheme)
            page = context.new_page()
            yield page
        finally:
            browser.close()


def test_every_page_in_a_real_browser(browser_bank):
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is absent (Debian package 'chromium'; scripts/test.sh installs it)")
    ARTIFACTS.mkdir(exist_ok=True)
    images = {"CASCADE_EXPLORER_IMAGES": str(SHARED_IMAGES / "data")} if SHARED_IMAGES.is_dir() else {}
    with dashboard_server(browser_bank, ARTIFACTS / "browser-server.log", images) as base, chromium_page() as page:
        console_errors: list[str] = []

        def on_console(message) -> None:
            if message.type != "error":
                return
            url = (message.location or {}).get("url", "")
            if is_base_path_probe(url, message.text):
                return
            console_errors.append(f"{message.text} at {url}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))

        # a direct link to a page on a fresh server (no visit to / first) must work
        for url_path, title in PAGES[1:2] + PAGES[:1] + PAGES[2:]:
            page.goto(f"{base}/{url_path}")
            page.wait_for_selector("h1", timeout=60_000)
            wait_idle(page)
            page.get_by_role("heading", name=title, level=1).first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0, f"exception box on /{url_path}"
            wait_drawn(page)
            page.screenshot(path=str(ARTIFACTS / f"browser-{url_path or 'overview'}.png"), full_page=True)

        page.goto(f"{base}/explorer")
        page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
        before, params_before = wait_accuracy_matches_core(page, browser_bank, moved=False)

        thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
        thumb.focus()
        page.keyboard.press("Home")          # lowest threshold: every image exits at stage 1
        after_home, params_home = wait_accuracy_matches_core(page, browser_bank)
        assert params_home["thr"] != params_before["thr"]
        thumb.focus()
        for _ in range(40):                  # arrow keys, one slider step each
            page.keyboard.press("ArrowRight")
        after_arrows, params_arrows = wait_accuracy_matches_core(page, browser_bank)
        assert float(params_arrows["thr"]) > float(params_home["thr"])
        assert before != after_home or after_home != after_arrows, "accuracy text never changed"
        assert page.locator('[data-testid="stException"]').count() == 0
        wait_drawn(page)
        page.screenshot(path=str(ARTIFACTS / "browser-explorer-moved.png"), full_page=True)

        # clicking a point of the chain's curve sets exactly that point's thresholds
        page.wait_for_selector(".js-plotly-plot .scatterlayer g.trace path.point", timeout=60_000)
        chain = page.evaluate("name => document.querySelector('.js-plotly-plot').data.findIndex(t => t.name === name)",
                              plots.CHAIN_TRACE)
        assert chain >= 0
        points = page.locator(".js-plotly-plot .scatterlayer g.trace").nth(chain).locator("path.point")
        before_click = url_params(page)["thr"]
        points.nth(points.count() // 4).click(force=True)
        page.wait_for_function(f"() => !window.location.search.includes('thr={before_click}')", timeout=30_000)
        clicked, params_click = wait_accuracy_matches_core(page, browser_bank, moved=False)
        models = tuple(params_click["models"].split(","))
        curve = analysis.curve(str(browser_bank), analysis.CascadeSpec(models=models))
        assert float(params_click["thr"]) in set(curve.thresholds[:, 0].tolist())
        assert page.locator('[data-testid="stException"]').count() == 0
        wait_drawn(page)
        page.screenshot(path=str(ARTIFACTS / "browser-explorer-clicked.png"), full_page=True)

        # the URL holds the view: a fresh tab with it shows the same numbers
        page.goto(page.url)
        page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
        again, _ = wait_accuracy_matches_core(page, browser_bank, moved=False)
        assert again == clicked

        # a leaderboard row opens that cascade in the Explorer
        page.goto(f"{base}/leaderboard")
        grid = page.locator('[data-testid="stDataFrame"]').first
        grid.wait_for(timeout=60_000)
        wait_idle(page)
        page.wait_for_timeout(500)
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 20, box["y"] + 35 + 18)  # first data row's selection cell
        page.get_by_role("heading", name="Explorer", level=1).first.wait_for(timeout=60_000)
        opened, params_open = wait_accuracy_matches_core(page, browser_bank, moved=False)
        frontier = analysis.frontier(str(browser_bank))
        row = [(tuple(m), tuple(t)) for m, t in zip(frontier["models"], frontier["thresholds"])]
        assert (tuple(params_open["models"].split(",")), (float(params_open["thr"]),)) in row
        assert page.locator('[data-testid="stException"]').count() == 0

        assert console_errors == [], console_errors

    # dark theme (the app follows the system setting): renders without errors; screenshot for a look
    with dashboard_server(browser_bank, ARTIFACTS / "browser-server-dark.log", images) as base, \
            chromium_page(color_scheme="dark") as page:
        page.goto(f"{base}/explorer")
        page.wait_for_selector(".js-plotly-plot .scatterlayer g.trace path.point", timeout=60_000)
        wait_idle(page)
        background = page.evaluate(
            "() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor")
        assert background != "rgb(255, 255, 255)", "dark system theme not followed"
        assert page.locator('[data-testid="stException"]').count() == 0
        wait_drawn(page)
        page.screenshot(path=str(ARTIFACTS / "browser-explorer-dark.png"), full_page=True)


def save_readme_screenshot(out: Path = REPO / "docs" / "screenshot-explorer.png", bank: Path | None = None) -> Path:
    """The Explorer on the default bank, for the README."""
    bank = Path(bank or DEFAULT_BANK_PATH)
    if not (bank / "manifest.json").is_file():
        raise SystemExit(f"default bank not built at {bank}")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the frontier cascade with the largest speed-up: a chain that really splits the work
    frontier = analysis.frontier(str(bank))
    best = frontier.loc[frontier["speedup"].astype(float).idxmax()]
    query = urllib.parse.urlencode({"models": ",".join(best["models"]),
                                    "thr": ",".join(repr(float(t)) for t in best["thresholds"])})
    with dashboard_server(bank, ARTIFACTS / "screenshot-server.log") as base, chromium_page((1500, 1150)) as page:
        page.goto(f"{base}/explorer?{query}")
        page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
        wait_idle(page)
        wait_drawn(page)
        page.wait_for_timeout(500)   # Plotly's own transitions
        page.screenshot(path=str(out), full_page=False)
    return out


if __name__ == "__main__":
    # python tests/test_browser.py [OUT.png [BANK]]
    print(save_readme_screenshot(*[Path(a) for a in sys.argv[1:3]]))

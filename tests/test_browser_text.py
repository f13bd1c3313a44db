"""Real browser (headless Chromium) on a crafted bank: bank and URL text is shown as text.

The bank's name, description, caveats, model names and class names hold Markdown images and links
pointing at a real HTTP server on 127.0.0.1 that records every request, HTML, Streamlit directives
and bidi / zero-width characters. On every page no request may reach that server (no tracking
pixel loads), no link or image to it may exist in the page, the text must be readable literally,
and no bidi override may reach the page (issue 12).
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from test_browser import ARTIFACTS, CHROMIUM, chromium_page, dashboard_server, wait_drawn, wait_idle

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def recorder():
    """A real HTTP server on 127.0.0.1 answering every GET with a 1x1 PNG; yields (base URL, hits)."""
    hits: list[str] = []
    pixel = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                          "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(pixel)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def crafted_bank(path: Path, base: str) -> dict[str, str]:
    from cascade_explorer.core.bank import BankWriter

    texts = {
        "name": f"[bank link]({base}/name-link)",
        "description": f"![pixel]({base}/pixel.png) <img src=\"{base}/html.png\"> :red[alert] $x^2$",
        "caveat": f"\u202eevil-caveat\u200b ![cav]({base}/caveat.png) " + "long " * 3000,
        "model": f"![m]({base}/model.png)[click]({base}/model-link)",
        "other": f"<a href=\"{base}/plotly-link\">big</a>",
        "class": f"![c]({base}/class.png)",
    }
    rng = np.random.default_rng(0)
    n, classes = 300, 10
    writer = BankWriter(path, create={"dataset": {"name": texts["name"], "description": texts["description"],
                                                  "caveats": [texts["caveat"]]},
                                      "class_names": [texts["class"] + str(i) for i in range(classes)]})
    labels = rng.integers(0, classes, n)
    writer.add_split("val", [f"s{i}" for i in range(n)], [f"img{i}.png" for i in range(n)], labels,
                     image_source={"url_base": None})
    for model_id, name, gmacs, skill in (("small", texts["model"], 0.1, 1.5), ("big", texts["other"], 1.0, 3.0)):
        writer.add_model(model_id, display_name=name, backend="external", source={"kind": "user"}, gmacs=gmacs)
        logits = rng.normal(0, 1, (n, classes)).astype(np.float32)
        logits[np.arange(n), labels] += skill
        writer.add_logits(model_id, "val", logits.astype(np.float16))
    return texts


def test_bank_and_url_text_is_plain_text_in_a_real_browser(tmp_path, recorder):
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is absent")
    base, hits = recorder
    bank = tmp_path / "crafted"
    texts = crafted_bank(bank, base)
    ARTIFACTS.mkdir(exist_ok=True)
    port = urllib.parse.urlparse(base).port
    toast_value = f"![t]({base}/toast.png)"
    with dashboard_server(bank, ARTIFACTS / "browser-text-server.log") as app, chromium_page() as page:
        for path in ("", "explorer", "leaderboard", "gallery", "zoo",
                     "explorer?" + urllib.parse.urlencode({"models": toast_value})):
            page.goto(f"{app}/{path}")
            page.wait_for_selector("h1", timeout=60_000)
            wait_idle(page)
            wait_drawn(page)
            page.wait_for_timeout(1000)   # anything the page would load from elsewhere has been asked for
            name = path.split("?")[0] or "overview"
            page.screenshot(path=str(ARTIFACTS / f"browser-text-{name}.png"), full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0, f"exception on /{path}"
            assert hits == [], f"/{path} made the browser request {hits} from another host"
            linked = page.evaluate(
                "port => [...document.querySelectorAll('a[href], img[src], image, [src]')]"
                ".map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('xlink:href') || '')"
                ".filter(u => u.includes(':' + port))", port)
            assert linked == [], f"/{path} links to the crafted host: {linked}"
            body = page.inner_text("body").replace("\u2060", "")   # the invisible joiner that stops autolinks
            assert "\u202e" not in body and "\u200b" not in body
            if name == "overview":
                assert texts["name"] in body and f"![pixel]({base}/pixel.png)" in body
                assert "evil-caveat" in body and "more characters" in body     # capped, rest on request
            if name in ("overview", "explorer", "leaderboard", "zoo"):
                assert texts["model"] in body or texts["model"] in page.content().replace("&amp;", "&")
            if "models=" in path:   # the URL value echoed in a toast, as text
                toast = page.locator('[data-testid="stToast"]').first
                toast.wait_for(timeout=30_000)
                assert toast_value in toast.inner_text().replace("\u2060", "")
                assert hits == []
        # Plotly labels: the HTML-like model name is drawn as text, not as a link
        page.goto(f"{app}/zoo")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
        wait_idle(page)
        svg_text = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot text')].map(t => t.textContent).join('|')")
        assert texts["other"] in svg_text, svg_text[:500]
        assert page.locator(".js-plotly-plot a").count() == 0
    assert hits == []

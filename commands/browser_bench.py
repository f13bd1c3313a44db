"""Browser benchmark of the dashboard at paper scale (issue 10): Chromium time to every chart drawn
per page, and the server's memory with several sessions open.

    python -m cascade_explorer.commands.browser_bench [--bank B ...] [--sessions 5] [--json]

For each bank (the shipped default bank first, then each --bank): starts `cascade-explorer
dashboard`'s exact server on 127.0.0.1 (never another host), warms it with one visit of every page
(the signal store fills on that visit when cold), then for each page opens a new headless Chromium
session (a fresh browser context = a new Streamlit session) and times navigation -> the script run
finished and every Plotly chart's SVG and every dataframe's canvas drawn. Then opens --sessions
sessions at once, each visiting every page, and reads the server's RSS (VmRSS; the peak sampled
every 0.5 s). Targets: <= 3 s per page in Chromium, <= 2 GB server RSS with 5 sessions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import say
from .load_bench import CHROMIUM, CHROMIUM_ARGS, RssSampler, _free_port

PAGES = ("", "explorer", "leaderboard", "gallery", "shift", "zoo")
TARGETS = {"page_s": 3.0, "rss_mb": 2048}
MAX_SESSIONS = 10

DRAWN = ("() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
         " if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;"
         " if (!document.querySelector('h1')) return false;"
         " return [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
         ".every(c => c.querySelector('.js-plotly-plot .main-svg'))"
         " && [...document.querySelectorAll('[data-testid=\"stDataFrame\"]')].every(f => f.querySelector('canvas')); }")


def _visit(context, url: str, timeout_ms: int = 120_000) -> float:
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_timeout(300)      # let the first script run start (state 'notRunning' before it)
    page.wait_for_function(DRAWN, timeout=timeout_ms, polling=50)
    seconds = time.perf_counter() - start
    errors = page.locator('[data-testid="stException"]').count()
    page.close()
    if errors:
        raise RuntimeError(f"{url} shows an exception box")
    return seconds


def measure_bank(bank: Path, sessions: int) -> dict:
    from playwright.sync_api import sync_playwright

    from cascade_explorer.commands.dashboard import dashboard_command, stop_server, wait_until_serving
    from cascade_explorer.dashboard import BANK_ENV

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="cascade-browser-bench-") as folder:
        env = dict(os.environ, **{BANK_ENV: str(bank)})
        server = subprocess.Popen(dashboard_command(port=port, address="127.0.0.1"), env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(Path(folder) / "server.log", "w"))
        sampler = RssSampler(server.pid, every_s=0.5)
        try:
            if not wait_until_serving(base, server, timeout_s=90):
                raise RuntimeError("the dashboard server did not start: " + (Path(folder) / "server.log").read_text()[-500:])
            sampler.start()
            out: dict = {"bank": str(bank), "warm_visit_s": {}, "page_s": {}}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                for page in PAGES:   # the first visit ever: fills caches (and a cold store)
                    out["warm_visit_s"][page or "overview"] = round(_visit(context, f"{base}/{page}"), 2)
                context.close()
                for page in PAGES:   # a new session per page
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    out["page_s"][page or "overview"] = round(_visit(context, f"{base}/{page}"), 2)
                    context.close()
                contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(sessions)]
                for page in PAGES:
                    for context in contexts:
                        _visit(context, f"{base}/{page}")
                time.sleep(1.0)
                out["rss_mb_sessions_open"] = round(sampler.samples[-1][1]) if sampler.samples else None
                for context in contexts:
                    context.close()
                browser.close()
            out["rss_mb_max"] = round(max(mb for _, mb in sampler.samples)) if sampler.samples else None
            out["sessions"] = sessions
        finally:
            sampler.stop.set()
            stop_server(server)
    return out


def main(argv=None) -> int:
    from cascade_explorer.core.bank import DEFAULT_BANK_PATH, is_bank
    from cascade_explorer.core.jsonsafe import dumps

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", action="append", default=[], help="bank folder; repeat for several")
    parser.add_argument("--sessions", type=int, default=5, help=f"sessions open at once (1..{MAX_SESSIONS})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS:
        say(f"browser_bench: --sessions must be 1..{MAX_SESSIONS}, got {args.sessions}", err=True)
        return 2
    if not CHROMIUM.is_file():
        say(f"browser_bench: no browser at {CHROMIUM} (install Debian's chromium package)", err=True)
        return 2
    banks = [Path(DEFAULT_BANK_PATH)] + [Path(b).expanduser().resolve() for b in args.bank]
    for bank in banks:
        if not is_bank(bank):
            say(f"browser_bench: no bank at {bank}", err=True)
            return 2
    results = [measure_bank(bank, args.sessions) for bank in banks]
    if args.json:
        say(dumps(results))
        return 0
    for r in results:
        say(f"{r['bank']}:")
        say("  first visit on a fresh server: " + ", ".join(f"{p} {s} s" for p, s in r["warm_visit_s"].items()))
        say(f"  Chromium, new session, to every chart drawn (target <= {TARGETS['page_s']:g} s): "
            + ", ".join(f"{p} {s} s" for p, s in r["page_s"].items()))
        say(f"  server RSS with {r['sessions']} sessions open: {r['rss_mb_sessions_open']} MB, peak "
            f"{r['rss_mb_max']} MB (target <= {TARGETS['rss_mb']} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

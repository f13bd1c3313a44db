"""Load benchmark of the dashboard: several headless browser sessions at once against one server.

    python -m cascade_explorer.commands.load_bench [--sessions 20] [--duration 300] [--bank B] [--json]

Starts `cascade-explorer dashboard`'s exact server on 127.0.0.1 (only: never another host), then
runs N real headless Chromium sessions (Playwright, one browser, one context each) that, in turn,
open pages, move the Explorer's threshold slider, fit thresholds for a target and upload a picture
on Live. Reports errors (exception boxes, page errors, timeouts), the server time of each script run
(p50 / p95, measured inside the server: dashboard/runlog.py) and the server's RSS over time, against
the targets of issue 12: 0 errors, p95 <= 1 s, RSS growth <= 10% after warm-up. Bounded: at most
20 sessions and 300 seconds. A figure, not a test: the suite runs a short version (3 sessions, 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .common import say

MAX_SESSIONS = 20
MAX_DURATION_S = 300
# RSS growth is measured from the end of warm-up: every session has done each kind of action once
# (every page opened, models loaded, caches filled), or at the latest half of the run
WARMUP_ACTIONS = 6
WARMUP_MAX_FRACTION = 0.5
TARGETS = {"errors": 0, "p95_s": 1.0, "rss_growth": 0.10}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PAGES = ["", "explorer", "leaderboard", "gallery", "shift", "zoo", "live"]
IDLE_JS = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
           " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }")


def check_bounds(sessions: int, duration: float) -> None:
    from cascade_explorer.core.errors import UsageError

    if not 1 <= sessions <= MAX_SESSIONS:
        raise UsageError(f"sessions must be 1..{MAX_SESSIONS}, got {sessions}")
    if not 1 <= duration <= MAX_DURATION_S:
        raise UsageError(f"duration must be 1..{MAX_DURATION_S} seconds, got {duration}")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation (numpy's default), None for no values."""
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples the server's resident memory (MB) every `every_s` seconds: [(seconds since start, MB)]."""

    def __init__(self, pid: int, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.samples, self.stop = pid, every_s, [], threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            mb = _rss_mb(self.pid)
            if mb is not None:
                self.samples.append((time.monotonic() - self.start_time, mb))
            self.stop.wait(self.every_s)


def _upload_picture(bank) -> Path | None:
    """A bank image found on this machine (for Live uploads), else None."""
    from cascade_explorer.core import fetch

    for split in bank.splits:
        source = bank.split_info(split).get("image_source") or {}
        if not isinstance(source, dict) or bank.split_info(split).get("transform"):
            continue
        for rel in bank.image_paths(split)[:50]:
            try:
                return fetch.resolve_image(rel, url_base=source.get("url_base"),
                                           sha256=(source.get("sha256") or {}).get(rel), download=False)
            except Exception:  # noqa: BLE001 - not on this machine
                continue
    return None


async def _session(browser, base: str, index: int, deadline: float, picture: Path | None, log: dict) -> None:
    """One user: pages in turn, a slider move on the Explorer, a target fit, an upload on Live."""
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    page.on("pageerror", lambda e: log["errors"].append(f"session {index}: page error: {e}"))
    step = index   # sessions start at different pages
    try:
        while time.monotonic() < deadline:
            action = ["page", "slider", "page", "target", "page", "upload"][step % 6]
            step += 1
            try:
                if action == "slider":
                    await page.goto(f"{base}/explorer")
                    await page.wait_for_function(IDLE_JS, timeout=60_000)
                    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
                    if await thumb.count():
                        await thumb.focus()
                        for _ in range(3):
                            await page.keyboard.press("ArrowRight" if step % 2 else "ArrowLeft")
                elif action == "target":
                    await page.goto(f"{base}/explorer?mode=target&target=accuracy")
                elif action == "upload" and picture is not None:
                    await page.goto(f"{base}/live")
                    await page.wait_for_function(IDLE_JS, timeout=60_000)
                    chooser = page.locator('[data-testid="stFileUploaderDropzoneInput"]').first
                    if await chooser.count():
                        await chooser.set_input_files(str(picture))
                else:
                    await page.goto(f"{base}/{PAGES[step % len(PAGES)]}")
                await page.wait_for_timeout(300)
                await page.wait_for_function(IDLE_JS, timeout=60_000)
                boxes = await page.locator('[data-testid="stException"]').count()
                if boxes:
                    text = await page.locator('[data-testid="stException"]').first.inner_text()
                    log["errors"].append(f"session {index}: exception box after {action}: {text[:200]}")
                log["actions"] += 1
                if log["actions"] == WARMUP_ACTIONS * log["sessions"]:
                    log["warm_at"] = time.monotonic()
            except Exception as error:  # noqa: BLE001 - a timeout or a closed page is an error of the run
                if time.monotonic() < deadline:
                    log["errors"].append(f"session {index}: {action}: {type(error).__name__}: {str(error)[:200]}")
    finally:
        await context.close()


async def _drive(base: str, sessions: int, duration: float, picture: Path | None) -> dict:
    from playwright.async_api import async_playwright

    log = {"errors": [], "actions": 0, "sessions": sessions, "warm_at": None}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            deadline = time.monotonic() + duration
            await asyncio.gather(*[_session(browser, base, i, deadline, picture, log) for i in range(sessions)])
        finally:
            await browser.close()
    return log


def summarise(runs: list[dict], rss: list[tuple[float, float]], log: dict, sessions: int, duration: float,
              warm_s: float | None = None) -> dict:
    """The report: errors, server time per script run (p50/p95, seconds), RSS (MB) over time, verdicts."""
    seconds = [r["seconds"] for r in runs if r["outcome"] in ("ok", "control")]
    failed = [r for r in runs if r["outcome"] not in ("ok", "control")]
    errors = log["errors"] + [f"server: {r['outcome']} on {r['page']}" for r in failed]
    warm_s = WARMUP_MAX_FRACTION * duration if warm_s is None else min(warm_s, WARMUP_MAX_FRACTION * duration)
    warm = [mb for t, mb in rss if t >= warm_s]
    growth = (warm[-1] - warm[0]) / warm[0] if len(warm) >= 2 and warm[0] > 0 else None
    report = {
        "sessions": sessions, "duration_s": duration, "actions": log["actions"], "script_runs": len(runs),
        "errors": len(errors), "error_messages": errors[:20],
        "rerun_p50_s": percentile(seconds, 50), "rerun_p95_s": percentile(seconds, 95),
        "rerun_max_s": max(seconds) if seconds else None,
        "rss_mb": {"start": rss[0][1] if rss else None, "after_warmup": warm[0] if warm else None,
                   "end": rss[-1][1] if rss else None, "max": max(mb for _, mb in rss) if rss else None,
                   "growth_after_warmup": growth, "warmup_s": round(warm_s, 1)},
        "rss_timeline": [(round(t, 1), round(mb, 1)) for t, mb in rss[:: max(1, len(rss) // 30)]],
        "targets": TARGETS,
    }
    report["meets"] = {"errors": report["errors"] <= TARGETS["errors"],
                       "p95": report["rerun_p95_s"] is not None and report["rerun_p95_s"] <= TARGETS["p95_s"],
                       "rss": growth is not None and growth <= TARGETS["rss_growth"]}
    return report


def run_load(*, sessions: int, duration: float, bank: str | None = None) -> dict:
    """Start a server on 127.0.0.1, drive `sessions` browser sessions for `duration` seconds, report."""
    from cascade_explorer.commands.dashboard import dashboard_command, stop_server, wait_until_serving
    from cascade_explorer.core.bank import DEFAULT_BANK_PATH, Bank
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.dashboard import BANK_ENV
    from cascade_explorer.dashboard.runlog import RUN_LOG_ENV

    check_bounds(sessions, duration)
    if not CHROMIUM.is_file():
        raise UsageError(f"no browser at {CHROMIUM}: install Debian's chromium package")
    bank_path = Path(bank or DEFAULT_BANK_PATH).expanduser().resolve()
    picture = _upload_picture(Bank.open(bank_path))
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="cascade-load-") as folder:
        run_log = Path(folder) / "runs.jsonl"
        env = dict(os.environ, **{BANK_ENV: str(bank_path), RUN_LOG_ENV: str(run_log)})
        server = subprocess.Popen(dashboard_command(port=port, address="127.0.0.1"), env=env,
                                  stdout=subprocess.DEVNULL, stderr=open(Path(folder) / "server.log", "w"))
        sampler = RssSampler(server.pid)
        try:
            base = f"http://127.0.0.1:{port}"
            if not wait_until_serving(base, server, timeout_s=90):
                raise UsageError("the dashboard server did not start: " + (Path(folder) / "server.log").read_text()[-500:])
            sampler.start()
            log = asyncio.run(_drive(base, sessions, duration, picture))
        finally:
            sampler.stop.set()
            stop_server(server)
        runs = [json.loads(line) for line in run_log.read_text().splitlines()] if run_log.is_file() else []
    warm_s = None if log["warm_at"] is None else log["warm_at"] - sampler.start_time
    report = summarise(runs, sampler.samples, log, sessions, duration, warm_s)
    report["upload_picture"] = str(picture) if picture else None
    return report


def format_report(r: dict) -> str:
    def ms(v):
        return "n/a" if v is None else f"{1000 * v:.0f} ms"

    rss, ok = r["rss_mb"], r["meets"]
    growth = "n/a" if rss["growth_after_warmup"] is None else f"{100 * rss['growth_after_warmup']:+.1f} %"
    lines = [
        f"{r['sessions']} sessions for {r['duration_s']:g} s: {r['actions']} actions, {r['script_runs']} script runs",
        f"  errors        {r['errors']}  (target 0: {'met' if ok['errors'] else 'NOT met'})",
        f"  server time   p50 {ms(r['rerun_p50_s'])}, p95 {ms(r['rerun_p95_s'])}, max {ms(r['rerun_max_s'])} "
        f"per script run  (target p95 <= 1 s: {'met' if ok['p95'] else 'NOT met'})",
        f"  server RSS    start {rss['start']:.0f} MB, after warm-up {rss['after_warmup']:.0f} MB, end {rss['end']:.0f} MB, "
        f"max {rss['max']:.0f} MB, growth after warm-up ({rss['warmup_s']:g} s) {growth}  (target <= 10 %: {'met' if ok['rss'] else 'NOT met'})"
        if rss["start"] is not None else "  server RSS    not measured (no /proc)",
        "  RSS over time " + ", ".join(f"{t:g}s {mb:.0f}MB" for t, mb in r["rss_timeline"][:12]),
    ]
    lines += [f"  ! {m}" for m in r["error_messages"][:10]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from cascade_explorer.core.errors import CascadeExplorerError

    parser = argparse.ArgumentParser(prog="load_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=MAX_SESSIONS, help=f"browser sessions (1..{MAX_SESSIONS})")
    parser.add_argument("--duration", type=float, default=MAX_DURATION_S, help=f"seconds (1..{MAX_DURATION_S})")
    parser.add_argument("--bank", help="bank folder (default: the shipped default bank)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = run_load(sessions=args.sessions, duration=args.duration, bank=args.bank)
    except CascadeExplorerError as error:
        message = str(error).replace("sessions must", "--sessions must").replace("duration must", "--duration must")
        say(f"load_bench: error: {message}", err=True)
        return 2
    say(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if all(report["meets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

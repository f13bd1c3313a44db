"""How long the server takes to re-render the Explorer after a threshold slider move (`measure`).

    python -m cascade_explorer.commands.rerender_bench [--bank PATH ...] [--repeats 30]

Runs the real app in Streamlit's AppTest (same process, no browser), warms it up, then moves the
first threshold slider to a new value each time (so no cached evaluation is reused) and times the
full script rerun: callbacks, core evaluation with bootstrap interval, figure building, element
serialisation. Prints median / p90 / max in ms. Target: median <= 300 ms on the default bank.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from . import APP_PATH, BANK_ENV


def _opening(at) -> bool:
    """The page shows the bank-opening progress (scale_ui.bank_ready) instead of its content."""
    return any("fills in by itself" in str(element.value) for element in at.info)


def _until_open(at, limit_s: float = 900.0) -> float:
    """Rerun every half second (as the page's progress fragment does) until the bank is open;
    returns the seconds waited."""
    start = time.perf_counter()
    while _opening(at) and time.perf_counter() - start < limit_s:
        time.sleep(0.5)
        at.run()
    return time.perf_counter() - start


def measure(bank: Path, repeats: int = 30, page: str = "explorer") -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ[BANK_ENV] = str(bank)
    at = AppTest.from_file(str(APP_PATH), default_timeout=300)
    t0 = time.perf_counter()
    at.run()
    at.switch_page(f"views/{page}.py").run()
    cold_s = time.perf_counter() - t0
    opening_s = _until_open(at)        # a cold server opens a big bank in the background first
    if at.exception:
        raise RuntimeError(f"the app failed: {at.exception[0].value}")
    slider = at.slider(key="w_thr_0")
    lo, hi = float(slider.min), float(slider.max)
    # distinct values across the range: every rerun evaluates a new threshold
    values = [lo + (hi - lo) * ((i * 0.618033988749895) % 1.0) for i in range(1, repeats + 3)]
    for v in values[:2]:  # warm-up (imports, first figure)
        at.slider(key="w_thr_0").set_value(v).run()
    times = []
    for v in values[2:]:
        start = time.perf_counter()
        at.slider(key="w_thr_0").set_value(v).run()
        times.append((time.perf_counter() - start) * 1000)
        if at.exception:
            raise RuntimeError(f"the app failed: {at.exception[0].value}")
    times.sort()
    models = at.session_state["_view"].models
    return {
        "bank": str(bank), "page": page, "models": list(models), "repeats": repeats,
        "first_render_s": round(cold_s, 3), "bank_opening_s": round(opening_s, 3),
        "rerender_ms_median": round(statistics.median(times), 1),
        "rerender_ms_p90": round(times[int(0.9 * (len(times) - 1))], 1),
        "rerender_ms_max": round(times[-1], 1),
        "target_ms": 300,
    }


PAGES = ("overview", "explorer", "leaderboard", "gallery", "shift", "zoo")


def first_renders(bank: Path, pages=PAGES) -> dict:
    """Server seconds of each page's first render in a new session (a fresh AppTest per page, in this
    process: the bank's BankAnalysis and its signal store are warm after the first page, as on a
    server that already served someone). The first page is timed twice: cold (the first session of
    this process) and again in a new session."""
    from streamlit.testing.v1 import AppTest

    os.environ[BANK_ENV] = str(bank)
    out = {}
    for i, page in enumerate((pages[0],) + tuple(pages)):
        at = AppTest.from_file(str(APP_PATH), default_timeout=600)
        start = time.perf_counter()
        at.run()
        if page != "overview":
            at.switch_page(f"views/{page}.py").run()
        seconds = round(time.perf_counter() - start, 3)
        if at.exception:
            raise RuntimeError(f"page {page} failed: {at.exception[0].value}")
        if _opening(at):   # the first visit showed the opening progress: time it, then the page itself
            out["bank opening in the background (progress shown)"] = round(_until_open(at), 3)
        out[f"{page} (first session)" if i == 0 else page] = seconds
    return {"bank": str(bank), "first_render_s": out, "target_s": 1.0}

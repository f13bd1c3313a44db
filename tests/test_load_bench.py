"""The dashboard load benchmark: its bounds, and a short run (3 sessions, 30 s) against a real server."""

from __future__ import annotations

import pytest

from cascade_explorer.commands import load_bench
from cascade_explorer.core.bank import DEFAULT_BANK_PATH


@pytest.mark.parametrize("argv, message", [(["--sessions", "21"], "--sessions must be 1..20, got 21"),
                                           (["--sessions", "0"], "--sessions must be 1..20"),
                                           (["--duration", "301"], "--duration must be 1..300 seconds")])
def test_load_is_bounded(argv, message, capsys):
    assert load_bench.main(argv) == 2
    assert message in capsys.readouterr().err


def test_summary_percentiles_and_rss_growth():
    runs = [{"seconds": s, "outcome": "ok", "page": "explorer"} for s in (0.1, 0.2, 0.3, 0.4, 2.0)]
    runs.append({"seconds": 0.5, "outcome": "KeyError", "page": "gallery"})
    rss = [(t, 100.0 + (t if t < 5 else 5) + (t - 5) * 0.5 * (t >= 5)) for t in range(11)]
    report = load_bench.summarise(runs, rss, {"errors": [], "actions": 7}, 2, 10.0, warm_s=5.0)
    assert report["errors"] == 1 and "KeyError on gallery" in report["error_messages"][0]
    assert report["rerun_p50_s"] == pytest.approx(0.3) and report["rerun_p95_s"] == pytest.approx(1.68)
    assert report["rss_mb"]["growth_after_warmup"] == pytest.approx((107.5 - 105.0) / 105.0)
    assert report["meets"] == {"errors": False, "p95": False, "rss": True}


@pytest.mark.slow
@pytest.mark.browser
def test_short_load_run_has_no_errors():
    if not load_bench.CHROMIUM.is_file() or not (DEFAULT_BANK_PATH / "manifest.json").is_file():
        pytest.skip("needs Debian's chromium and the default bank")
    report = load_bench.run_load(sessions=3, duration=30)
    assert report["errors"] == 0, report["error_messages"]
    assert report["actions"] >= 3 and report["script_runs"] >= report["actions"]
    assert report["rerun_p95_s"] is not None and report["rerun_p95_s"] > 0
    assert len(report["rss_timeline"]) >= 5 and report["rss_mb"]["max"] > 0

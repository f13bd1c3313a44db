"""Background jobs (dashboard/jobs.py) and core's progress/cancel hooks (issue 10: long computations
say so and stop when their input changes). No Streamlit here; small N so CI stays fast."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from cascade_explorer.core import analysis, search
from cascade_explorer.core.errors import BankError, CancelledError, UsageError
from cascade_explorer.dashboard import jobs

from zoo_bank import write_zoo_bank


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return write_zoo_bank(tmp_path_factory.mktemp("bg") / "bg", n_models=24, n_samples=200)


def _signals(bank):
    a = analysis.BankAnalysis(str(bank), store=False)
    ids = a.bank.models_for("val")
    return ({m: a.model_signals(m, "val") for m in ids}, {m: a.bank.model(m).gmacs for m in ids}, ids)


# ------------------------------------------------------------------------------------------ core hooks

@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("per_pair", [False, True])
def test_pair_frontier_reports_every_first_model_and_is_unchanged_by_the_hook(bank, workers, per_pair):
    signals, gmacs, ids = _signals(bank)
    calls = []
    got = search.pair_frontier(signals, gmacs, per_pair=per_pair, workers=workers,
                               progress=lambda done, total: calls.append((done, total)))
    pd.testing.assert_frame_equal(got, search.pair_frontier(signals, gmacs, per_pair=per_pair, workers=workers))
    assert sorted(d for d, _ in calls) == list(range(len(ids) + 1)) and {t for _, t in calls} == {len(ids)}
    assert calls[-1] == (len(ids), len(ids))


def test_a_cancelled_pair_search_stops_early(bank):
    signals, gmacs, ids = _signals(bank)
    seen = []

    def stop(done, total):
        seen.append(done)
        if done >= 3:
            raise CancelledError("input changed")

    with pytest.raises(CancelledError):
        search.pair_frontier(signals, gmacs, workers=1, progress=stop)
    assert max(seen) == 3 < len(ids)            # no first model after the cancel was searched


def test_three_model_search_reports_chains_and_stops_when_cancelled(bank):
    signals, gmacs, ids = _signals(bank)
    shortlist = ids[:7]                          # 35 chains
    calls = []
    got = search.three_model_frontier(signals, gmacs, shortlist, grid_size=8,
                                      progress=lambda d, t: calls.append((d, t)))
    pd.testing.assert_frame_equal(got, search.three_model_frontier(signals, gmacs, shortlist, grid_size=8))
    assert calls == [(k, 35) for k in range(36)]
    chains = []

    def stop(done, total):
        chains.append(done)
        if done == 2:
            raise CancelledError("input changed")

    with pytest.raises(CancelledError):
        search.three_model_frontier(signals, gmacs, shortlist, grid_size=8, progress=stop)
    assert chains == [0, 1, 2]


def test_bank_analysis_frontier_counts_pairs_then_chains_and_keeps_nothing_when_cancelled(bank):
    a = analysis.BankAnalysis(str(bank), store=False)
    ids = a.bank.models_for("val")
    shortlist = ids[:5]                          # 10 chains
    calls = []
    got = a.frontier(max_stages=3, shortlist=shortlist, grid_size=8, progress=lambda d, t: calls.append((d, t)))
    assert {t for _, t in calls} == {len(ids) + 10} and calls[-1] == (len(ids) + 10, len(ids) + 10)
    fresh = analysis.BankAnalysis(str(bank), store=False)
    pd.testing.assert_frame_equal(got, fresh.frontier(max_stages=3, shortlist=shortlist, grid_size=8))

    cancelled = analysis.BankAnalysis(str(bank), store=False)

    def stop(done, total):
        if done >= 2:
            raise CancelledError("input changed")

    with pytest.raises(CancelledError):
        cancelled.frontier(progress=stop)
    calls.clear()
    again = cancelled.frontier(progress=lambda d, t: calls.append(d))
    assert calls, "a cancelled frontier must not be memoised"
    pd.testing.assert_frame_equal(again, fresh.frontier())
    with pytest.raises(UsageError, match="^progress must be a callable"):
        fresh.frontier(progress=3)


def test_fill_signals_reads_every_model_in_order_and_stops_between_models(bank):
    a = analysis.BankAnalysis(str(bank), store=False)
    ids = a.bank.models_for("val")
    calls = []
    assert a.fill_signals("val", progress=lambda d, t: calls.append((d, t))) == len(ids)
    assert calls == [(k, len(ids)) for k in range(len(ids) + 1)]
    b = analysis.BankAnalysis(str(bank), store=False)

    def stop(done, total):
        if done == 4:
            raise CancelledError("input changed")

    with pytest.raises(CancelledError):
        b.fill_signals("val", progress=stop)
    assert len(b._cache) == 4          # four models' signals memoised, none after the cancel


# ------------------------------------------------------------------------------------------ the job

def test_a_job_starts_once_reports_progress_and_returns_the_direct_result(bank):
    a = analysis.BankAnalysis(str(bank), store=False)
    gate, runs = threading.Event(), []

    def work(job):
        runs.append(1)
        job.report(1, 4, "first step")
        gate.wait(30)
        return a.frontier(progress=job.progress)

    registry = jobs.JobRegistry()
    job = registry.get("k", work, what="frontier")
    assert registry.get("k", work) is job and not job.start()       # one job, one thread
    for _ in range(200):
        if job.snapshot().step == "first step":
            break
        threading.Event().wait(0.01)
    p = job.snapshot()
    assert (p.state, p.done, p.total, p.step, p.fraction) == (jobs.RUNNING, 1, 4, "first step", 0.25)
    gate.set()
    assert job.wait(60) and job.state == jobs.DONE and runs == [1]
    pd.testing.assert_frame_equal(job.result, analysis.BankAnalysis(str(bank), store=False).frontier())
    assert job.snapshot().done == job.snapshot().total > 0


@pytest.mark.parametrize("error, message", [
    (BankError("logits contain NaN or inf", model="m", split="val", fix="re-export them"),
     "logits contain NaN or inf (model 'm', split 'val'). Fix: re-export them"),
    (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
])
def test_an_error_inside_a_job_is_kept_as_one_line(error, message):
    def work(job):
        raise error

    job = jobs.Job("e", work)
    job.start()
    assert job.wait(10) and job.state == jobs.FAILED
    assert job.error == message and job.result is None and job.snapshot().error == message
    registry = jobs.JobRegistry()
    failed = registry.get("e", work)
    failed.wait(10)
    assert registry.get("e", work) is failed          # kept (the page shows it) until forgotten
    registry.forget("e")
    assert registry.get("e", work) is not failed


def test_a_new_input_cancels_the_old_job_which_stops_and_keeps_no_result():
    steps, release = [], threading.Event()

    def slow(job):
        for k in range(1000):
            job.report(k, 1000, f"step {k}")
            steps.append(k)
            if k == 2:
                release.wait(30)
        return "finished"

    registry = jobs.JobRegistry()
    old = registry.get(("search", "a"), slow)
    while len(steps) < 3:
        threading.Event().wait(0.01)
    new = registry.get(("search", "b"), lambda job: "b", replaces=("search", "a"))
    assert old.cancelled
    release.set()
    assert old.wait(10) and old.state == jobs.CANCELLED and old.result is None
    assert len(steps) == 3                          # stopped at its next report
    assert new.wait(10) and new.result == "b"
    assert registry.get(("search", "a"), lambda job: "again").wait(10)   # asked again: a fresh job
    assert registry.peek(("search", "a")).result == "again"


def test_a_search_another_session_still_waits_for_is_not_cancelled():
    """Two sessions wait for the same search; when one changes its input the search goes on for the
    other, and only when the last one leaves (a new input, or no search at all) is it cancelled."""
    release = threading.Event()

    def slow(job):
        for k in range(1000):
            job.report(k, 1000)
            release.wait(0.01)
        return "finished"

    registry = jobs.JobRegistry()
    shared = registry.get(("search", "a"), slow, watcher="session 1")
    assert registry.get(("search", "a"), slow, watcher="session 2") is shared
    registry.get(("search", "b"), lambda job: "b", replaces=("search", "a"), watcher="session 1")
    assert not shared.cancelled                                   # session 2 still waits for it
    registry.release(("search", "a"), "session 2")
    assert shared.cancelled and shared.wait(10) and shared.state == jobs.CANCELLED
    lone = registry.get(("search", "c"), slow, watcher="session 3")
    registry.get(("search", "d"), lambda job: "d", replaces=("search", "c"), watcher="session 3")
    assert lone.cancelled                                         # nobody else waited: stopped
    release.set()


def test_the_registry_drops_the_oldest_ended_jobs_beyond_its_bound():
    registry = jobs.JobRegistry(max_jobs=3)
    for k in range(6):
        registry.get(k, lambda job: None).wait(10)
    registry.get(6, lambda job: None)
    assert registry.peek(0) is None and registry.peek(6) is not None

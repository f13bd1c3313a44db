"""Page pieces for big banks (issue 10): the model filter, the family highlight, chart labels, the log
axis default, the picker's labels, and the background jobs (dashboard/jobs.py) that open a big bank
and run long searches while the page shows their progress.

The logic lives in core/families.py (pure); this module only draws widgets and calls it. Filter
widgets keep their values in ``st.session_state`` under ``flt_<page>_*`` keys (set by the widgets
themselves, never written mid-run): they narrow what a page lists, they are not part of the
shared view (the URL).
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid

import streamlit as st

from cascade_explorer.core import families
from cascade_explorer.core.errors import BankError
from cascade_explorer.core.store import DEFAULT_CRITERION
from cascade_explorer.dashboard import data, jobs, ui

# Banks with at least this many models get the filter box and the family highlight (a handful of
# models needs neither: every name fits on the chart and in the picker).
FILTER_FROM = 13


@st.cache_data(show_spinner=False, max_entries=16)
def _families(bank_key) -> dict[str, str]:
    return families.bank_families(data._bank(bank_key))


def bank_families(bank) -> dict[str, str]:
    """id -> family of the bank's models (manifest ``family`` field, else the timm name prefix)."""
    return _families(data.key(bank))


def model_filter(bank, singles, page: str) -> list[str]:
    """Draw the filter box (name substring, family, cost range, accuracy range) and return the ids of
    `singles` (single_models' frame) that pass, in its order. Widget keys: ``flt_<page>_*``. Fewer
    than FILTER_FROM models: no box, every id."""
    if len(singles) < FILTER_FROM:
        return [str(m) for m in singles["id"]]
    fams = bank_families(bank)
    names = sorted(set(fams[m] for m in singles["id"]))
    counts = {f: sum(1 for m in singles["id"] if fams[m] == f) for f in names}
    gmacs = singles["gmacs"].astype(float)
    lo_cost, hi_cost = float(gmacs.min()), float(gmacs.max())
    with st.expander("Filter models", icon=":material/filter_list:"):
        c1, c2 = st.columns(2)
        text = c1.text_input("Name contains", key=f"flt_{page}_text",
                             help="Case-insensitive part of the model id or display name, e.g. `vit` or `in21k`.")
        family = c2.selectbox("Family", [""] + names, key=f"flt_{page}_family",
                              format_func=lambda f: "any family" if not f else f"{ui.plain(f, 80)} ({counts[f]})",
                              help="Timm family: the name's prefix before the first `_` or digit group "
                                   "(or the bank's `family` field).")
        c3, c4 = st.columns(2)
        cost = c3.slider("Cost range (GMACs per image)", min_value=lo_cost, max_value=max(hi_cost, lo_cost + 1e-9),
                         value=(lo_cost, max(hi_cost, lo_cost + 1e-9)), key=f"flt_{page}_cost", format="%.3g")
        acc = c4.slider("Accuracy range (%)", min_value=0.0, max_value=100.0, value=(0.0, 100.0), step=0.5,
                        key=f"flt_{page}_acc")
    flt = families.ModelFilter(
        text=text or "", family=family or "",
        min_gmacs=None if cost[0] <= lo_cost else float(cost[0]),
        max_gmacs=None if cost[1] >= hi_cost else float(cost[1]),
        min_accuracy=None if acc[0] <= 0 else acc[0] / 100, max_accuracy=None if acc[1] >= 100 else acc[1] / 100)
    kept = families.filter_models(singles, fams, flt)
    if flt.active:
        st.caption(f"{len(kept):,} of {len(singles):,} models match the filter.")
    return kept


def highlight_picker(bank, singles, page: str, container=None) -> list[str] | None:
    """A 'Highlight a family' selectbox; the ids of the chosen family, or None for no highlight (and
    no selectbox for fewer than FILTER_FROM models or a single family)."""
    if len(singles) < FILTER_FROM:
        return None
    fams = bank_families(bank)
    names = sorted(set(fams[m] for m in singles["id"]))
    if len(names) < 2:
        return None
    where = container if container is not None else st
    chosen = where.selectbox("Highlight a family", [""] + names, key=f"flt_{page}_highlight",
                             format_func=lambda f: "none" if not f else ui.plain(f, 80),
                             help="Draw one model family in a stronger colour, the others faded.")
    return [m for m in singles["id"] if fams[m] == chosen] if chosen else None


def log_default(singles, cost: str) -> bool:
    """A log cost axis when the models' costs span more than families.LOG_SPAN times."""
    column = "gmacs" if cost == "gmacs" else "ms"
    return families.log_axis_default(singles[column].dropna().astype(float)) if column in singles else False


def picker_label(bank, singles):
    """format_func for a model picker: name, cost and accuracy on the current image set."""
    accuracy = dict(zip(singles["id"], singles["accuracy"].astype(float)))

    def label(model_id: str) -> str:
        return ui.model_label(bank, model_id) + (f" · {accuracy[model_id]:.1%}" if model_id in accuracy else "")
    return label


# ------------------------------------------------------------------------------------ background jobs

# A job that ends within this many seconds is simply awaited, so a small bank (or a warm one whose
# frontier is memoised) renders in one go; a longer one shows its progress instead of a blank page.
GRACE_S = 0.5
POLL_S = 0.5          # how often a page polls a running job (st.fragment run_every)


@st.cache_resource(show_spinner=False)
def registry() -> jobs.JobRegistry:
    """The process-wide background jobs (one per key, shared by every session)."""
    return jobs.JobRegistry()


def warm_key(bank, split: str, criterion: str = DEFAULT_CRITERION) -> tuple:
    return ("warm", data.key(bank), split) + (() if criterion == DEFAULT_CRITERION else (criterion,))


def warm_job(bank, split: str, criterion: str = DEFAULT_CRITERION) -> jobs.Job:
    """The job that opens a big bank on `split` under `criterion`, started at most once per bank
    version, split and criterion: every model's signals read into the signal store and memoised
    (model by model, progress naming each), then the single models and the all-pairs frontier
    computed through the bank's one BankAnalysis, so the pages find them memoised (another criterion
    in the Explorer needs every model's signals under it: 40 s at 100 models x 50,000 x 1,000, shown
    the same way). Its result: {"stored": models that had to be computed into the store, "seconds":
    how long it took}."""
    from cascade_explorer.core.store import SignalStore

    analysis = data._analysis(data.key(bank))     # looked up here: the thread has no Streamlit context
    ids = bank.models_for(split)

    def work(job: jobs.Job) -> dict:
        start = time.perf_counter()
        store = analysis.signal_source
        stored = set(store.info(bank).get("models", {}).get(split, ())) \
            if isinstance(store, SignalStore) and criterion == DEFAULT_CRITERION else set(ids)
        missing = {m for m in ids if m not in stored}   # (under another criterion: not told apart)

        def reading(done: int, total: int) -> None:
            if done >= total:
                job.report(done, total, "Read every model's signals")
                return
            into = " into the signal store" if ids[done] in missing else ""
            under = "" if criterion == DEFAULT_CRITERION else f" under {criterion}"
            job.report(done, total, f"Reading {ui.md(bank.model(ids[done]).display_name, 120)} "
                                    f"({done + 1:,} of {total:,}){under}{into}")

        analysis.fill_signals(split, criterion=criterion, progress=reading)
        job.report(0, 0, "Computing each model's accuracy")
        analysis.single_models(split)
        if len(ids) >= 2:
            analysis.frontier(split=split, criterion=criterion, progress=lambda done, total: job.report(
                done, total, f"Computing the frontier of all pairs ({done:,} of {total:,} first models searched)"))
        # the certified fit's statistics, imported off the page and without holding the page back, so
        # that the first "Guarantee" answers in ~0.1 s rather than after a ~1 s import
        threading.Thread(target=importlib.import_module, args=("scipy.stats",), daemon=True).start()
        return {"stored": len(missing), "seconds": time.perf_counter() - start}

    return registry().get(warm_key(bank, split, criterion), work, what=f"opening {bank.name} on {split}")


@st.fragment(run_every=POLL_S)
def job_progress(key, note: str = "") -> None:
    """A progress bar of the job `key` (its step in words, time so far), refreshed every POLL_S
    seconds; when the job has ended the whole app reruns, so the page fills in."""
    job = registry().peek(key)
    if job is None or job.finished:
        st.rerun()
    p = job.snapshot()
    st.progress(p.fraction, text=p.step)   # the step names its own counts (and is Markdown-safe text)
    st.caption(f":material/hourglass_top: {p.elapsed_s:.0f} s so far. {note}")


def _forget(key) -> None:
    registry().forget(key)


def job_error(job: jobs.Job, what: str, key: str) -> None:
    """A failed job's message (text, never a traceback) and a button to try again."""
    st.error(f"{ui.md(what)} failed: {ui.md(job.error, 2000)}", icon=":material/error:")
    st.button("Try again", key=key, on_click=_forget, args=(job.key,), icon=":material/refresh:")


def run_in_background(slot: str, key, work, *, what: str) -> jobs.Job:
    """The process-wide job of `key` (started if needed) for this session's `slot` (e.g. the
    leaderboard's search): when the slot held another key before (the input changed), that job is
    cancelled unless another session still waits for it, so it stops at its next step and its result is
    never shown. Waits up to GRACE_S for it."""
    job = registry().get(key, work, what=what, replaces=st.session_state.get(f"_job_{slot}"), watcher=_session_id())
    st.session_state[f"_job_{slot}"] = key
    job.wait(GRACE_S)
    return job


def cancel_slot(slot: str) -> None:
    """This session no longer needs its job in `slot` (its input went away, e.g. back to pairs only):
    cancelled unless another session waits for it."""
    key = st.session_state.pop(f"_job_{slot}", None)
    if key is not None:
        registry().release(key, _session_id())


def _session_id() -> str:
    """This browser session's id for the job registry's watchers (a random id kept in its state)."""
    if "_job_watcher" not in st.session_state:
        st.session_state["_job_watcher"] = uuid.uuid4().hex
    return st.session_state["_job_watcher"]


def search_job(bank, split: str, criterion: str, shortlist: tuple) -> jobs.Job:
    """The leaderboard's 3-model search (pairs, then every 3-model chain of `shortlist`) in the
    background, keyed by its inputs; progress counts first models, then chains. Result: the frontier
    (the same frame data.frontier returns; memoised in the bank's BankAnalysis too)."""
    analysis = data._analysis(data.key(bank))
    n_models = len(bank.models_for(split))

    def work(job: jobs.Job):
        def step(done: int, total: int) -> None:
            where = (f"pairs: {done:,} of {n_models:,} first models" if done < n_models else
                     f"3-model chains: {done - n_models:,} of {total - n_models:,}")
            job.report(done, total, f"Searching the cascades of {len(shortlist)} shortlisted models ({where})")
        return analysis.frontier(split=split, criterion=criterion, max_stages=3, shortlist=list(shortlist),
                                 progress=step)

    return run_in_background("leaderboard_search", ("frontier3", data.key(bank), split, criterion, tuple(shortlist)),
                             work, what="3-model search")


def bank_ready(bank, split: str, title: str, criterion: str = DEFAULT_CRITERION) -> bool:
    """Whether the page may render now: the bank's warm-up jobs (`warm_job`: the default criterion,
    which the Overview and the zoo show, then the view's) have ended well. Otherwise the page's title,
    the running job's progress (refreshed until it ends, then the page fills in) and a placeholder are
    drawn instead of a blank page, or, when the job failed, what went wrong."""
    for each in dict.fromkeys((DEFAULT_CRITERION, criterion)):
        if not _warm_ready(bank, split, title, each):
            return False
    return True


def _warm_ready(bank, split: str, title: str, criterion: str) -> bool:
    job = warm_job(bank, split, criterion)
    job.wait(GRACE_S)
    waited = st.session_state.setdefault("_warm_waited", set())   # jobs this session showed the progress of
    if job.state == jobs.DONE:
        if job.key in waited:   # say once, to the session that waited, what the first visit did
            waited.discard(job.key)
            if job.result["stored"]:
                st.caption(f":material/database: Read {job.result['stored']} models of {ui.md(split)} into the "
                           f"signal store in {job.result['seconds']:.1f} s; the next start opens at once.")
        return True
    waited.add(job.key)
    if job.state == jobs.FAILED:
        if isinstance(job.exception, BankError):   # found while reading arrays (e.g. NaN logits): the bank page
            ui.problem_page(data.BankProblem(bank.path, "The bank is damaged", job.error), data.bank_choices())
            st.button("Try again", key="warm_retry", on_click=_forget, args=(job.key,), icon=":material/refresh:",
                      help="Read the bank again (after fixing it).")
        else:
            st.title(title)
            job_error(job, f"Opening {bank.name} on {split}", "warm_retry")
        return False
    st.title(title)
    under = "" if criterion == DEFAULT_CRITERION else f" under {ui.md(criterion)}"
    with st.status(f"Opening {ui.md(bank.name, 120)}: {len(bank.models_for(split)):,} models on "
                   f"{ui.md(split)}{under}", expanded=True):
        job_progress(job.key, "The page appears when this is done; the next server start on this bank is fast.")
    st.info("This page needs every model's signals and the frontier of all pairs; it fills in by itself "
            "when they are ready.", icon=":material/hourglass_top:")
    return False

"""Page pieces for big banks (issue 10): the model filter, the family highlight, chart labels, the log
axis default, the picker's labels and the cold signal store's progress bar.

The logic lives in core/families.py (pure); this module only draws widgets and calls it. Filter
widgets keep their values in ``st.session_state`` under ``flt_<page>_*`` keys (set by the widgets
themselves, never written mid-run): they narrow what a page lists, they are not part of the
shared view (the URL).
"""

from __future__ import annotations

import time

import streamlit as st

from cascade_explorer.core import families
from cascade_explorer.dashboard import data, ui

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


_WARM: set = set()   # (bank key, split) whose stored signals were complete once: skip the check


def fill_store(bank, split: str) -> None:
    """Before a page computes anything: read every model of `split` whose signals are not in the signal
    store yet, one at a time, under a progress bar naming the model (instead of a blank page while the
    first request computes them all). Each model is stored as soon as it is read, so changing page or
    input mid-way (which stops this run between two models) loses nothing, and the next server start
    finds them all. No-op when the analysis has no SignalStore or the store is complete."""
    from cascade_explorer.core.store import SignalStore

    bank_key = data.key(bank)
    if (bank_key, split) in _WARM:
        return
    analysis = data._analysis(bank_key)
    store = analysis.signal_source
    if not isinstance(store, SignalStore):
        return
    stored = set(store.info(bank).get("models", {}).get(split, ()))
    missing = [m for m in bank.models_for(split) if m not in stored]
    if not missing:
        _WARM.add((bank_key, split))
        return
    start = time.perf_counter()
    bar = st.progress(0.0, text=f"Reading {len(missing)} models into the signal store...")
    for i, model_id in enumerate(missing):
        bar.progress(i / len(missing), text=f"Reading {ui.md(bank.model(model_id).display_name, 120)} "
                                            f"({i + 1} of {len(missing)}) into the signal store")
        analysis._signals(model_id, split, "max_softmax", 1.0)   # computes, stores and memoises it
    bar.empty()
    st.caption(f":material/database: Read {len(missing)} models of {ui.md(split)} into the signal store in "
               f"{time.perf_counter() - start:.1f} s; the next start opens at once.")
    _WARM.add((bank_key, split))

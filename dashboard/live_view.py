"""Pieces of the Live page (dashboard/views/live.py): model loading with progress, trace rendering,
session totals. All inference is core.live; this module only caches and draws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from cascade_explorer.core import live
from cascade_explorer.core.text import exact_number
from cascade_explorer.core.text import markdown_text as md
from cascade_explorer.core.text import one_line as plain
from cascade_explorer.core.errors import UsageError

RESULTS_KEY = "_live_results"   # (item key, cascade key) -> core.live.UploadResult, for items on screen
TOTALS_KEY = "_live_totals"     # cascade key -> {item key: (exit stage, cascade ms, last model alone ms)}
THUMBNAIL_PX = 448


# ------------------------------------------------------------------------------------------ models

@st.cache_resource(show_spinner=False, max_entries=32)
def _model(spec: str, device: str):
    # core.live already keeps one adapter per process; cache_resource makes the sharing explicit
    # to Streamlit (all sessions, no pickling) and survives page reruns.
    return live.get_model(spec, device)


def load_models(cascade: live.Cascade) -> str | None:
    """Load every stage's model (once per process; a progress bar the first time). Error text or None."""
    missing = [s for s in cascade.stages if not live.is_loaded(s.spec, cascade.device)]
    bar = st.progress(0.0, text="Loading models (first use only)...") if missing else None
    try:
        for i, stage in enumerate(cascade.stages):
            if bar is not None:
                bar.progress(i / len(cascade.stages),
                             text=f"Loading {md(stage.display_name, 200)} ({i + 1} of {len(cascade.stages)}), first use only...")
            _model(stage.spec, cascade.device)
    except (UsageError, ValueError, OSError, ImportError) as error:
        return str(error)
    finally:
        if bar is not None:
            bar.empty()
    return None


def fitted_temperatures(bank_key, split: str, models: tuple[str, ...]) -> list[float]:
    """The bank's NLL temperatures for these models (fitted once by its BankAnalysis, as evaluate does)."""
    from cascade_explorer.dashboard import data

    return data.temperatures(bank_key, models, split=split)


def cascade_key(cascade: live.Cascade) -> tuple:
    return (tuple((s.model_id, s.spec, s.temperature) for s in cascade.stages), cascade.criterion,
            cascade.thresholds, cascade.ensemble)


# ------------------------------------------------------------------------------------------ running

def run_item(cascade: live.Cascade, key: tuple, item_key: str, name: str, read,
             formats=live.UPLOAD_FORMATS) -> live.UploadResult:
    """The result for one image, computed once per (image, cascade) and kept for reruns."""
    results = st.session_state.setdefault(RESULTS_KEY, {})
    full_key = (item_key, key)
    if full_key not in results:
        try:
            result = live.predict_upload(cascade, read(), name, formats=formats)
        except live.ImageError as error:   # e.g. a bank image file that is not a regular file
            result = live.UploadResult(name, error=str(error))
        except Exception as error:  # noqa: BLE001 - one odd file must never take the page down
            result = live.UploadResult(name, error=f"{name}: could not run the cascade on this file "
                                                   f"({type(error).__name__}: {error})")
        if result.image is not None:
            result.image = thumbnail(result.image)
        results[full_key] = result
        if result.trace is not None:
            record(key, item_key, result.trace)
    return results[full_key]


def forget_except(keep: set) -> None:
    """Drop stored results (and their pictures) of items no longer on screen; totals stay."""
    results = st.session_state.get(RESULTS_KEY, {})
    for k in [k for k in results if k[0] not in keep]:
        del results[k]


def thumbnail(image):
    from cascade_explorer.core.images import thumbnail as shrink   # no full-size copy first

    return shrink(image, THUMBNAIL_PX)


def record(key: tuple, item_key: str, trace: live.Trace) -> None:
    totals = st.session_state.setdefault(TOTALS_KEY, {})
    totals.setdefault(key, {})[item_key] = (trace.exit_stage, trace.total_ms, trace.last_model_alone_ms)


def session_totals(key: tuple, n_stages: int) -> dict | None:
    """Exit fractions and mean ms of this session's images under the cascade `key`."""
    records = st.session_state.get(TOTALS_KEY, {}).get(key, {})
    if not records:
        return None
    stages = np.array([r[0] for r in records.values()], dtype=np.int64)
    cascade_ms = np.array([r[1] for r in records.values()], dtype=np.float64)
    alone = np.array([np.nan if r[2] is None else r[2] for r in records.values()], dtype=np.float64)
    mean_alone = float(np.nanmean(alone)) if np.isfinite(alone).any() else None
    mean_cascade = float(cascade_ms.mean())
    return {"n": len(records), "exit_fractions": (np.bincount(stages, minlength=n_stages) / len(records)).tolist(),
            "mean_ms": mean_cascade, "mean_last_alone_ms": mean_alone,
            "speedup": (mean_alone / mean_cascade) if mean_alone and mean_cascade > 0 else None}


# ------------------------------------------------------------------------------------------ drawing

def fmt_threshold(value) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return exact_number(value)   # exact: a copied threshold gives the same cascade


def decision_text(stage: live.StageTrace) -> str:
    conf = f"{stage.confidence:.4g}"
    if stage.threshold is None:
        return ":blue-badge[final stage] the last model answers every image that reaches it"
    if stage.exited:
        return f":green-badge[exit] confidence {conf} ≥ threshold {fmt_threshold(stage.threshold)}: this answer is final"
    return f":orange-badge[escalate] confidence {conf} < threshold {fmt_threshold(stage.threshold)}: ask the next model"


def top5_frame(stage: live.StageTrace) -> pd.DataFrame:
    return pd.DataFrame({"class": [f"{plain(name, 200)} ({index})" for index, name, _ in stage.top5],
                         "probability": [float(p) for _, _, p in stage.top5]})


def render_trace(trace: live.Trace, *, truth: str | None = None, stored: list | None = None) -> None:
    """One image's pass through the cascade: each stage that ran, then the answer and the timing.

    stored: the bank's stored logits of the stages (for a bank sample), to show the live run matches.
    """
    for i, stage in enumerate(trace.stages):
        with st.container(border=True):
            st.markdown(f"**Stage {i + 1} of {trace.n_stages} · {md(stage.display_name, 200)}** · {stage.ms:.1f} ms "
                        f"(preprocess {stage.preprocess_ms:.1f} + model {stage.forward_ms:.1f})")
            left, right = st.columns([3, 2])
            left.dataframe(top5_frame(stage), hide_index=True, width="stretch", column_config={
                "probability": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0,
                                                               format="%.3f")})
            with right:
                st.metric("Confidence", f"{stage.confidence:.4g}", help="The cascade's criterion on this stage's "
                          "(temperature-scaled) output; higher = more sure.")
                st.markdown(decision_text(stage))
                if stored is not None and i < len(stored) and stored[i] is not None:
                    gap = float(np.max(np.abs(np.asarray(stored[i], np.float32) - stage.logits)))
                    same = int(np.argmax(stored[i])) == stage.prediction
                    st.caption(f"Bank's stored output for this image: {'same' if same else 'different'} top-1, "
                               f"largest logit difference {gap:.3g} (float16 storage).")
    answer = f"**{md(trace.class_name, 200)}** (class {trace.prediction})"
    verdict = ""
    if truth is not None:
        verdict = " · ✅ right" if truth == trace.class_name else f" · ❌ true label: {md(truth, 200)}"
    st.success(f"Answer: {answer}, from stage {trace.exit_stage + 1} of {trace.n_stages}{verdict}")
    c1, c2 = st.columns(2)
    c1.metric("Cascade time", f"{trace.total_ms:.1f} ms",
              help="Measured: preprocessing + model time of every stage that ran (decoding the file excluded).")
    if trace.last_model_alone_ms is not None:
        delta = trace.last_model_alone_ms - trace.total_ms
        c2.metric("Last model alone", f"{trace.last_model_alone_ms:.1f} ms",
                  delta=f"{delta:+.1f} ms saved" if delta >= 0 else f"{-delta:.1f} ms more", delta_color="normal"
                  if delta >= 0 else "inverse",
                  help=f"Measured on this image: {md(trace.last_model_id)} run alone (preprocessing + model), "
                       "what you would pay without the cascade.")


def render_totals(totals: dict | None, stage_names: list[str]) -> None:
    if totals is None:
        st.caption("Totals over this session's images appear here after the first image.")
        return
    cols = st.columns(3)
    cols[0].metric("Images this session", f"{totals['n']}")
    cols[1].metric("Mean cascade time", f"{totals['mean_ms']:.1f} ms")
    if totals["mean_last_alone_ms"] is not None:
        cols[2].metric("Mean last model alone", f"{totals['mean_last_alone_ms']:.1f} ms",
                       delta=f"{totals['speedup']:.2f}× faster with the cascade" if totals["speedup"] else None,
                       delta_color="off")
    exits = st.columns(len(stage_names))
    for col, name, fraction in zip(exits, stage_names, totals["exit_fractions"]):
        col.metric(f"Answered by {name}", f"{fraction:.0%}")


# ------------------------------------------------------------------------------------------ bank images

def sample_split(bank, split: str) -> str | None:
    """The image set bank images are picked from: `split` if its pictures are plain, else the first plain one."""
    for name in [split] + [s for s in bank.splits if s != split]:
        if not (bank.split_info(name) or {}).get("transform"):
            return name
    return None


@st.cache_data(ttl=60, show_spinner=False, max_entries=16)
def local_sample_rows(bank_key, split: str, limit: int = 40, scan: int = 400) -> list:
    """(row, local path) of up to `limit` bank images found on this machine (never downloads)."""
    from cascade_explorer.core import fetch
    from cascade_explorer.dashboard import data

    bank = data._bank(bank_key)
    source = bank.split_info(split).get("image_source") or {}
    out = []
    for row, rel in enumerate(bank.image_paths(split)[:scan]):
        if not rel:
            continue
        try:
            path = fetch.resolve_image(rel, url_base=source.get("url_base"),
                                       sha256=(source.get("sha256") or {}).get(rel), download=False)
        except Exception:  # noqa: BLE001 - not available locally
            continue
        out.append((row, path))
        if len(out) >= limit:
            break
    return out

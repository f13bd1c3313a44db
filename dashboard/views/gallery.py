"""Exit gallery: which images leave the cascade where, easiest first; the four right/wrong groups."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cascade_explorer.core import plots
from cascade_explorer.core.corruptions import corruption_for
from cascade_explorer.core.images import ImageError
from cascade_explorer.core.text import exact_number
from cascade_explorer.dashboard import data, resolve, state, ui

bank = data.current_bank()
view = state.current()
split = ui.split_of(bank, view)
bank_key = data.key(bank)
PER_ROW = 6
SHOW = 12

st.title("Exit gallery")
cascade, ev = ui.evaluate_current(bank, view, resolve.resolve(bank, view).as_dict())   # one resolved cascade
models, thresholds = cascade["models"], cascade["thresholds"]
st.markdown(f"Cascade: **{ui.md(ui.chain_text(bank, models))}** · {ui.CRITERION_NAMES[view.criterion]} · "
            f"{plots.format_thresholds(thresholds)}" + (" (fitted for the target)" if cascade["fitted"] else ""))
st.page_link("views/explorer.py", label="Change the cascade in the Explorer", icon=":material/tune:")

result = ev["result"]
stages = ev["stages"]
rows = np.arange(len(result.exit_stage)) if ev["index"] is None else np.asarray(ev["index"])
labels = np.asarray(bank.labels(split))[rows]
n_stages = len(models)
exit_stage = np.asarray(result.exit_stage)
final_correct = np.asarray(result.correct, dtype=bool)
first_correct = np.asarray(stages[0].correct, dtype=bool)
last = n_stages - 1
escalated = exit_stage > 0
groups = {
    "exited-right": (exit_stage == 0) & final_correct if n_stages > 1 else final_correct,
    "exited-wrong": (exit_stage == 0) & ~final_correct if n_stages > 1 else ~final_correct,
    "escalated-fixed": escalated & final_correct & ~first_correct,
    "escalated-wrong": escalated & ~final_correct,
}
GROUP_NAMES = {
    "stage": "by exit stage",
    "exited-right": "answered by stage 1, right",
    "exited-wrong": "answered by stage 1, wrong (over-confident)",
    "escalated-fixed": "escalated, fixed by a bigger model",
    "escalated-wrong": "escalated, still wrong",
}

counts_holder = st.container()   # filled once the class filter is known

c1, c2 = st.columns([2, 1])
with c1:
    group = state.bound(
        st.selectbox, "Show", "w_group", view.gallery_group,
        lambda v, value: v.replace(gallery_group=value or "stage", models=models, thresholds=tuple(thresholds)
                                   if not cascade["fitted"] else v.thresholds),
        options=list(state.GALLERY_GROUPS), format_func=GROUP_NAMES.get,
        help="Images per exit stage (easiest first), or one of the four outcomes of the first decision.",
    )
present = np.unique(labels)
with c2:
    ALL = -1  # selectbox value for "all classes" (None would read as "nothing chosen")
    class_options = [ALL] + [int(c) for c in present]
    chosen_class = view.gallery_class if view.gallery_class in class_options else None
    state.bound(
        st.selectbox, "Class", "w_class", ALL if chosen_class is None else chosen_class,
        lambda v, value: v.replace(gallery_class=None if value in (None, ALL) else int(value)),
        options=class_options, format_func=lambda c: "all classes" if c == ALL else f"{c}: {ui.plain(bank.class_names[c], 200)}",
        help="Only images whose true label is this class.",
    )
class_mask = np.ones(len(labels), dtype=bool) if chosen_class is None else labels == chosen_class
if view.gallery_class is not None and chosen_class is None:
    st.info(f"Class {view.gallery_class} ({ui.md(bank.class_names[view.gallery_class], 200)}) has no images in "
            f"{ui.md(split)}"
            + ("'s held-out half" if ev["index"] is not None else "") + "; showing all classes.",
            icon=":material/filter_alt_off:")
scope = "" if chosen_class is None else f" of class {ui.md(bank.class_names[chosen_class], 200)}"
with counts_holder:
    for col, (name, mask) in zip(st.columns(4), groups.items()):
        selected = mask & class_mask
        col.metric(GROUP_NAMES[name].capitalize(), f"{int(selected.sum()):,}",
                   help=f"{ui.pct(selected.sum() / max(int(class_mask.sum()), 1))} of the "
                        f"{int(class_mask.sum()):,} images{scope} shown.")

# image lookup: local only while rendering (a button fetches missing ones)
info = bank.split_info(split)
paths = bank.image_paths(split)
# image_source / transform are bank metadata the validator does not fully check: a malformed one is
# said on the page and the cards show text only (never a traceback)
source, transform, metadata_problem = data.gallery_image_metadata(info)
if metadata_problem:
    st.warning(f"This image set's {ui.md(metadata_problem)}; the cards show text only. Fix the split's "
               "entry in the bank's manifest.json.", icon=":material/image_not_supported:")
# Corrupted splits show each image as its models saw it (same corruption, seed and sample id).
corrupted = bool(transform) and transform.get("kind") == "corruption"
sample_ids = bank.sample_ids(split)


def image_file(row: int, download: bool = False):
    from cascade_explorer.core import fetch

    rel = paths[row]
    if not rel or source is None:
        return None
    try:
        return fetch.resolve_image(rel, url_base=source.get("url_base"),
                                   sha256=(source.get("sha256") or {}).get(rel), download=download)
    except Exception:  # not available locally (or download failed): the card shows text only
        return None


def card(i: int, holder) -> bool:
    """One image card; returns whether the image file was found."""
    row = int(rows[i])
    file = image_file(row)
    with holder.container(border=True):
        try:   # every picture is decoded by core.images.load_image (allowed formats, size limits)
            if file is not None and corrupted:
                kind = corruption_for(str(sample_ids[row]), transform["types"], transform["seed"])
                st.image(data.transformed_image(str(file), transform, str(sample_ids[row])), width="stretch",
                         caption=ui.md(f"{kind.replace('_', ' ')}, severity {transform['severity']}"))
            elif file is not None:
                st.image(data.plain_image(str(file)), width="stretch")
        except ImageError as error:
            st.caption(ui.md(f"Cannot show this picture: {error}"))
        truth = int(labels[i])
        lines = [f"**true: {ui.md(bank.class_names[truth], 200)}**"]
        for s in range(int(exit_stage[i]) + 1):
            sig = stages[s]
            pred = int(sig.prediction[i])
            conf = float(sig.confidence[i])
            mark = "✓" if pred == truth else "✗"
            if s < last:
                rule = f"{'≥' if conf >= thresholds[s] else '<'} {exact_number(thresholds[s])}"
                verdict = "answers" if s == exit_stage[i] else "passes on"
            else:
                rule, verdict = "", "answers"
            lines.append(f"stage {s + 1}: {mark} {ui.md(bank.class_names[pred], 200)} ({conf:.3g}{' ' + rule if rule else ''}, "
                         f"{verdict})")
        st.markdown("  \n".join(lines))
    return file is not None


def grid(indices, title: str) -> tuple[int, int]:
    if len(indices) == 0:
        return 0, 0
    st.markdown(f"**{title}**")
    found = 0
    for start in range(0, len(indices), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, i in zip(cols, indices[start:start + PER_ROW]):
            found += card(int(i), col)
    return found, len(indices)


shown = found = 0
visible: list[int] = []
if group == "stage":
    for s in range(n_stages):
        members = np.flatnonzero((exit_stage == s) & class_mask)
        conf = np.asarray(stages[s].confidence, dtype=float)[members]
        ordered = members[np.argsort(-conf, kind="stable")]
        st.subheader(f"Stage {s + 1}: {ui.md(bank.model(models[s]).display_name, 200)} — {len(members):,} images")
        if len(ordered) == 0:
            st.caption("No image exits here.")
            continue
        easiest = ordered[:SHOW]
        hardest = ordered[SHOW:][-SHOW:] if len(ordered) > SHOW else ordered[:0]
        for part, title in ((easiest, "Easiest (most confident)"), (hardest, "Hardest (least confident)")):
            f, n = grid(part, title)
            found, shown = found + f, shown + n
            visible += [int(rows[i]) for i in part]
else:
    members = np.flatnonzero(groups[group] & class_mask)
    conf = np.asarray(stages[0].confidence, dtype=float)[members]
    ordered = members[np.argsort(-conf, kind="stable")][: 2 * SHOW]
    st.subheader(f"{GROUP_NAMES[group].capitalize()} — {len(members):,} images")
    if len(ordered) == 0:
        st.caption("No image in this group.")
    f, n = grid(ordered, "Most confident first (stage 1's confidence)")
    found, shown, visible = found + f, shown + n, [int(rows[i]) for i in ordered]

if transform and not corrupted:
    st.caption(f"Images are shown as stored; the models saw them with {ui.md(transform.get('kind', 'a transform'))}, "
               "which this version cannot redo.")
if shown and found < shown:
    env = "CASCADE_EXPLORER_IMAGES"
    where = (source or {}).get("url_base")
    st.info(
        f"{shown - found} of {shown} images are not available on this machine, so their cards show text only. "
        f"To see them, set `{env}` to a folder holding the image files (e.g. the bank's image set) and restart, "
        + (f"or fetch them from {ui.md(where, 300)}:" if where else "(this bank names no download location)."),
        icon=":material/image_not_supported:",
    )
    if where and st.button("Download the images on this page", key="gallery_fetch",
                           help="Downloads (with checksum where known) into the local cache, then re-renders."):
        failed = [r for r in visible if image_file(r, download=True) is None]
        if failed:
            st.warning(f"{len(failed)} images could not be downloaded (no network?).")
        else:
            st.rerun()

"""Leaderboard: the best cascades over all pairs (or 3-model chains of a shortlist), sortable, downloadable."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cascade_explorer.core import families, plots, text
from cascade_explorer.core.router_metrics import with_router_columns
from cascade_explorer.dashboard import data, jobs, scale_ui, state, ui

PAGE_SIZES = [100, 500, 2000]   # rows per page of the table

bank = data.current_bank()
view = state.current()
split = ui.split_of(bank, view)
bank_key = data.key(bank)
available = bank.models_for(split)

st.title("Leaderboard")
st.caption("Every ordered pair of models (cheaper first) at every threshold; only cascades that no other "
           "cascade beats on both accuracy and cost are listed. Click a row to open it in the Explorer.")

if len(available) < 2:
    st.warning(f"Image set {ui.md(repr(split))} has logits for fewer than two models: nothing to combine.")
    st.stop()

c1, c2, c3 = st.columns([1, 1.3, 2.5])
with c1:
    stages = state.bound(
        st.segmented_control, "Cascade length", "w_stages", view.stages,
        lambda v, value: v.replace(stages=int(value or 2)), options=[2, 3], required=True,
        format_func=lambda n: f"{n} models",
        help="2: all ordered pairs. 3: also every 3-model chain of the shortlist (thresholds on a grid for the "
             "first stage, exact for the second).", disabled=len(available) < 3,
    )
with c2:
    state.bound(
        st.selectbox, "Confidence criterion", "w_criterion", view.criterion,
        lambda v, value: v.replace(criterion=value), options=list(ui.CRITERION_NAMES),
        format_func=ui.CRITERION_NAMES.get, help="How a stage measures how sure it is; higher = more confident.",
    )
shortlist = ()
if stages == 3 and len(available) >= 3:
    n_samples = len(bank.labels(split))
    limit = families.max_shortlist(n_samples)
    # default: the models that can reach the frontier (in a pair-frontier cascade), within the bound
    default_short = view.shortlist or tuple(families.default_shortlist(
        data.frontier(bank_key, split, view.criterion), available, limit))
    with c3:
        chosen = state.bound(
            st.multiselect, "Shortlist for 3-model chains", "w_shortlist", list(default_short),
            lambda v, value: v.replace(shortlist=tuple(value)), options=available,
            format_func=scale_ui.picker_label(bank, data.single_models(bank_key, split)), max_selections=limit,
            select_all=False,   # Streamlit's default offers "Select all" of every model: far over the limit
            help=f"The models combined into 3-model chains (all ordered triples, cheapest first). At most {limit}: "
                 f"a 3-model search over k models holds about k x {families.SHORTLIST_BYTES_PER_SAMPLE} bytes per "
                 f"image ({n_samples:,} images here) and its chains grow with the cube of k.",
        )
    if len(view.shortlist) > limit:
        st.warning(f"The shortlist from the link has {len(view.shortlist)} models; at most {limit} fit the "
                   f"memory a 3-model search may use on {n_samples:,} images "
                   f"(~{families.shortlist_bytes(len(view.shortlist), n_samples) / 1e9:.1f} GB needed). "
                   f"Using the first {limit}.", icon=":material/memory:")
        chosen = list(chosen)[:limit]
    if not state.current().shortlist:
        st.caption(f"No shortlist picked, so the {len(default_short)} models that appear in the best pairs are "
                   "combined; pick models to change it.")
    shortlist = tuple(m for m in available if m in chosen)
    if len(shortlist) < 3:
        st.info("Pick at least three models for 3-model chains; showing pairs only.")
        stages = 2

if stages == 3:
    # in the background, keyed by its inputs: the page stays live while it runs, and a new shortlist or
    # criterion cancels the old search (it stops at its next chain; its result is never shown)
    search = scale_ui.search_job(bank, split, view.criterion, shortlist)
    if search.state == jobs.FAILED:
        scale_ui.job_error(search, "The 3-model search", "leaderboard_search_retry")
        st.stop()
    if search.state != jobs.DONE:
        n_chains = len(shortlist) * (len(shortlist) - 1) * (len(shortlist) - 2) // 6
        with st.status(f"Searching every 3-model chain of {len(shortlist)} models ({n_chains:,} chains)...",
                       expanded=True):
            scale_ui.job_progress(search.key, "The table appears when it is done; change the shortlist or the "
                                              "criterion to stop this search and start another.")
        st.stop()
    frontier = search.result
else:
    scale_ui.cancel_slot("leaderboard_search")   # back to pairs: a running 3-model search is not needed
    frontier = data.frontier(bank_key, split, view.criterion, stages, ())
singles = data.single_models(bank_key, split)
best_single = singles.loc[singles["accuracy"].idxmax()]
st.markdown(f"{len(frontier):,} cascades on the frontier of **{ui.md(split)}** · best single model: "
            f"{ui.md(best_single['display_name'])} at {ui.pct(best_single['accuracy'])} for {ui.num(best_single['gmacs'])} GMACs.")

frontier = frontier.reset_index(drop=True)
# router metrics of each pair (exact over all its thresholds, every image); NaN for 3-model chains
pairs = sorted({tuple(models) for models in frontier["models"] if len(models) == 2})
router = with_router_columns(frontier, data.router_table(bank_key, split, view.criterion, pairs),
                             columns=("apgr", "cpt_50", "oracle_accuracy"))
chain_names = {m: ui.chain_text(bank, m) for m in dict.fromkeys(map(tuple, frontier["models"]))}  # ~100x fewer
table = pd.DataFrame({
    "cascade": [chain_names[tuple(m)] for m in frontier["models"]],
    "thresholds": [plots.format_thresholds(t) for t in frontier["thresholds"]],
    "accuracy": frontier["accuracy"].astype(float),
    "avg GMACs": frontier["avg_gmacs"].astype(float),
    "avg ms": pd.to_numeric(frontier["avg_ms"], errors="coerce") if "avg_ms" in frontier else None,
    "escalated": frontier["escalated_fraction"].astype(float),
    "speed-up": pd.to_numeric(frontier["speedup"], errors="coerce"),
    "APGR": router["apgr"].astype(float),
    "CPT 50%": router["cpt_50"].astype(float),
    "oracle accuracy": router["oracle_accuracy"].astype(float),
})
if table["avg ms"].isna().all():
    table = table.drop(columns=["avg ms"])

o1, o2 = st.columns([1, 2])
with o1:
    rank = state.bound(
        st.selectbox, "Rank by", "w_rank", view.rank, lambda v, value: v.replace(rank=value),
        options=list(state.RANKS),
        format_func={"speedup": "speed-up at equal accuracy", "accuracy": "accuracy", "cost": "lowest cost"}.get,
        help="The order of the table (click a column header to re-sort it in place).",
    )
with o2:
    per_pair = state.bound(
        st.toggle, "Best row per model chain only", "w_per_pair", view.per_pair,
        lambda v, value: v.replace(per_pair=bool(value)),
        help="On: each chain's single best operating point under the ranking. Off: every frontier point "
             "(one per threshold).",
    )
sort_keys = {"speedup": (["speed-up", "accuracy"], [False, False]), "accuracy": (["accuracy", "avg GMACs"], [False, True]),
             "cost": (["avg GMACs", "accuracy"], [True, False])}[rank]
table = table.sort_values(sort_keys[0], ascending=sort_keys[1], na_position="last", kind="stable")
if per_pair:
    table = table.drop_duplicates(subset="cascade", keep="first")
on_front = set(families.frontier_models(frontier))
uses = st.selectbox("Only cascades that use", [""] + [m for m in available if m in on_front],
                    key="flt_leaderboard_uses", format_func=lambda m: "any model" if not m else ui.model_label(bank, m),
                    help="Keep the rows whose chain contains this model.")
if uses:
    table = table[families.chains_using(list(frontier.loc[table.index, "models"]), uses)]
# cascades with at least one matching model (the frontier is global: few are made only of one family)
allowed = set(scale_ui.model_filter(bank, singles, "leaderboard"))
if len(allowed) < len(singles):
    table = table[[any(m in allowed for m in frontier.loc[i, "models"]) for i in table.index]]
# thousands of frontier rows (every threshold of every chain) are paged: one page is sent to the browser,
# not the whole table, and a click still maps to its frontier row through `shown`'s index
n_rows = len(table)
shown = table  # its index = row of `frontier`
if n_rows > PAGE_SIZES[0]:
    p1, p2, p3 = st.columns([1, 1, 2])
    size = p1.selectbox("Rows per page", PAGE_SIZES, index=1, key="flt_leaderboard_page_size")
    n_pages = -(-n_rows // size)
    if st.session_state.get("flt_leaderboard_page", 1) > n_pages:   # fewer rows now (a filter): last page
        st.session_state["flt_leaderboard_page"] = n_pages
    page_no = p2.number_input(f"Page (of {n_pages:,})", min_value=1, max_value=n_pages, step=1,
                              key="flt_leaderboard_page")
    start = (int(page_no) - 1) * size
    shown = table.iloc[start:start + size]
    p3.caption(f"Rows {start + 1:,}–{start + len(shown):,} of {n_rows:,} (the CSV holds them all).")


def open_row() -> None:
    rows = (st.session_state.get("leaderboard_table") or {}).get("selection", {}).get("rows", [])
    if not rows:
        return
    row = frontier.loc[shown.index[int(rows[0])]]
    state.update(models=tuple(row["models"]), thresholds=tuple(float(t) for t in row["thresholds"]),
                 criterion=view.criterion, mode="manual", temperature="none", ensemble=False)
    st.session_state["_leaderboard_open"] = True


st.dataframe(
    shown, hide_index=True, key="leaderboard_table", on_select=open_row, selection_mode="single-row",
    column_config={
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent", help="Top-1 accuracy on every image."),
        "avg GMACs": st.column_config.NumberColumn("avg GMACs", format="%.4g", help="Average compute per image."),
        "avg ms": st.column_config.NumberColumn("avg ms", format="%.3g", help="Average latency per image."),
        "escalated": st.column_config.NumberColumn("escalated", format="percent",
                                                   help="Share of images that reach the last model."),
        "speed-up": st.column_config.NumberColumn(
            "speed-up", format="%.2f×",
            help="Compute of the best single models at the same accuracy divided by the cascade's "
                 "(None: more accurate than every single model, so none matches it)."),
        "APGR": st.column_config.NumberColumn(
            "APGR", format="%.3f",
            help="Router metric of the pair (RouteLLM): average share of the accuracy gap between the two "
                 "models recovered, over every escalated share from 0 to 1; exact over all thresholds. Empty "
                 "for 3-model chains, or when the second model is not more accurate."),
        "CPT 50%": st.column_config.NumberColumn(
            "CPT 50%", format="percent",
            help="Smallest share of images sent to the second model that recovers half the accuracy gap."),
        "oracle accuracy": st.column_config.NumberColumn(
            "oracle accuracy", format="percent",
            help="Per image the better of the two models: the bound no threshold can beat."),
    },
)
if st.session_state.pop("_leaderboard_open", False):
    st.switch_page("views/explorer.py")

csv = table.assign(models=["+".join(frontier.loc[i, "models"]) for i in table.index],
                   threshold_values=[";".join(repr(float(t)) for t in frontier.loc[i, "thresholds"]) for i in table.index])
csv_text = text.spreadsheet_frame(csv).to_csv(index=False)   # a name like "=HYPERLINK(...)" stays text
st.download_button("Download CSV", lambda: csv_text, file_name=f"leaderboard-{split}.csv", mime="text/csv",
                   icon=":material/download:", key="leaderboard_csv", on_click="ignore",
                   help="The table above (every page) with model ids and exact thresholds, for a spreadsheet or a script.")

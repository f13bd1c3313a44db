"""Model zoo: the bank's models in a table and on an accuracy-cost scatter."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cascade_explorer.core import families, plots
from cascade_explorer.dashboard import data, scale_ui, state, ui

bank = data.current_bank()
view = state.current()
split = ui.split_of(bank, view)
bank_key = data.key(bank)

st.title("Model zoo")
ui.bank_line(bank)

singles = data.single_models(bank_key, split)
kept = scale_ui.model_filter(bank, singles, "zoo")
fams = scale_ui.bank_families(bank)
rows = []
no_outputs = [m for m in bank.model_ids if m not in set(singles["id"])]   # listed, never filtered away
for m in (bank.model(i) for i in kept + no_outputs):
    row = {"id": m.id, "model": ui.plain(m.display_name, 200), "family": ui.plain(fams[m.id], 80), "backend": ui.plain(m.backend, 100), "GMACs": m.gmacs,
           "params (M)": None if m.params is None else m.params / 1e6, "latency ms (batch 1)": m.ms()}
    for s in bank.splits:
        row[f"top-1 {s}"] = m.top1.get(s)
    row["input"] = "×".join(str(v) for v in m.input_size) if m.input_size else ""
    src = m.source or {}
    row["weights"] = ui.plain(src.get("url") or src.get("package") or src.get("name") or src.get("kind", ""), 500)
    rows.append(row)
table = pd.DataFrame(rows, columns=None if rows else ["id", "model", "family", "GMACs"])
sort_by = st.selectbox("Sort by", [""] + [c for c in table.columns if c not in ("input", "weights")],
                       key="flt_zoo_sort", format_func=lambda c: c or "bank order (cheapest first)",
                       help="Accuracy columns sort best first, the others ascending; a click on a column header "
                            "also re-sorts in place.")
if sort_by and len(table):
    table = table.sort_values(sort_by, ascending=not sort_by.startswith("top-1"), na_position="last", kind="stable")
pct_cols = {c: st.column_config.NumberColumn(c, format="percent", help=f"Top-1 accuracy on {ui.md(c[6:])}")
            for c in table.columns if c.startswith("top-1 ")}
st.dataframe(
    table, hide_index=True,
    column_config={
        "GMACs": st.column_config.NumberColumn("GMACs", format="%.4g", help="Multiply-accumulates per image (billions)"),
        "params (M)": st.column_config.NumberColumn("params (M)", format="%.2f"),
        "latency ms (batch 1)": st.column_config.NumberColumn(
            "latency ms", format="%.3g",
            help="Measured single-image latency" + (f" on {ui.md(bank.latency_devices()[0])}" if bank.latency_devices() else "")),
        **pct_cols,
    },
)

c1, c2 = st.columns(2)
cost_options = ["gmacs"] + (["ms"] if singles["ms"].notna().any() else [])
cost = view.cost if view.cost in cost_options else "gmacs"
with c1:
    state.bound(
        st.segmented_control, "Cost axis", "w_cost", cost, lambda v, value: v.replace(cost=value or "gmacs"),
        options=cost_options, required=True, format_func={"gmacs": "GMACs", "ms": "latency (ms)"}.get,
        help="Compute (multiply-accumulates) or measured latency per image on the x axis.",
    )
with c2:
    log_x = view.log_x if view.log_x is not None else scale_ui.log_default(singles, cost)
    state.bound(st.toggle, "Log scale", "w_logx", log_x, lambda v, value: v.replace(log_x=bool(value)),
                help="Logarithmic cost axis: spreads out the cheap models (on by default when costs span "
                     "more than 30x).")
highlight = scale_ui.highlight_picker(bank, singles, "zoo")
fig = plots.from_model_zoo(singles, hull=data.hull(bank_key, split, cost), cost=cost, log_x=log_x, split=split,
                           labels=families.labelled_models(singles, frontier=data.frontier(bank_key, split)
                                                           if len(singles) > families.LABEL_ALL_UP_TO else None),
                           highlight=highlight)
st.plotly_chart(fig, theme="streamlit", key="zoo_chart", config={"displaylogo": False})
st.caption(f"Accuracy on **{ui.md(split)}** ({int(singles['n_samples'].max()) if len(singles) else 0:,} images). "
           "The dashed line is what you get by running one model or the other at random: a cascade has to "
           "beat it to be worth anything.")

"""Overview: the idea, the bank, and the headline result computed live."""

from __future__ import annotations

import streamlit as st

from cascade_explorer.core import families, plots
from cascade_explorer.dashboard import data, state, ui

bank = data.current_bank()
view = state.current()
split = ui.split_of(bank, view)
bank_key = data.key(bank)

st.title("Cascade Explorer")
st.markdown(
    "A **model cascade** runs a cheap classifier first and hands an image to a bigger model only when the "
    "cheap one is not confident enough. Most images are easy, so the cascade matches the big model's accuracy "
    "for a fraction of its compute — with off-the-shelf models and no retraining."
)
ui.bank_line(bank)

singles = data.single_models(bank_key, split)
head = data.headline(bank_key, split)
if head is None or singles.empty:
    st.warning(f"Image set {ui.md(repr(split))} has logits for fewer than two models, so there is no cascade to show. "
               "Add models to the bank (`cascade-explorer precompute` or `import`).")
    st.stop()

models = tuple(head["models"])
thresholds = tuple(float(t) for t in head["thresholds"])
ev = data.evaluate(bank_key, split, models, "max_softmax", thresholds, "none", False, "all")
best = singles.loc[singles["accuracy"].idxmax()]

st.subheader("Headline")
st.markdown(f"Best cascade found on **{ui.md(split)}**: **{ui.md(ui.chain_text(bank, models))}** "
            f"(max-softmax, {plots.format_thresholds(thresholds)}) — the largest speed-up at equal accuracy among "
            f"the cascades within {data.HEADLINE_TOLERANCE:.0%} accuracy of the best single model, "
            f"**{ui.md(best['display_name'])}**.")
c = st.columns(4)
c[0].metric("Cascade accuracy", ui.pct(ev["accuracy"]), help="Top-1 accuracy of the cascade on every image of the set.")
c[0].caption(ui.ci(ev.get("accuracy_ci")))
c[1].metric("Best single model", ui.pct(best["accuracy"]), help=f"{ui.md(best['display_name'])} alone.")
c[1].caption(ui.md(best["display_name"]))
c[2].metric("Cost", f"{ui.num(ev['avg_gmacs'])} GMACs",
            help="Average multiply-accumulates per image of the cascade.")
c[2].caption(f"vs {ui.num(best['gmacs'])} GMACs for {ui.md(best['display_name'])}")
c[3].metric("Speed-up at equal accuracy", ui.speedup(ev.get("speedup")),
            help="Compute the best single models (switching between them) need for the cascade's accuracy, "
                 "divided by the cascade's compute.")
c[3].caption(ui.speedup_caption(ev.get("speedup"), f"{ui.pct(ev['exit_fractions'][0])} of images answered by "
                                                    f"{ui.md(bank.model(models[0]).display_name)}"))

curve = data.chain_curve(bank_key, split, models, "max_softmax", "none", False)
frontier = data.frontier(bank_key, split)
with_speedup = frontier[frontier["speedup"].notna()]
if len(with_speedup):
    top = with_speedup.loc[with_speedup["speedup"].astype(float).idxmax()]
    st.caption(f"Largest speed-up anywhere on the frontier: **{ui.speedup(top['speedup'])}** with "
               f"{ui.md(ui.chain_text(bank, top['models']))} ({plots.format_thresholds(top['thresholds'])}) at "
               f"{ui.pct(top['accuracy'])} accuracy and {ui.num(top['avg_gmacs'])} GMACs — see the Leaderboard.")
fig = plots.from_tradeoff(singles, hull=data.hull(bank_key, split), curve=curve, frontier=frontier,
                          point={"accuracy": ev["accuracy"], "avg_gmacs": ev["avg_gmacs"], "avg_ms": ev["avg_ms"],
                                 "label": "headline cascade", "name": "headline cascade"},
                          chain_name=f"{ui.chain_text(bank, models)}, every threshold", log_x=True,
                          labels=families.labelled_models(singles, frontier=frontier, current=models))
st.plotly_chart(fig, theme="streamlit", key="overview_chart", config={"displaylogo": False})
st.caption("Up and to the left is better. Blue dots are single models; the dashed line is the best you can do "
           "by mixing them; the green line is the best cascade of any two models; the star is the headline.")

if st.button("Open this cascade in the Explorer", type="primary", icon=":material/tune:",
             help="Load the headline cascade into the Explorer to move its threshold."):
    state.update(models=models, thresholds=thresholds, criterion="max_softmax", temperature="none",
                 ensemble=False, mode="manual")
    st.switch_page("views/explorer.py")

st.subheader("Where next")
links = st.columns(3)
links[0].page_link("views/explorer.py", label="Explorer: build and tune a cascade", icon=":material/tune:")
links[0].page_link("views/leaderboard.py", label="Leaderboard: best cascades of all pairs", icon=":material/leaderboard:")
links[1].page_link("views/gallery.py", label="Exit gallery: which images exit where", icon=":material/photo_library:")
links[1].page_link("views/shift.py", label="Distribution shift: do thresholds transfer?", icon=":material/swap_horiz:")
links[2].page_link("views/zoo.py", label="Model zoo: the bank's models", icon=":material/grid_view:")
links[2].page_link("views/live.py", label="Live: run a cascade on your picture", icon=":material/photo_camera:")

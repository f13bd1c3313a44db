"""Cascade Explorer dashboard: `cascade-explorer dashboard [--bank PATH]` runs this with Streamlit.

Opens the bank (a missing, empty or corrupt bank gives a message page, never a traceback), keeps
the whole view in the URL (dashboard/state.py) and registers the pages with ``st.navigation``.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from cascade_explorer.core.errors import BankError, CascadeExplorerError
from cascade_explorer.dashboard import data, runlog, scale_ui, state, ui

_run_started = time.perf_counter()   # server time of this script run, for the load benchmark



def _icon():
    """A small stair-step favicon drawn locally (material icons would be fetched from Google's CDN)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for i, colour in enumerate(("#0072B2", "#E69F00", "#009E73")):
        draw.rounded_rectangle((4 + 20 * i, 44 - 20 * i, 22 + 20 * i, 60), radius=3, fill=colour)
    return image


st.set_page_config(page_title="Cascade Explorer", page_icon=_icon(), layout="wide")

HERE = Path(__file__).resolve().parent
# The page scripts live in views/, NOT pages/: a pages/ folder next to app.py switches Streamlit into its
# legacy multipage mode until app.py first runs, so a link straight to /explorer on a fresh server would
# run the page without app.py (no bank opened) and crash.
# (file, title, url path, icon); the order is the sidebar's.
PAGES = [
    ("overview.py", "Overview", "overview", ":material/home:"),
    ("explorer.py", "Explorer", "explorer", ":material/tune:"),
    ("leaderboard.py", "Leaderboard", "leaderboard", ":material/leaderboard:"),
    ("gallery.py", "Exit gallery", "gallery", ":material/photo_library:"),
    ("shift.py", "Distribution shift", "shift", ":material/swap_horiz:"),
    ("zoo.py", "Model zoo", "zoo", ":material/grid_view:"),
    ("live.py", "Live", "live", ":material/photo_camera:"),
]

view = state.current()
choices = data.bank_choices()
bank_label, bank_path = data.resolve_bank(view.bank, choices)
if view.bank and view.bank != bank_label:
    unknown = view.bank != str(bank_path)
    asked = view.bank
    view = state.update(bank=bank_label)
    if unknown:   # after the update, which re-reads the URL and so restarts the problem list
        state.add_problem(f"URL parameter bank={asked!r} is not a bank found here; showing {bank_label} instead")

with st.sidebar:
    state.bound(
        st.selectbox, "Bank", "w_bank", bank_label,
        lambda v, value: v.replace(bank=value, split="", models=(), thresholds=(), shortlist=(),
                                   gallery_class=None, shift_fit="", shift_apply=""),
        options=list(choices), format_func=lambda label: ui.plain(label, 200),
        help="A bank holds precomputed model outputs on one dataset. Every bank found next to the "
             "start bank (and in CASCADE_EXPLORER_BANKS folders) is listed.",
    )

bank, problem = data.open_bank(bank_path)

if problem is not None:
    st.session_state.pop("_bank", None)

    def show_problem():
        ui.problem_page(problem, choices)

    pages = [st.Page(show_problem, title=title, url_path=url, icon=icon, default=(i == 0))
             for i, (_, title, url, icon) in enumerate(PAGES)]
else:
    st.session_state["_bank"] = bank
    view = ui.sanitize_view(bank, view)
    with st.sidebar:
        ui.split_picker(bank, view)
        ui.incomplete_note(bank)
    pages = [st.Page(str(HERE / "views" / file), title=title, url_path=url, icon=icon, default=(i == 0))
             for i, (file, title, url, icon) in enumerate(PAGES)]

page = st.navigation(pages)
for message in state.url_problems():
    st.toast(ui.md(message, 500), icon=":material/link_off:")   # echoes URL values: text, not Markdown
st.session_state[state.PROBLEMS_KEY] = []
_outcome = "ok"
try:
    # a big bank is opened in the background (signal store, then the all-pairs frontier): until it is
    # ready the page shows its title and the progress, never a blank page
    if problem is not None or scale_ui.bank_ready(bank, ui.split_of(bank, view), page.title, view.criterion):
        page.run()
except CascadeExplorerError as exc:  # found only while reading arrays (e.g. NaN logits): message, not traceback
    if isinstance(exc, BankError):
        ui.problem_page(data.BankProblem(bank_path, "The bank is damaged", str(exc)), choices)
    else:
        st.error(ui.md(exc), icon=":material/error:")
except Exception as exc:
    # st.stop / st.rerun / switch_page are control flow, not errors; anything else is recorded
    # (Streamlit still shows it) so a load run counts it
    if type(exc).__module__.startswith("streamlit"):
        _outcome = "control"
    else:
        _outcome = type(exc).__name__
    raise
finally:
    runlog.record(page.url_path or "overview", time.perf_counter() - _run_started, _outcome)
state.write_url()

"""The dashboard's whole view state, kept in the URL (``st.query_params``) so a copied link reproduces it.

``ViewState`` is the single source of truth for a session (in ``st.session_state``). Widgets are
bound to its fields through ``bound()``: a widget's ``on_change`` callback writes the new value into
the view before the script reruns, and every run writes the view back to the URL. A URL that
differs from the one this session last wrote (a pasted link, a link from another page) replaces the
view. Parsing and encoding are pure functions, tested without Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Mapping

CRITERIA = ("max_softmax", "softmax_margin", "logit_margin", "entropy")
TEMPERATURES = ("none", "fit")
MODES = ("manual", "target")
TARGET_KINDS = ("accuracy", "gmacs", "escalated", "drop")
# the guarantee choices of target mode: delta (chance the certified target may fail); None = plain fit
DELTAS = (None, 0.2, 0.1, 0.05, 0.01)
EVAL_ON = ("all", "eval")
COSTS = ("gmacs", "ms")
RANKS = ("speedup", "accuracy", "cost")
CALIBRATION_VIEWS = ("split", "reliability", "risk", "off")   # the Explorer's calibration view (one at a time)
GALLERY_GROUPS = ("stage", "exited-right", "exited-wrong", "escalated-fixed", "escalated-wrong")
MAX_STAGES = 4


@dataclass(frozen=True)
class ViewState:
    bank: str = ""                      # bank folder name (or path) among the banks found; "" = default
    split: str = ""                     # "" = the bank's first split
    models: tuple[str, ...] = ()        # the chain, cheapest first; () = let the app pick a good pair
    criterion: str = "max_softmax"
    temperature: str = "none"
    ensemble: bool = False
    thresholds: tuple[float, ...] = ()  # one per non-final stage; () = defaults
    mode: str = "manual"
    target_kind: str = "accuracy"
    target_value: float | None = None
    delta: float | None = None          # target mode: certify with this delta (None = plain fit)
    on: str = "all"                     # metrics on every sample or on the held-out evaluation part
    cost: str = "gmacs"
    log_x: bool | None = None           # None = log when the costs span more than 30x (core.families)
    calibration: str = "split"          # Explorer: which calibration view is shown
    stages: int = 2                     # leaderboard: 2 = all pairs, 3 = three-model over the shortlist
    shortlist: tuple[str, ...] = ()
    rank: str = "speedup"               # leaderboard order
    per_pair: bool = True               # leaderboard: only each chain's best row
    gallery_class: int | None = None
    gallery_group: str = "stage"
    shift_fit: str = ""                 # split the thresholds are fitted on
    shift_apply: str = ""               # split they are applied to

    def replace(self, **changes) -> "ViewState":
        return replace(self, **changes)


# URL parameter name for each field (short, stable: links people shared depend on them).
PARAMS = {
    "bank": "bank", "split": "split", "models": "models", "criterion": "crit", "temperature": "temp",
    "ensemble": "ens", "thresholds": "thr", "mode": "mode", "target_kind": "target", "target_value": "tval", "delta": "delta",
    "on": "on", "cost": "cost", "log_x": "logx", "calibration": "calib", "stages": "stages", "shortlist": "short", "rank": "rank", "per_pair": "per_pair",
    "gallery_class": "cls", "gallery_group": "group", "shift_fit": "fit_on", "shift_apply": "apply_to",
}
DEFAULT = ViewState()


def _fmt_float(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))  # round-trips exactly


def to_query(view: ViewState) -> dict[str, str]:
    """URL parameters for ``view`` (fields at their default are left out to keep links short)."""
    out: dict[str, str] = {}
    for f in fields(ViewState):
        value = getattr(view, f.name)
        if value == getattr(DEFAULT, f.name):
            continue
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, tuple):
            text = ",".join(_fmt_float(v) if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            text = _fmt_float(value)
        else:
            text = str(value)
        out[PARAMS[f.name]] = text
    return out


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isnan(value):
        raise ValueError("NaN")
    return value


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {text!r}")


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text
    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _models(text: str) -> tuple[str, ...]:
    names = _names(text)
    if len(names) > MAX_STAGES:
        raise ValueError(f"at most {MAX_STAGES} models, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError("a model appears twice")
    return names


def _stages(text: str) -> int:
    value = int(text)
    if value not in (2, 3):
        raise ValueError("must be 2 or 3")
    return value


def _delta(text: str) -> float:
    value = _parse_float(text)
    if not 0.0 < value < 1.0:
        raise ValueError("must be strictly between 0 and 1, e.g. 0.05 for a 95% guarantee")
    return value


def _class(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


PARSERS: dict[str, Callable[[str], Any]] = {
    "bank": str, "split": str, "models": _models, "criterion": _choice(CRITERIA),
    "temperature": _choice(TEMPERATURES), "ensemble": _parse_bool,
    "thresholds": lambda t: tuple(_parse_float(x) for x in _names(t)), "mode": _choice(MODES),
    "target_kind": _choice(TARGET_KINDS), "target_value": _parse_float, "delta": _delta, "on": _choice(EVAL_ON),
    "cost": _choice(COSTS), "log_x": _parse_bool, "calibration": _choice(CALIBRATION_VIEWS), "stages": _stages, "shortlist": _names,
    "rank": _choice(RANKS), "per_pair": _parse_bool,
    "gallery_class": _class, "gallery_group": _choice(GALLERY_GROUPS), "shift_fit": str, "shift_apply": str,
}


def from_query(params: Mapping[str, Any]) -> tuple[ViewState, list[str]]:
    """Parse URL parameters into a view; bad values fall back to defaults and are reported in ``problems``."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, param in PARAMS.items():
        if param not in params:
            continue
        raw = params[param]
        if isinstance(raw, (list, tuple)):
            raw = raw[-1] if raw else ""
        try:
            values[name] = PARSERS[name](str(raw))
        except (ValueError, TypeError) as exc:
            problems.append(f"URL parameter {param}={raw!r} ignored: {exc}")
    return ViewState(**values), problems


# ---------------------------------------------------------------------------------------------
# Streamlit glue (kept thin; everything above is pure)

VIEW_KEY = "_view"
URL_KEY = "_url_written"
PROBLEMS_KEY = "_url_problems"


def _st():
    import streamlit as st

    return st


def current() -> ViewState:
    """This session's view; re-read from the URL when the URL is not the one this session wrote."""
    st = _st()
    url = {k: st.query_params.get_all(k)[-1] for k in st.query_params.keys()}
    ours = {k: v for k, v in url.items() if k in PARAMS.values()}
    written = st.session_state.get(URL_KEY)
    if VIEW_KEY not in st.session_state or (ours and ours != written):
        view, problems = from_query(ours)
        st.session_state[VIEW_KEY] = view
        st.session_state[PROBLEMS_KEY] = problems
        # widgets re-seed from the new view in bound() (their values differ from it)
    return st.session_state[VIEW_KEY]


def url_problems() -> list[str]:
    return list(_st().session_state.get(PROBLEMS_KEY, []))


def add_problem(message: str) -> None:
    """One more 'what was ignored and why' for this run's toasts (after any update(): re-reading the
    URL starts the list afresh)."""
    _st().session_state.setdefault(PROBLEMS_KEY, []).append(message)


def set_view(view: ViewState) -> None:
    """Replace the view (for callbacks and page code) and write it to the URL."""
    st = _st()
    st.session_state[VIEW_KEY] = view
    write_url(view)


def update(**changes) -> ViewState:
    view = current().replace(**changes)
    set_view(view)
    return view


def write_url(view: ViewState | None = None) -> None:
    st = _st()
    view = view if view is not None else st.session_state[VIEW_KEY]
    query = to_query(view)
    current_url = {k: st.query_params.get_all(k)[-1] for k in st.query_params.keys()}
    if current_url != query:
        st.query_params.from_dict(query)
    st.session_state[URL_KEY] = query


def _on_change(key: str, setter: Callable[[ViewState, Any], ViewState]) -> None:
    st = _st()
    set_view(setter(st.session_state[VIEW_KEY], st.session_state[key]))


def bound(widget: Callable, label: str, key: str, value: Any, setter: Callable[[ViewState, Any], ViewState],
          **kwargs) -> Any:
    """A widget whose value is ``value`` (from the view) and whose changes go through ``setter`` into the view.

    ``key`` must start with ``w_``; the widget is re-seeded whenever the view holds a different value
    (a chart click, a leaderboard row, a pasted link).
    """
    st = _st()
    if not key.startswith("w_"):
        raise ValueError(f"widget key {key!r} must start with 'w_'")
    if key not in st.session_state or st.session_state[key] != value:
        st.session_state[key] = value
    return widget(label, key=key, on_change=_on_change, args=(key, setter), **kwargs)

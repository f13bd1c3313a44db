"""dashboard/state.py: the URL encoding of the view round-trips exactly and rejects bad values safely."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_explorer.dashboard import state

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=True, width=64)

views = st.builds(
    state.ViewState,
    bank=st.one_of(st.just(""), names),
    split=st.one_of(st.just(""), names),
    models=st.lists(names, max_size=4, unique=True).map(tuple),
    criterion=st.sampled_from(state.CRITERIA),
    temperature=st.sampled_from(state.TEMPERATURES),
    ensemble=st.booleans(),
    thresholds=st.lists(finite, max_size=3).map(tuple),
    mode=st.sampled_from(state.MODES),
    target_kind=st.sampled_from(state.TARGET_KINDS),
    target_value=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    on=st.sampled_from(state.EVAL_ON),
    cost=st.sampled_from(state.COSTS),
    log_x=st.booleans(),
    stages=st.sampled_from([2, 3]),
    shortlist=st.lists(names, max_size=5).map(tuple),
    rank=st.sampled_from(state.RANKS),
    per_pair=st.booleans(),
    gallery_class=st.one_of(st.none(), st.integers(0, 999)),
    gallery_group=st.sampled_from(state.GALLERY_GROUPS),
    shift_fit=st.one_of(st.just(""), names),
    shift_apply=st.one_of(st.just(""), names),
)


@settings(max_examples=150, deadline=None)
@given(views)
def test_query_round_trip_is_exact(view):
    query = state.to_query(view)
    assert all(isinstance(v, str) for v in query.values())
    back, problems = state.from_query(query)
    assert problems == []
    assert back == view


def test_defaults_give_an_empty_url():
    assert state.to_query(state.ViewState()) == {}


def test_thresholds_keep_every_bit():
    t = (0.1 + 0.2, 1 / 3, math.inf)
    view, _ = state.from_query(state.to_query(state.ViewState(thresholds=t)))
    assert view.thresholds == t


def test_bad_values_fall_back_to_defaults_with_a_reason():
    view, problems = state.from_query({
        "crit": "vibes", "thr": "0.5,nan", "stages": "7", "models": "a,b,a", "ens": "maybe",
        "cls": "-3", "split": "val", "logx": ["0", "1"],
    })
    assert view.criterion == "max_softmax" and view.thresholds == () and view.stages == 2
    assert view.models == () and view.ensemble is False and view.gallery_class is None
    assert view.split == "val" and view.log_x is True  # good values kept; last repeated value wins
    joined = " | ".join(problems)
    for param in ("crit=", "thr=", "stages=", "models=", "ens=", "cls="):
        assert param in joined
    assert len(problems) == 6


def test_unknown_parameters_are_ignored():
    view, problems = state.from_query({"utm_source": "mail", "embed": "true"})
    assert view == state.ViewState() and problems == []


def test_too_many_models_rejected():
    _, problems = state.from_query({"models": "a,b,c,d,e"})
    assert problems and "at most 4" in problems[0]

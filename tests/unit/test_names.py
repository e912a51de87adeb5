"""Subjects are built only by streams.names and parse back to their parts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import names

RUNS = st.from_regex(r"[A-Za-z0-9_\-]{1,12}", fullmatch=True)


@given(RUNS, st.text(min_size=1, max_size=20), st.sampled_from(["loop.halted", "game.finished"]))
def test_subject_round_trip(run, aggregate, tag):
    subj = names.subject(names.EVENTS, run, aggregate, tag)
    stream, r, agg, t = names.parse_subject(subj)
    assert (stream, r, t) == (names.EVENTS, run, tag)
    assert agg == names.token(aggregate)
    assert "." not in agg and "*" not in agg and ">" not in agg and " " not in agg


def test_aggregate_filter_covers_its_events_only():
    f = names.aggregate_filter(names.EVENTS, "r1", "champion")
    assert f == "jz.ev.r1.champion.>"
    assert names.subject(names.EVENTS, "r1", "champion", "candidate.promoted").startswith(f[:-1])


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "x>", "*"])
def test_bad_run_names_are_refused(bad):
    with pytest.raises(ValueError):
        names.subject(names.EVENTS, bad, "loop", "loop.halted")


def test_parse_rejects_foreign_subjects():
    with pytest.raises(ValueError):
        names.parse_subject("foo.bar")

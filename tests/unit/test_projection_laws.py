"""Projection laws (no server): snapshot + tail == full replay; unknown events change nothing."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from projections.base import fold
from projections.loop_status import LoopStatus, LoopStatusProjection
from streams import events as ev

KINDS = [ev.LoopStarted, ev.LoopHalted, ev.LoopResumed, ev.LoopStopRequested, ev.LoopStopped,
         ev.ProcessRestarted]


@st.composite
def loop_events(draw):
    kinds = draw(st.lists(st.sampled_from(KINDS), max_size=40))
    out = []
    for i, kind in enumerate(kinds):
        extra = {"process": "sync"} if kind is ev.ProcessRestarted else {}
        out.append(kind(id=str(i), time=float(i), run="r", by=f"u{i % 3}", reason="", **extra))
    return out


@given(loop_events(), st.data())
def test_snapshot_plus_tail_equals_full_replay(events, data):
    p = LoopStatusProjection()
    cut = data.draw(st.integers(0, len(events)))
    snapshot = fold(p, events[:cut])
    # the snapshot survives an encode/decode round trip, as it does through KV
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=LoopStatus)
    assert fold(p, events[cut:], restored) == fold(p, events)


@given(loop_events())
def test_events_of_other_kinds_leave_state_unchanged(events):
    p = LoopStatusProjection()
    state = fold(p, events)
    other = ev.NodeJoined(id="x", time=0.0, run="r", node="n1")
    assert p.apply(state, other) is state


def test_a_halt_outlives_a_restart():
    p = LoopStatusProjection()
    s = fold(p, [
        ev.LoopStarted(id="1", time=1.0, run="r"),
        ev.LoopHalted(id="2", time=2.0, run="r", by="ops", reason="bad data"),
        ev.LoopStopped(id="3", time=3.0, run="r"),
        ev.LoopStarted(id="4", time=4.0, run="r"),
    ])
    assert s.halted and s.halted_by == "ops" and s.state == "running" and s.starts == 2

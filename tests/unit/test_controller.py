"""The controller's pure decide, and the shell's id stamping (decide idempotence)."""

from __future__ import annotations

from handlers.controller import decide
from handlers.shell import stamp
from projections.loop_status import LoopStatus
from streams import commands as cmd
from streams import events as ev


def test_halt_when_running_is_accepted_with_its_effect():
    c = cmd.HaltLoop.new("r", by="ops", reason="bad data")
    out = decide(LoopStatus(state="running"), c)
    assert [type(e) for e in out] == [ev.LoopHalted, ev.CommandAccepted]
    assert out[0].reason == "bad data" and out[1].command_id == c.id
    assert all(e.correlation_id == c.id for e in out)


def test_business_no_is_a_rejection_event():
    out = decide(LoopStatus(state="running"), cmd.ResumeLoop.new("r"))
    assert len(out) == 1 and isinstance(out[0], ev.CommandRejected)
    assert "not halted" in out[0].reason


def test_stamped_ids_derive_from_the_cause_only():
    c = cmd.HaltLoop.new("r")
    status = LoopStatus(state="running")
    first = stamp(decide(status, c), c, "controller")
    again = stamp(decide(status, c), c, "controller")  # redone after a crash
    assert [e.event.id for e in first] == [e.event.id for e in again]
    assert len({e.event.id for e in first}) == len(first)
    other = stamp(decide(status, cmd.HaltLoop.new("r")), c, "other-handler")
    assert {e.event.id for e in other}.isdisjoint(e.event.id for e in first)

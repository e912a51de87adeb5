"""The controller's pure decide (promote and rollback checked against the registry), and the
shell's id stamping (decide idempotence)."""

from __future__ import annotations

import typing

from handlers.loop.controller import decide, plan_rollback
from handlers.runtime.shell import Emit, stamp
from projections.loop_status import LoopStatus, LoopStatusProjection
from projections.models import ModelRegistryProjection, fold_numbered
from streams import commands as cmd
from streams import events as ev


def test_stop_when_running_is_accepted_with_its_effect():
    c = cmd.StopLoop.new("r", by="ops", reason="maintenance")
    out = decide(LoopStatus(state="running"), c)
    assert [type(e) for e in out] == [ev.LoopStopRequested, ev.CommandAccepted]
    assert out[0].reason == "maintenance" and out[1].command_id == c.id
    assert all(e.correlation_id == c.id for e in out)
    [rejected] = decide(LoopStatus(state="stopping"), c)
    assert isinstance(rejected, ev.CommandRejected) and "stopping" in rejected.reason


def test_only_the_commands_something_sends_exist():
    # start launches the supervisor and halt is a direct append: neither is a command
    assert {t.__struct_config__.tag for t in typing.get_args(cmd.AnyCommand)} == {
        "command.stop", "command.resume", "command.promote", "command.rollback",
        "command.node_resync"}  # jetzero cluster heal


def _halts(*events: ev.Event) -> LoopStatus:
    """The loop status after ``events`` at sequences 1, 2, ... (as the runner folds them)."""
    projection, state = LoopStatusProjection(), LoopStatusProjection().initial()
    for seq, event in enumerate(events, 1):
        state = projection.apply_at(state, event, seq)
    return state


def test_a_resume_lifts_only_the_halt_it_names():
    first = _halts(ev.LoopStarted.new("r"), ev.LoopHalted.new("r", by="alice"))
    assert first.halted and first.halt_seq == 2
    out = decide(first, cmd.ResumeLoop.new("r", by="alice", halt_seq=2))
    assert [type(e) for e in out] == [ev.LoopResumed, ev.CommandAccepted]
    # bob halts again while alice's resume is still queued: bob's halt wins
    second = _halts(ev.LoopStarted.new("r"), ev.LoopHalted.new("r", by="alice"),
                    ev.LoopHalted.new("r", by="bob", reason="bad games"))
    assert second.halt_seq == 3 and second.halted_by == "bob" and second.halts == 2
    [stale] = decide(second, cmd.ResumeLoop.new("r", by="alice", halt_seq=2))
    assert isinstance(stale, ev.CommandRejected)
    assert "#3 by bob (bad games)" in stale.reason and "names (#2)" in stale.reason
    [unnamed] = decide(second, cmd.ResumeLoop.new("r"))
    assert isinstance(unnamed, ev.CommandRejected) and "names (#0)" in unnamed.reason
    assert isinstance(decide(second, cmd.ResumeLoop.new("r", halt_seq=3))[0], ev.LoopResumed)


def test_business_no_is_a_rejection_event():
    out = decide(LoopStatus(state="running"), cmd.ResumeLoop.new("r"))
    assert len(out) == 1 and isinstance(out[0], ev.CommandRejected)
    assert "not halted" in out[0].reason


def test_stamped_ids_derive_from_the_cause_only():
    c = cmd.StopLoop.new("r")
    status = LoopStatus(state="running")
    first = stamp(decide(status, c), c, "controller")
    again = stamp(decide(status, c), c, "controller")  # redone after a crash
    assert [e.event.id for e in first] == [e.event.id for e in again]
    assert len({e.event.id for e in first}) == len(first)
    other = stamp(decide(status, cmd.StopLoop.new("r")), c, "other-handler")
    assert {e.event.id for e in other}.isdisjoint(e.event.id for e in first)


# -- promote and rollback, checked against the registry ---------------------------------------

def _registry(*events: ev.Event):
    """The registry after ``events`` at sequences 1, 2, ..."""
    return fold_numbered(ModelRegistryProjection(), enumerate(events, 1))


def _line():
    """gen0 (#1, initial) → a (#4) → b (#5); c (#6) is known and undecided."""
    return _registry(
        ev.CheckpointSaved.new("r", model_id="gen0", object_name="o0", digest="d0", generation=0),
        ev.CheckpointSaved.new("r", model_id="a", object_name="oa", digest="da", generation=1),
        ev.CheckpointSaved.new("r", model_id="b", object_name="ob", digest="db", generation=2),
        ev.CandidatePromoted.new("r", model_id="a", previous_champion="gen0"),
        ev.CandidatePromoted.new("r", model_id="b", previous_champion="a"),
        ev.CheckpointSaved.new("r", model_id="c", object_name="oc", digest="dc", generation=3),
    )


def test_a_promote_names_a_known_undecided_model_and_expects_the_champion_seq():
    registry = _line()
    c = cmd.PromoteModel.new("r", model_id="c", by="ops", reason="looks good")
    out = decide(LoopStatus(state="running"), c, registry)
    assert isinstance(out[0], Emit) and isinstance(out[0].event, ev.CandidatePromoted)
    assert out[0].expected_last_seq == registry.champion_last_seq == 5
    assert out[0].event.previous_champion == "b" and out[0].event.generation == 3
    assert out[0].event.gates[0].gate == "manual" and "ops" in out[0].event.gates[0].detail
    assert isinstance(out[1], ev.CommandAccepted)
    for model, why in (("nope", "unknown model"), ("a", "already promoted")):
        [rejected] = decide(LoopStatus(), cmd.PromoteModel.new("r", model_id=model), registry)
        assert isinstance(rejected, ev.CommandRejected) and why in rejected.reason


def test_a_rollback_goes_to_an_effective_earlier_promotion():
    registry = _line()
    out = decide(LoopStatus(), cmd.RollbackChampion.new("r", reason="regressed"), registry)
    emit = out[0]
    assert isinstance(emit, Emit) and emit.expected_last_seq == 5
    assert (emit.event.to_promotion_seq, emit.event.model_id, emit.event.reverted_models) == (4, "a", ["b"])
    assert emit.event.reason == "regressed" and not emit.event.automatic
    to_first = plan_rollback(registry, to_seq=1)
    assert not isinstance(to_first, str)
    assert (to_first.target.model_id, to_first.reverted) == ("gen0", ["a", "b"])
    by_model = plan_rollback(registry, model_id="gen0")
    assert not isinstance(by_model, str) and by_model.target.seq == 1


def test_a_rollback_target_that_is_not_an_effective_earlier_promotion_is_refused():
    registry = _line()
    assert "nothing to undo" in plan_rollback(registry, to_seq=5)
    assert "no promotion at sequence 3" in plan_rollback(registry, to_seq=3)
    assert "champion already" in plan_rollback(registry, model_id="b")
    assert "no effective earlier promotion" in plan_rollback(registry, model_id="c")
    rolled = ModelRegistryProjection().apply_at(
        registry, ev.ChampionRolledBack.new("r", to_promotion_seq=1, model_id="gen0"), 7)
    assert "not effective" in plan_rollback(rolled, to_seq=4)  # a was reverted by #7
    assert "no earlier promotion" in plan_rollback(rolled)
    assert "no champion" in plan_rollback(_registry())
    [rejected] = decide(LoopStatus(), cmd.RollbackChampion.new("r", to_promotion_seq=4), rolled)
    assert isinstance(rejected, ev.CommandRejected) and "not effective" in rejected.reason


def test_back_one_step_is_refused_when_a_decision_landed_after_the_one_its_sender_saw():
    registry = _line()  # the champion aggregate's last event is b's promotion, #5
    [moved] = decide(LoopStatus(), cmd.RollbackChampion.new("r", champion_seq=4), registry)
    assert isinstance(moved, ev.CommandRejected) and "changed while it was planned" in moved.reason
    seen = decide(LoopStatus(), cmd.RollbackChampion.new("r", champion_seq=5), registry)
    assert isinstance(seen[0], Emit) and seen[0].event.model_id == "a"
    # a named target means the same after any decision: planned on the state as it is
    named = decide(LoopStatus(), cmd.RollbackChampion.new("r", to_promotion_seq=4, champion_seq=1), registry)
    assert isinstance(named[0], Emit) and named[0].event.to_promotion_seq == 4

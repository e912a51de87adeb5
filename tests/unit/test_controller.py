"""The controller's pure decide (promote and rollback checked against the registry), and the
shell's id stamping (decide idempotence)."""

from __future__ import annotations

from handlers.loop.controller import decide, plan_rollback
from handlers.runtime.shell import Emit, stamp
from projections.loop_status import LoopStatus
from projections.models import ModelRegistryProjection, fold_numbered
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

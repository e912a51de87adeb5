"""The model registry fold: checkpoints, the champion, promotions, rollbacks marking reverted."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.models import (
    ModelRegistry,
    ModelRegistryProjection,
    fold_numbered,
    lineage,
    previous_champions,
    previous_promotion,
)
from streams import events as ev
from streams import names

P = ModelRegistryProjection()


def checkpoint(i: int, generation: int, parent: str = "") -> ev.CheckpointSaved:
    return ev.CheckpointSaved(
        id=f"c{i}",
        time=float(i),
        run="r",
        model_id=f"m{generation}",
        object_name=f"models/m{generation}.pt",
        digest=f"sha-{generation}",
        generation=generation,
        parent_model=parent,
        step=10 * generation,
        policy_loss=1.0 / (generation + 1),
    )


def promoted(i: int, model: str, previous: str = "") -> ev.CandidatePromoted:
    return ev.CandidatePromoted(
        id=f"p{i}", time=float(i), run="r", model_id=model, previous_champion=previous
    )


def rolled_back(i: int, to_seq: int, model: str = "") -> ev.ChampionRolledBack:
    return ev.ChampionRolledBack(id=f"b{i}", time=float(i), run="r", to_promotion_seq=to_seq, model_id=model)


def test_generation_zero_is_the_initial_champion_and_every_checkpoint_is_recorded():
    s = fold_numbered(P, [(3, checkpoint(1, 0)), (5, checkpoint(2, 1, "m0"))])
    assert s.champion is not None and s.champion.model_id == "m0"
    assert s.champion.promotion_seq == 3
    assert [(p.seq, p.model_id, p.initial) for p in s.promotions] == [(3, "m0", True)]
    m1 = s.models["m1"]
    assert (m1.parent, m1.generation, m1.digest, m1.saved_seq, m1.step) == ("m0", 1, "sha-1", 5, 10)
    assert s.champion_last_seq == 0  # the champion aggregate is still empty
    assert s.last_seq == 5


def test_promotions_rejections_and_the_champion_aggregate_sequence():
    s = fold_numbered(
        P,
        [
            (1, checkpoint(1, 0)),
            (2, checkpoint(2, 1, "m0")),
            (3, checkpoint(3, 2, "m1")),
            (7, promoted(4, "m1", "m0")),
            (9, ev.CandidateRejected(id="x", time=9.0, run="r", model_id="m2", reason="weak")),
        ],
    )
    assert s.champion.model_id == "m1" and s.champion.promotion_seq == 7
    assert s.champion.generation == 1
    assert s.decided == {"m0", "m1", "m2"}
    assert [r.model_id for r in s.rejections] == ["m2"]
    assert s.champion_last_seq == 9
    assert previous_champions(s, 5) == ["m0"]


def test_rollback_restores_the_named_promotion_and_marks_later_ones_reverted():
    events = [(1, checkpoint(1, 0))]
    for g in range(1, 4):
        events.append((10 * g, checkpoint(10 * g, g, f"m{g - 1}")))
        events.append((10 * g + 1, promoted(10 * g + 1, f"m{g}", f"m{g - 1}")))
    s = fold_numbered(P, events)
    assert s.champion.model_id == "m3"
    assert previous_promotion(s).seq == 21

    after = fold_numbered(P, [(40, rolled_back(40, 11, "m1"))], s)
    assert after.champion.model_id == "m1" and after.champion.promotion_seq == 11
    assert [p.reverted for p in after.promotions] == [False, False, True, True]
    assert after.reverted_models == {"m2", "m3"}
    assert [p.model_id for p in lineage(after)] == ["m0", "m1"]
    assert after.rollbacks[0].to_promotion_seq == 11 and after.champion_last_seq == 40
    assert previous_champions(after, 3) == ["m0"]

    # back to the initial champion by its checkpoint's sequence
    initial = fold_numbered(P, [(41, rolled_back(41, 1, "m0"))], after)
    assert initial.champion.model_id == "m0"
    assert initial.reverted_models == {"m1", "m2", "m3"}
    assert previous_promotion(initial) is None

    # forward again to a promotion that an earlier rollback reverted: the line as of it
    forward = fold_numbered(P, [(42, rolled_back(42, 31, "m3"))], initial)
    assert forward.champion.model_id == "m3"
    assert [p.model_id for p in lineage(forward)] == ["m0", "m1", "m2", "m3"]
    assert forward.reverted_models == frozenset()


def test_other_events_leave_the_state_unchanged():
    s = fold_numbered(P, [(1, checkpoint(1, 0))])
    other = ev.NodeJoined(id="n", time=0.0, run="r", node="n1")
    assert P.apply_at(s, other, 2) is s
    assert P.apply(s, other) is s


CHAMPION_TAGS = {"candidate.promoted", "candidate.rejected", "champion.rolled_back"}


@st.composite
def registry_logs(draw) -> list[tuple[int, ev.Event]]:
    """A plausible log: checkpoints, promotions, rejections, rollbacks to any promotion."""
    state, seq, out, generation = P.initial(), 0, [], 0
    for i in range(draw(st.integers(0, 30))):
        seq += draw(st.integers(1, 3))  # gaps: events of other aggregates
        kind = draw(st.sampled_from(["checkpoint", "promote", "reject", "rollback", "match"]))
        undecided = [m for m in state.models if m not in state.decided]
        event: ev.Event
        if kind == "checkpoint" or (kind in ("promote", "reject", "match") and not undecided):
            event = checkpoint(i, generation, f"m{generation - 1}" if generation else "")
            generation += 1
        elif kind == "promote":
            previous = state.champion.model_id if state.champion else ""
            event = promoted(i, draw(st.sampled_from(undecided)), previous)
        elif kind == "reject":
            event = ev.CandidateRejected(
                id=f"x{i}", time=float(i), run="r", model_id=draw(st.sampled_from(undecided)), reason=""
            )
        elif kind == "match":
            model = draw(st.sampled_from(undecided))
            event = ev.MatchScheduled(
                id=f"s{i}",
                time=float(i),
                run="r",
                match_id=f"gate-{model}-{i}",
                candidate=ev.PlayerSpec(kind="model", model_id=model),
                opponent=ev.PlayerSpec(kind="random"),
                set_size=2,
            )
        elif state.promotions:
            target = draw(st.sampled_from(state.promotions))
            event = rolled_back(i, target.seq, target.model_id)
        else:
            continue
        state = P.apply_at(state, event, seq)
        out.append((seq, event))
    return out


@settings(max_examples=150, deadline=None)
@given(registry_logs(), st.data())
def test_snapshot_plus_tail_equals_full_replay(log, data):
    cut = data.draw(st.integers(0, len(log)))
    snapshot = fold_numbered(P, log[:cut])
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=ModelRegistry)
    assert restored == snapshot
    assert fold_numbered(P, log[cut:], restored) == fold_numbered(P, log)


@settings(max_examples=150, deadline=None)
@given(registry_logs())
def test_the_champion_ends_the_effective_line_and_a_rollback_replays_to_its_target(log):
    state = P.initial()
    for i, (seq, event) in enumerate(log):
        state = P.apply_at(state, event, seq)
        line = [p.model_id for p in lineage(state)]
        if state.promotions:
            assert state.champion is not None and line and state.champion.model_id == line[-1]
        else:
            assert state.champion is None
        assert not state.reverted_models & set(line)
        if isinstance(event, ev.ChampionRolledBack):
            as_of = fold_numbered(P, [x for x in log[:i] if x[0] <= event.to_promotion_seq])
            assert line == [p.model_id for p in lineage(as_of)]
    champion_seqs = [seq for seq, e in log if e.tag in CHAMPION_TAGS]
    assert state.champion_last_seq == (champion_seqs[-1] if champion_seqs else 0)
    assert all(e.aggregate() == names.AGG_CHAMPION for _, e in log if e.tag in CHAMPION_TAGS)

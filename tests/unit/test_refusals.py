"""Folds refuse decisions naming what does not exist; poison is classified and counted once."""

from __future__ import annotations

import msgspec

from projections.curriculum import CurriculumProjection
from projections.journal import Journal, JournalProjection
from projections.models import ModelRegistryProjection, fold_numbered
from streams import codec, names
from streams import events as ev
from streams.rejections import classify, rejected_event, rejection_id

P = ModelRegistryProjection()
RUN = "r"


def checkpoint(model: str, generation: int) -> ev.CheckpointSaved:
    return ev.CheckpointSaved.new(RUN, model_id=model, object_name=names.model_object(model),
                                  digest=f"d-{model}", generation=generation)


def promoted(model: str, generation: int = 0) -> ev.CandidatePromoted:
    return ev.CandidatePromoted.new(RUN, model_id=model, generation=generation)


def base_log():
    return [(1, checkpoint("m0", 0)), (2, checkpoint("m1", 1))]


def test_a_promotion_of_a_model_with_no_checkpoint_leaves_the_champion_and_is_noted():
    before = fold_numbered(P, base_log())
    after = fold_numbered(P, [(5, promoted("ghost", 999))], before)
    assert after.champion == before.champion and after.champion.model_id == "m0"
    assert after.promotions == before.promotions and "ghost" not in after.decided
    [refusal] = after.refusals
    assert (refusal.seq, refusal.tag, refusal.model_id) == (5, "candidate.promoted", "ghost")
    assert "no checkpoint" in refusal.reason
    assert after.champion_last_seq == 5  # the refused event still occupies the aggregate
    assert P.refused_at(after, 5) == refusal.reason and P.refused_at(after, 6) == ""


def test_a_real_promotion_after_a_refused_one_goes_through():
    log = [*base_log(), (5, promoted("ghost", 999)), (6, promoted("m1"))]
    s = fold_numbered(P, log)
    assert s.champion.model_id == "m1" and s.champion.generation == 1
    assert [p.model_id for p in s.promotions] == ["m0", "m1"]
    assert s.champion_last_seq == 6 and P.refused_at(s, 6) == ""


def test_a_rejection_of_a_model_with_no_checkpoint_is_refused():
    s = fold_numbered(P, [*base_log(), (4, ev.CandidateRejected.new(RUN, model_id="m7", reason="x"))])
    assert s.rejections == () and "m7" not in s.decided
    assert s.refusals[-1].tag == "candidate.rejected" and s.champion_last_seq == 4


def test_a_rollback_to_no_promotion_is_refused():
    log = [*base_log(), (5, promoted("m1"))]
    before = fold_numbered(P, log)
    after = fold_numbered(P, [(9, ev.ChampionRolledBack.new(RUN, to_promotion_seq=3, model_id="m0"))],
                          before)
    assert after.champion == before.champion and after.rollbacks == ()
    assert [p.reverted for p in after.promotions] == [False, False]
    assert "#3, which is no promotion" in after.refusals[-1].reason and after.champion_last_seq == 9
    # a rollback to a real promotion still works
    real = fold_numbered(P, [(10, ev.ChampionRolledBack.new(RUN, to_promotion_seq=1, model_id="m0"))], after)
    assert real.champion.model_id == "m0" and real.refusals == after.refusals


def test_whatever_is_stored_on_the_champion_aggregate_moves_its_last_sequence():
    s = fold_numbered(P, base_log())
    champion = names.subject(names.EVENTS, RUN, names.AGG_CHAMPION, "candidate.rejected")
    other = names.subject(names.EVENTS, RUN, names.AGG_LOOP, "loop.halted")
    assert P.note_subject(s, champion, 7).champion_last_seq == 7
    assert P.note_subject(s, other, 8) is s
    assert P.note_subject(s, "jz.ev.r.champion-x.champion.x", 8) is s  # not the champion aggregate
    moved = P.note_subject(s, champion, 7)
    assert P.note_subject(moved, champion, 6) is moved  # never backwards


def test_the_refused_state_survives_a_snapshot():
    s = fold_numbered(P, [*base_log(), (5, promoted("ghost", 999))])
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(s), type=type(s)) == s


def test_the_curriculum_ignores_what_the_registry_refuses():
    c = CurriculumProjection([_Stage("early", 2), _Stage("late", None)])
    state = c.initial()
    for seq, event in base_log():
        state = c.apply_at(state, event, seq)
    forged = c.apply_at(state, promoted("ghost", 999), 5)
    assert (forged.champion, forged.stage) == ("m0", "early") and 5 not in forged.promotions
    lost = c.apply_at(forged, ev.ChampionRolledBack.new(RUN, to_promotion_seq=3, model_id="m1"), 6)
    assert lost.champion == "m0"
    real = c.apply_at(lost, promoted("m1"), 7)
    assert real.champion == "m1" and real.generation == 1


class _Stage(msgspec.Struct, frozen=True):
    name: str
    until_generation: int | None


def test_the_journal_counts_each_poison_message_once():
    first = rejected_event(RUN, names.EVENTS, "jz.ev.r.loop.loop.halted", 4, b"\x91\x01", "junk", "promoter")
    again = msgspec.structs.replace(first, id="an-older-per-handler-id", handler="evaluator")
    other = rejected_event(RUN, names.GAMES, "jz.games.r.w.game.finished", 4, b"", "junk", "sync")
    j = JournalProjection()
    state = Journal()
    for event in (first, again, other):
        state = j.apply(state, event)
    assert state.poison_count == 2 and len(state.poison) == 2


def test_classify_names_why_a_message_is_poison():
    event, reason = classify(codec.encode(checkpoint("m0", 0)))
    assert isinstance(event, ev.CheckpointSaved) and reason == ""
    assert classify(msgspec.msgpack.encode([1])) == (
        None, "not an event: a map with a string 'type' was expected")
    assert classify(b"\xc1")[1].startswith("not msgpack")
    none, why = classify(msgspec.msgpack.encode({"type": "x.future", "id": "1", "run": RUN}))
    assert none is None and "unknown event type 'x.future'" in why


def test_a_rejection_id_depends_on_the_message_alone():
    a = rejected_event(RUN, names.EVENTS, "s", 9, b"", "why", "promoter")
    b = rejected_event(RUN, names.EVENTS, "s", 9, b"", "other words", "projection:journal", at=5.0)
    assert a.id == b.id == rejection_id(names.EVENTS, 9) != rejection_id(names.GAMES, 9)

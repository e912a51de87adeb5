"""The evaluator's pure decisions: what a checkpoint plays (once), which one (one at a time, the
newest), and how a match is cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.promotion import evaluator
from handlers.promotion.config import PromotionConfig, ReferencePlayer, RegressionConfig
from projections.matches import GATE, REFERENCE, REGRESSION, WATCH, MatchesProjection
from projections.models import ModelRegistryProjection
from streams import events as ev

RUN = "r"
CONFIG = PromotionConfig(
    max_pairs=30,
    pairs_per_unit=4,
    regression=RegressionConfig(
        previous_champions=2,
        max_pairs=10,
        reference_players=(ReferencePlayer(kind="random"), ReferencePlayer(kind="pure_mcts", simulations=50)),
    ),
)


class World:
    """A log in memory: each appended event gets the next sequence and is folded."""

    def __init__(self) -> None:
        self.seq = 0
        self.models = ModelRegistryProjection()
        self.matches_p = MatchesProjection()
        self.registry = self.models.initial()
        self.matches = self.matches_p.initial()

    def append(self, *events: ev.Event) -> int:
        for event in events:
            self.seq += 1
            self.registry = self.models.apply_at(self.registry, event, self.seq)
            self.matches = self.matches_p.apply(self.matches, event)
        return self.seq

    def checkpoint(self, model: str, generation: int, parent: str = "") -> ev.CheckpointSaved:
        event = ev.CheckpointSaved.new(
            RUN,
            model_id=model,
            object_name=f"models/{model}.pt",
            digest="d" + model,
            generation=generation,
            parent_model=parent,
        )
        self.append(event)
        return event


def test_a_checkpoint_plays_the_champion_earlier_champions_and_references_once():
    w = World()
    w.checkpoint("m0", 0)
    w.checkpoint("m1", 1, "m0")
    w.append(ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0"))
    w.checkpoint("m2", 2, "m1")
    w.append(ev.CandidatePromoted.new(RUN, model_id="m2", previous_champion="m1"))
    saved = w.checkpoint("m3", 3, "m2")

    planned = evaluator.schedule_for_checkpoint(w.registry, saved, CONFIG, openings_count=7)
    by_purpose = {(m.purpose, m.opponent.label) for m in planned}
    assert by_purpose == {
        (GATE, "m2"),
        (REGRESSION, "m1"),
        (REGRESSION, "m0"),
        (REFERENCE, "random:0"),
        (REFERENCE, "pure_mcts:50"),
    }
    assert all(m.candidate.model_id == "m3" and m.set_size == 5 for m in planned)
    assert all(m.openings == 7 and m.pairs_per_unit == 4 for m in planned)
    assert all(m.causation_id == saved.id for m in planned)
    gate = next(m for m in planned if m.purpose == GATE)
    assert gate.max_pairs == 30 and gate.sprt == CONFIG.sprt.params()
    assert len({m.match_id for m in planned}) == 5

    # the same decision redone gives the same match ids
    again = evaluator.schedule_for_checkpoint(w.registry, saved, CONFIG, openings_count=7)
    assert [m.match_id for m in again] == [m.match_id for m in planned]

    w.append(*planned)
    assert evaluator.schedule_for_checkpoint(w.registry, saved, CONFIG, 7) == []


def test_a_partly_scheduled_set_is_scheduled_whole_again():
    w = World()
    w.checkpoint("m0", 0)
    saved = w.checkpoint("m1", 1, "m0")
    planned = evaluator.schedule_for_checkpoint(w.registry, saved, CONFIG, 1)
    w.append(planned[0])  # crashed after the first append
    redo = evaluator.schedule_for_checkpoint(w.registry, saved, CONFIG, 1)
    assert [m.match_id for m in redo] == [m.match_id for m in planned]
    w.append(*redo)
    assert len(w.registry.evaluations["m1"].matches) == len(planned)
    assert w.matches.get(planned[0].match_id).scheduled.id == planned[0].id  # first one kept


def test_nothing_is_scheduled_without_a_champion_for_the_champion_or_a_decided_model():
    w = World()
    early = ev.CheckpointSaved.new(RUN, model_id="x", object_name="o", digest="d", generation=3)
    w.append(early)
    assert evaluator.schedule_for_checkpoint(w.registry, early, CONFIG, 1) == []
    initial = w.checkpoint("m0", 0)
    assert evaluator.schedule_for_checkpoint(w.registry, initial, CONFIG, 1) == []
    w.append(ev.CandidateRejected.new(RUN, model_id="x", reason="weak"))
    assert evaluator.schedule_for_checkpoint(w.registry, early, CONFIG, 1) == []


def test_regression_skips_reverted_champions():
    w = World()
    w.checkpoint("m0", 0)
    w.checkpoint("m1", 1, "m0")
    p1 = w.append(ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0"))
    w.checkpoint("m2", 2, "m1")
    w.append(ev.CandidatePromoted.new(RUN, model_id="m2", previous_champion="m1"))
    w.append(ev.ChampionRolledBack.new(RUN, to_promotion_seq=p1, model_id="m1"))
    saved = w.checkpoint("m3", 3, "m2")
    planned = evaluator.schedule_for_checkpoint(w.registry, saved, CONFIG, 1)
    opponents = {m.opponent.label for m in planned if m.purpose in (GATE, REGRESSION)}
    assert opponents == {"m1", "m0"}


def _scheduled(max_pairs: int, per_unit: int, openings: int = 0) -> ev.MatchScheduled:
    return ev.MatchScheduled.new(
        RUN,
        match_id="gate-m1-vs-m0",
        candidate=CONFIG.model_player("m1"),
        opponent=CONFIG.model_player("m0"),
        max_pairs=max_pairs,
        pairs_per_unit=per_unit,
        openings=openings,
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 120), st.integers(1, 9), st.integers(0, 12), st.integers(0, 15))
def test_units_cover_every_pair_exactly_once(max_pairs, per_unit, n_openings, recorded):
    openings = [(i, i + 1) for i in range(n_openings)]
    match = _scheduled(max_pairs, per_unit, recorded)
    units = evaluator.work_units(match, "connect4", openings)
    indices = [p.pair_index for u in units for p in u.pairs]
    assert sorted(indices) == list(range(max_pairs))
    assert all(1 <= len(u.pairs) <= per_unit for u in units)
    assert len({u.unit_id for u in units}) == len(units)
    pool = openings[:recorded] if recorded else openings
    for u in units:
        assert u.match_id == match.match_id and u.candidate == match.candidate
        for p in u.pairs:
            expected = list(pool[p.pair_index % len(pool)]) if pool else []
            assert p.opening == expected
    seeds = [p.seed for u in units for p in u.pairs]
    assert len(set(seeds)) == len(seeds)
    again = evaluator.work_units(match, "connect4", openings)
    assert [p.seed for u in again for p in u.pairs] == seeds


def test_units_are_made_for_the_first_scheduling_only():
    w = World()
    first = _scheduled(6, 4)
    lagging = evaluator.decide(w.registry, w.matches, first, CONFIG, game="ttt", openings=[()])
    assert [u.pairs for u in lagging] != [] and sum(len(u.pairs) for u in lagging) == 6
    w.append(first)
    units = evaluator.decide(w.registry, w.matches, first, CONFIG, game="ttt", openings=[()])
    assert [len(u.pairs) for u in units] == [4, 2]
    repeat = _scheduled(6, 4)  # same match id, another event
    w.append(repeat)
    assert evaluator.decide(w.registry, w.matches, repeat, CONFIG, game="ttt", openings=[()]) == []


def test_a_match_completes_once_at_its_cap():
    w = World()
    match = _scheduled(3, 1)
    w.append(match)
    outs = []
    for i, category in enumerate([2, 2, 2, 2]):  # the last one repeats pair 2
        pair = ev.MatchPairPlayed.new(
            RUN, match_id=match.match_id, unit_id="u", pair_index=min(i, 2), opening=[], pentanomial=category
        )
        w.append(pair)
        out = evaluator.decide(w.registry, w.matches, pair, CONFIG, game="ttt", openings=[])
        outs.append(out)
        w.append(*out)
    assert [len(o) for o in outs] == [0, 0, 1, 0]
    done = outs[2][0]
    assert isinstance(done, ev.MatchCompleted)
    assert done.verdict == "inconclusive" and done.pairs == 3 and done.pentanomial == [0, 0, 3, 0, 0]


def test_a_promotion_schedules_one_watch_match():
    w = World()
    w.checkpoint("m0", 0)
    w.checkpoint("m1", 1, "m0")
    promoted = ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0")
    w.append(promoted)
    out = evaluator.decide(w.registry, w.matches, promoted, CONFIG, game="ttt", openings=[()])
    assert len(out) == 1 and out[0].purpose == WATCH
    assert (out[0].candidate.model_id, out[0].opponent.model_id) == ("m1", "m0")
    assert out[0].max_pairs == CONFIG.watch.max_pairs
    assert out[0].sprt == CONFIG.watch.sprt.params()
    w.append(*out)
    assert evaluator.decide(w.registry, w.matches, promoted, CONFIG, game="ttt", openings=[()]) == []
    off = PromotionConfig(watch=CONFIG.watch.__class__(enabled=False))
    assert evaluator.schedule_watch(w.registry, promoted, off, 1) == []


# -- one candidate at a time, always the newest ---------------------------------------------


def react(w: World, event: ev.Event) -> list[ev.MatchScheduled]:
    """The evaluator's candidate matches after ``event`` (already in ``w``), appended to ``w``."""
    out = evaluator.decide(w.registry, w.matches, event, CONFIG, game="ttt", openings=[()])
    w.append(*out)
    return [e for e in out if isinstance(e, ev.MatchScheduled) and e.purpose != WATCH]


def gates(w: World) -> dict[str, str]:
    """Candidate -> gate opponent of every gate match scheduled so far."""
    scheduled = w.matches.matches.values()
    return {m.candidate.model_id: m.opponent.model_id for m in scheduled if m.purpose == GATE}


def test_a_checkpoint_saved_during_an_evaluation_waits_and_the_newest_goes_next():
    w = World()
    react(w, w.checkpoint("m0", 0))
    first = react(w, w.checkpoint("m1", 1, "m0"))
    assert {m.candidate.model_id for m in first} == {"m1"} and len(first) == 3  # gate + 2 refs
    assert evaluator.evaluations_in_progress(w.registry) == ["m1"]
    assert react(w, w.checkpoint("m2", 2, "m1")) == []
    saved = w.checkpoint("m3", 3, "m2")
    assert react(w, saved) == []
    assert gates(w) == {"m1": "m0"}

    promoted = ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0")
    w.append(promoted)
    out = evaluator.decide(w.registry, w.matches, promoted, CONFIG, game="ttt", openings=[()])
    assert [m.purpose for m in out][0] == WATCH  # the watch match still comes first
    w.append(*out)
    nxt = [m for m in out if m.purpose != WATCH]
    assert {m.candidate.model_id for m in nxt} == {"m3"}  # m2 is skipped
    assert {(m.purpose, m.opponent.label) for m in nxt} == {
        (GATE, "m1"), (REGRESSION, "m0"), (REFERENCE, "random:0"), (REFERENCE, "pure_mcts:50")
    }  # against the new champion
    assert all(m.causation_id == promoted.id and m.set_size == len(nxt) for m in nxt)
    assert gates(w) == {"m1": "m0", "m3": "m1"}

    # repeated reactions (a redelivery of any of them) schedule nothing new
    ids = set(w.matches.matches)
    assert evaluator.decide(w.registry, w.matches, promoted, CONFIG, game="ttt", openings=[()]) == []
    assert react(w, saved) == [] and react(w, first[0]) == []
    assert set(w.matches.matches) == ids

    # m3 rejected: m2 stays skipped (older than a scheduled checkpoint); nothing is pending
    rejected = ev.CandidateRejected.new(RUN, model_id="m3", reason="weak")
    w.append(rejected)
    assert react(w, rejected) == []
    assert evaluator.next_candidate(w.registry) is None
    assert evaluator.evaluations_in_progress(w.registry) == []
    # ... until the trainer saves a newer one, evaluated at once against the champion m1
    assert {m.candidate.model_id for m in react(w, w.checkpoint("m4", 4, "m3"))} == {"m4"}
    assert gates(w)["m4"] == "m1"


def test_a_rejection_hands_over_to_the_newest_pending_checkpoint():
    w = World()
    w.checkpoint("m0", 0)
    react(w, w.checkpoint("m1", 1, "m0"))
    for generation in (2, 3, 4):
        assert react(w, w.checkpoint(f"m{generation}", generation)) == []
    rejected = ev.CandidateRejected.new(RUN, model_id="m1", reason="weak")
    w.append(rejected)
    nxt = react(w, rejected)
    assert {m.candidate.model_id for m in nxt} == {"m4"}
    assert gates(w) == {"m1": "m0", "m4": "m0"}
    assert react(w, rejected) == []  # redone: the same state, nothing new
    # the reaction is a function of the state: the same decision redone names the same matches
    w2 = World()
    w2.checkpoint("m0", 0)
    react(w2, w2.checkpoint("m1", 1, "m0"))
    for generation in (2, 3, 4):
        w2.checkpoint(f"m{generation}", generation)
    w2.append(rejected)
    again = evaluator.decide(w2.registry, w2.matches, rejected, CONFIG, game="ttt", openings=[()])
    assert [m.match_id for m in again] == [m.match_id for m in nxt]


def test_a_stalled_evaluation_stops_blocking_after_enough_newer_checkpoints():
    w = World()
    w.checkpoint("m0", 0)
    react(w, w.checkpoint("m1", 1, "m0"))  # say its units are never played
    for generation in range(2, 1 + evaluator.STALLED_AFTER):
        assert react(w, w.checkpoint(f"m{generation}", generation)) == []
    newest = f"m{1 + evaluator.STALLED_AFTER}"
    nxt = react(w, w.checkpoint(newest, 1 + evaluator.STALLED_AFTER))
    assert {m.candidate.model_id for m in nxt} == {newest}
    assert evaluator.evaluations_in_progress(w.registry) == [newest]


def test_newest_is_by_generation_then_by_saved_order():
    w = World()
    w.checkpoint("m0", 0)
    react(w, w.checkpoint("m1", 1, "m0"))
    w.checkpoint("late-but-older", 2)
    w.checkpoint("a", 3)
    w.checkpoint("b", 3)
    w.checkpoint("older-again", 2)
    assert evaluator.next_candidate(w.registry) == "b"


def test_no_pending_candidate_schedules_nothing():
    w = World()
    early = ev.CheckpointSaved.new(RUN, model_id="x", object_name="o", digest="d", generation=3)
    w.append(early)
    assert react(w, early) == []  # no champion to play
    assert evaluator.pending_candidates(w.registry) == []
    waited = react(w, w.checkpoint("m0", 0))  # the first champion: x waited for it
    assert [(m.candidate.model_id, m.opponent.label) for m in waited if m.purpose == GATE] == [("x", "m0")]
    done = ev.CandidateRejected.new(RUN, model_id="x", reason="weak")
    w.append(done)
    assert react(w, done) == []
    rejected = ev.CandidateRejected.new(RUN, model_id="ghost", reason="unknown")
    w.append(rejected)
    assert react(w, rejected) == []
    assert evaluator.pending_candidates(w.registry) == []


def two_promotions() -> tuple[World, int]:
    """m0 the first champion, then m1 and m2 promoted in turn; the sequence of m1's promotion."""
    w = World()
    w.checkpoint("m0", 0)
    react(w, w.checkpoint("m1", 1, "m0"))
    p1 = w.append(ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0"))
    react(w, w.checkpoint("m2", 2, "m1"))
    w.append(ev.CandidatePromoted.new(RUN, model_id="m2", previous_champion="m1"))
    return w, p1


def test_reverted_and_pre_rollback_checkpoints_are_not_picked_and_a_rollback_hands_over():
    w, p1 = two_promotions()
    react(w, w.checkpoint("m3", 3, "m2"))
    assert react(w, w.checkpoint("m4", 4, "m3")) == []  # m3 in progress
    rollback = ev.ChampionRolledBack.new(RUN, to_promotion_seq=p1, model_id="m1", reverted_models=["m2"])
    w.append(rollback)
    assert react(w, rollback) == []  # m3's evaluation is still in progress
    rejected = ev.CandidateRejected.new(RUN, model_id="m3", reason="stale champion")
    w.append(rejected)
    assert react(w, rejected) == []  # m4 was saved before the rollback: the trainer left it
    assert "m2" not in {r.model_id for r in evaluator.pending_candidates(w.registry)}
    nxt = react(w, w.checkpoint("m2b", 2, "m1"))  # lower generation, but saved since the rollback
    assert {m.candidate.model_id for m in nxt} == {"m2b"} and gates(w)["m2b"] == "m1"


def test_an_idle_evaluator_hands_a_rollback_over_at_once():
    w, p1 = two_promotions()
    rollback = ev.ChampionRolledBack.new(RUN, to_promotion_seq=p1, model_id="m1", reverted_models=["m2"])
    w.append(rollback)
    saved = w.checkpoint("m3", 3, "m1")
    nxt = react(w, rollback)  # the evaluator reached the rollback after m3 was folded in
    assert {m.candidate.model_id for m in nxt} == {"m3"} and gates(w)["m3"] == "m1"
    assert react(w, saved) == []


def test_an_import_is_never_skipped_and_goes_first():
    w = World()
    w.checkpoint("m0", 0)
    react(w, w.checkpoint("m1", 1, "m0"))
    imported = ev.CheckpointSaved.new(RUN, model_id="ext", object_name="o", digest="d", generation=1,
                                      source=evaluator.IMPORTED)
    w.append(imported)
    assert react(w, imported) == []
    react(w, w.checkpoint("m5", 5, "m1"))
    rejected = ev.CandidateRejected.new(RUN, model_id="m1", reason="weak")
    w.append(rejected)
    assert {m.candidate.model_id for m in react(w, rejected)} == {"ext"}
    done = ev.CandidateRejected.new(RUN, model_id="ext", reason="weak")
    w.append(done)
    assert {m.candidate.model_id for m in react(w, done)} == {"m5"}


def test_a_partly_scheduled_set_is_completed_on_the_next_reaction():
    w = World()
    w.checkpoint("m0", 0)
    saved = w.checkpoint("m1", 1, "m0")
    planned = evaluator.decide(w.registry, w.matches, saved, CONFIG, game="ttt", openings=[()])
    w.append(planned[0])  # crashed after the first append; a newer checkpoint lands meanwhile
    later = w.checkpoint("m2", 2, "m1")
    assert [m.match_id for m in react(w, later)] == [m.match_id for m in planned]
    assert w.registry.evaluations["m1"].fully_scheduled
    assert "m2" not in w.registry.evaluations and react(w, saved) == []

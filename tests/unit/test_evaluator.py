"""The evaluator's pure decisions: what a checkpoint plays (once), and how a match is cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import evaluator
from handlers.promotion_config import PromotionConfig, ReferencePlayer, RegressionConfig
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

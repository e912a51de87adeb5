"""The promoter's pure decision: promote under expectation, reject with figures, roll back."""

from __future__ import annotations

import msgspec

from handlers.promotion import evaluator, promoter
from handlers.promotion.config import (
    PromotionConfig,
    ReferencePlayer,
    RegressionConfig,
    WatchConfig,
)
from handlers.runtime.shell import Emit
from projections.base import fold
from projections.matches import GATE, MatchesProjection
from projections.models import ModelRegistryProjection
from streams import events as ev

RUN = "r"
CONFIG = PromotionConfig(
    max_pairs=200,
    pairs_per_unit=2,
    regression=RegressionConfig(
        previous_champions=1, max_pairs=12, reference_players=(ReferencePlayer(kind="random"),)
    ),
    watch=WatchConfig(max_pairs=60, significance=0.01),
)
STRONG = [4, 3, 2, 2, 4, 1, 3, 2]  # about +110 Elo: the gate SPRT accepts near 104 pairs
WEAK = [0, 1, 2, 1, 0, 3, 2, 1]  # about -135 Elo


class World:
    """A log in memory folded into the registry and the matches, as the handlers see them."""

    def __init__(self) -> None:
        self.seq = 0
        self.log: list[tuple[int, ev.Event]] = []
        self.models, self.matches_p = ModelRegistryProjection(), MatchesProjection()
        self.registry, self.matches = self.models.initial(), self.matches_p.initial()

    def append(self, *items: ev.Event | Emit) -> int:
        for item in items:
            event = item.event if isinstance(item, Emit) else item
            if isinstance(item, Emit) and item.expected_last_seq is not None:
                last = [s for s, e in self.log if e.aggregate() == event.aggregate()]
                assert item.expected_last_seq == (last[-1] if last else 0)
            self.seq += 1
            self.log.append((self.seq, event))
            self.registry = self.models.apply_at(self.registry, event, self.seq)
            self.matches = self.matches_p.apply(self.matches, event)
        return self.seq

    def checkpoint(self, name: str, generation: int) -> ev.CheckpointSaved:
        event = ev.CheckpointSaved.new(
            RUN, model_id=name, object_name=name, digest=name, generation=generation
        )
        self.append(event)
        return event

    def play(self, match_id: str, pattern: list[int], config: PromotionConfig = CONFIG):
        """Pairs until the evaluator completes the match; every decision of the promoter."""
        decisions = []
        for i in range(self.matches.get(match_id).scheduled.max_pairs):
            p = ev.MatchPairPlayed.new(
                RUN,
                match_id=match_id,
                unit_id="u",
                pair_index=i,
                opening=[],
                pentanomial=pattern[i % len(pattern)],
            )
            self.append(p)
            done = evaluator.complete_match(self.matches, p)
            if done:
                self.append(*done)
                decisions = promoter.decide(self.registry, self.matches, done[0], config)
                break
        return decisions


def evaluated_world(config: PromotionConfig = CONFIG) -> tuple[World, dict[str, str]]:
    """Champion m1 (promoted over m0), candidate m2 with its matches scheduled."""
    w = World()
    w.checkpoint("m0", 0)
    w.checkpoint("m1", 1)
    w.append(ev.CandidateRejected.new(RUN, model_id="x", reason="weak"))
    w.append(ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0"))
    saved = w.checkpoint("m2", 2)
    planned = evaluator.schedule_for_checkpoint(w.registry, saved, config, 1)
    w.append(*planned)
    ids = {(m.purpose if m.purpose == GATE else m.opponent.label): m.match_id for m in planned}
    return w, ids


def test_all_gates_pass_promotes_under_the_champion_expectation():
    w, ids = evaluated_world()
    assert set(ids) == {GATE, "m0", "random:0"}
    assert w.play(ids["m0"], [3, 4]) == []  # the others are still open
    assert w.play(ids["random:0"], [4]) == []
    out = w.play(ids[GATE], STRONG)
    assert len(out) == 1 and isinstance(out[0], Emit)
    promoted, expected = out[0]
    assert isinstance(promoted, ev.CandidatePromoted)
    assert (promoted.model_id, promoted.previous_champion, promoted.generation) == ("m2", "m1", 2)
    assert expected == w.registry.champion_last_seq > 0
    assert all(g.passed for g in promoted.gates)
    assert {g.gate for g in promoted.gates} == {
        "champion",
        "sprt",
        "elo_threshold",
        "regression:m0",
        "reference:random:0",
    }
    sprt_gate = next(g for g in promoted.gates if g.gate == "sprt")
    assert sprt_gate.figures["llr"] >= sprt_gate.figures["upper"]
    w.append(out[0])  # the World checks the expectation against its log
    assert w.registry.champion.model_id == "m2"

    # the same completion delivered again: already decided, nothing
    completion = next(e for _, e in w.log if isinstance(e, ev.MatchCompleted) and e.match_id == ids[GATE])
    assert promoter.decide(w.registry, w.matches, completion, CONFIG) == []


def test_one_failing_gate_rejects_with_every_figure_and_the_reason():
    w, ids = evaluated_world()
    w.play(ids[GATE], STRONG)
    w.play(ids["m0"], [3, 4])
    out = w.play(ids["random:0"], [0, 1])  # loses to the random player
    rejected, expected = out[0]
    assert isinstance(rejected, ev.CandidateRejected) and rejected.model_id == "m2"
    assert expected == w.registry.champion_last_seq
    failed = [g for g in rejected.gates if not g.passed]
    assert [g.gate for g in failed] == ["reference:random:0"]
    assert failed[0].figures["los"] < CONFIG.regression.significance
    assert failed[0].figures["pairs"] == CONFIG.regression.max_pairs
    assert "reference:random:0" in rejected.reason and "significant loss" in rejected.reason
    assert len(rejected.gates) == 5 and all(g.figures for g in rejected.gates if g.gate != "champion")
    w.append(out[0])
    assert w.registry.is_decided("m2") and w.registry.champion.model_id == "m1"


def test_an_elo_below_the_threshold_rejects_even_when_the_sprt_accepts():
    strict = msgspec.structs.replace(CONFIG, elo_threshold=500.0)
    w, ids = evaluated_world(strict)
    w.play(ids["m0"], [4], strict)
    w.play(ids["random:0"], [4], strict)
    rejected, _ = w.play(ids[GATE], STRONG, strict)[0]
    failed = {g.gate for g in rejected.gates if not g.passed}
    assert failed == {"elo_threshold"} and "threshold +500.0" in rejected.reason


def test_a_gate_against_a_former_champion_rejects():
    w, ids = evaluated_world()
    w.checkpoint("m9", 9)
    w.append(ev.CandidatePromoted.new(RUN, model_id="m9", previous_champion="m1"))
    w.play(ids["m0"], [4])
    w.play(ids["random:0"], [4])
    rejected, expected = w.play(ids[GATE], STRONG)[0]
    assert {g.gate for g in rejected.gates if not g.passed} == {"champion"}
    assert expected == w.registry.champion_last_seq


def test_a_clearly_worse_new_champion_is_rolled_back_with_evidence():
    w, ids = evaluated_world()
    w.play(ids["m0"], [4])
    w.play(ids["random:0"], [4])
    promotion = w.play(ids[GATE], STRONG)[0]
    promotion_seq = w.append(promotion)
    watch = evaluator.schedule_watch(w.registry, promotion.event, CONFIG, 1)
    w.append(*watch)
    out = w.play(watch[0].match_id, WEAK)
    assert len(out) == 1
    rollback, expected = out[0]
    assert isinstance(rollback, ev.ChampionRolledBack) and rollback.automatic
    m1_promotion = next(p for p in w.registry.promotions if p.model_id == "m1")
    assert (rollback.to_promotion_seq, rollback.model_id) == (m1_promotion.seq, "m1")
    assert rollback.reverted_models == ["m2"]
    assert rollback.evidence["los"] < CONFIG.watch.significance and rollback.evidence["elo"] < 0
    assert expected == promotion_seq == w.registry.champion_last_seq
    w.append(out[0])
    assert w.registry.champion.model_id == "m1" and "m2" in w.registry.reverted_models
    completion = w.log[-2][1]
    assert isinstance(completion, ev.MatchCompleted)
    assert promoter.decide(w.registry, w.matches, completion, CONFIG) == []  # done already


def test_a_new_champion_that_holds_its_own_is_kept():
    w, ids = evaluated_world()
    w.play(ids["m0"], [4])
    w.play(ids["random:0"], [4])
    promotion = w.play(ids[GATE], STRONG)[0]
    w.append(promotion)
    watch = evaluator.schedule_watch(w.registry, promotion.event, CONFIG, 1)
    w.append(*watch)
    assert w.play(watch[0].match_id, [2, 3, 1, 2]) == []
    assert w.matches.get(watch[0].match_id).completed
    assert w.registry.champion.model_id == "m2"


def test_other_events_decide_nothing():
    w, _ = evaluated_world()
    assert promoter.decide(w.registry, w.matches, w.log[-1][1], CONFIG) == []


def test_a_matches_state_that_lags_the_completion_still_decides():
    w, ids = evaluated_world()
    w.play(ids["m0"], [4])
    w.play(ids["random:0"], [4])
    (decided,) = w.play(ids[GATE], STRONG)
    completion = w.log[-1][1]
    assert isinstance(completion, ev.MatchCompleted)
    lagging = fold(MatchesProjection(), [e for _, e in w.log[:-1]])
    (again,) = promoter.decide(w.registry, lagging, completion, CONFIG)
    assert type(again.event) is type(decided.event) is ev.CandidatePromoted
    assert again.event.gates == decided.event.gates
    assert again.expected_last_seq == decided.expected_last_seq


MCTS_CONFIG = msgspec.structs.replace(
    CONFIG,
    regression=RegressionConfig(
        previous_champions=0, max_pairs=12,
        reference_players=(ReferencePlayer(kind="pure_mcts", simulations=200),),
    ),
)


def _champion_reference(w: World, pattern: list[int]) -> None:
    """The champion m1's own completed match against the pure-MCTS reference."""
    spec = ev.PlayerSpec(kind="pure_mcts", simulations=200)
    w.append(ev.MatchScheduled.new(
        RUN, match_id="ref-m1", candidate=ev.PlayerSpec(kind="model", model_id="m1"),
        opponent=spec, purpose="reference", max_pairs=12, set_size=0))
    w.play("ref-m1", pattern, MCTS_CONFIG)


def test_losing_to_pure_mcts_with_no_champion_baseline_is_no_regression():
    w, ids = evaluated_world(MCTS_CONFIG)
    w.play(ids["pure_mcts:200"], [0, 1], MCTS_CONFIG)  # a young net loses to pure MCTS
    out = w.play(ids[GATE], STRONG, MCTS_CONFIG)
    promoted, _ = out[0]
    assert isinstance(promoted, ev.CandidatePromoted)
    gate = next(g for g in promoted.gates if g.gate == "reference:pure_mcts:200")
    assert gate.passed and "no result against it" in gate.detail


def test_doing_much_worse_than_the_champion_against_a_reference_rejects():
    w, ids = evaluated_world(MCTS_CONFIG)
    _champion_reference(w, [4, 3])  # the champion beat pure MCTS
    w.play(ids["pure_mcts:200"], [0, 1], MCTS_CONFIG)  # the candidate loses to it
    out = w.play(ids[GATE], STRONG, MCTS_CONFIG)
    rejected, _ = out[0]
    assert isinstance(rejected, ev.CandidateRejected)
    gate = next(g for g in rejected.gates if g.gate == "reference:pure_mcts:200")
    assert not gate.passed and gate.figures["p"] < MCTS_CONFIG.regression.significance
    assert "significant regression" in gate.detail

"""A recorded tiny run for the report's tests: the events a tic-tac-toe loop writes (selfplay
games, shards, trainings, checkpoints with losses, gate and reference matches pair by pair,
promotions, a rejection, a rollback, health failures, a halt, a restart, a grading), appended
through the real event store with times spread over a quarter of an hour."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.rating import elo_from_pentanomial
from streams import events as ev
from streams import names
from streams.envelope import Event
from streams.games import GameFinished, pack_policies
from streams.store import EventStore
from tests.loop_configs import tiny_loop_dict

T0 = 1_790_000_000.0  # the run's first minute (a fixed time: the report is deterministic)
STAGES = [{"name": "opening", "simulations": 8, "until_generation": 2}, {"name": "main", "simulations": 16}]


def _at(event: Event, minute: float) -> Event:
    return msgspec.structs.replace(event, time=T0 + 60.0 * minute)


def _game(run: str, index: int, model: str, minute: float) -> Event:
    moves = [4, 0, 8, 2, 6, 1][: 5 + index % 2]
    return _at(GameFinished.new(run, game_id=f"g{index}", game="tictactoe", moves=moves,
                                **pack_policies([[1.0]] * len(moves)), outcome=1, model_id=model,
                                worker="w1"), minute)


def _checkpoint(run: str, model: str, generation: int, minute: float, policy: float, value: float,
                source: str = "trainer") -> Event:
    return _at(ev.CheckpointSaved.new(run, model_id=model, object_name=names.model_object(model), digest="d",
                                      generation=generation, step=60 * generation, game="tictactoe",
                                      policy_loss=policy, value_loss=value, source=source), minute)


def _match(run: str, match_id: str, candidate: str, opponent: ev.PlayerSpec, pentas: list[int],
           verdict: str, minute: float, purpose: str = "gate") -> list[Event]:
    spec = ev.PlayerSpec(kind="model", model_id=candidate)
    out = [_at(ev.MatchScheduled.new(run, match_id=match_id, candidate=spec, opponent=opponent,
                                     purpose=purpose, max_pairs=len(pentas)), minute)]
    out += [_at(ev.MatchPairPlayed.new(run, match_id=match_id, unit_id="u", pair_index=i, opening=[],
                                       pentanomial=p), minute + 0.1) for i, p in enumerate(pentas)]
    counts = [pentas.count(k) for k in range(5)]
    estimate = elo_from_pentanomial(counts)
    out.append(_at(ev.MatchCompleted.new(run, match_id=match_id, verdict=verdict, pairs=len(pentas),
                                         pentanomial=counts, elo=estimate.elo, elo_ci95=estimate.ci95,
                                         llr=0.0, lower=-2.9, upper=2.9), minute + 0.2))
    return out


def recorded_run(
    run: str, config: dict[str, Any], promotion: dict[str, Any]
) -> tuple[list[Event], list[Event]]:
    """``(control events, games)`` of the tiny run, in log order."""
    model = lambda m: ev.PlayerSpec(kind="model", model_id=m)  # noqa: E731
    random = ev.PlayerSpec(kind="random")
    control: list[Event] = [
        _at(ev.LoopStarted.new(run, by="test", config=config, promotion=promotion), 0),
        _checkpoint(run, "m0", 0, 0.1, 0.0, 0.0, source="initial"),
        _at(ev.PoolBatchSynced.new(run, shard_id="s0", object_name=names.shard_object(run, "s0"), digest="d",
                                   games=20, positions=110, games_first_seq=1, games_last_seq=20,
                                   models=["m0"]), 2),
        _at(ev.TrainingStarted.new(run, trainer="t", parent_model="m0", shards=["s0"], window_positions=110,
                                   samples_planned=1920), 2.1),
        _checkpoint(run, "m1", 1, 3, 2.1, 0.9),
        *_match(run, "gate-m1", "m1", model("m0"), [4, 4, 3, 4, 2, 4], "accept", 3.5),
        *_match(run, "ref-m1", "m1", random, [4, 4, 4, 3], "accept", 3.6, purpose="reference"),
        _at(ev.CandidatePromoted.new(run, model_id="m1", previous_champion="m0", generation=1), 4.5),
        _at(ev.HealthCheckFailed.new(run, check="selfplay_stalled", severity="warning", detail="slow"), 5),
        _at(ev.PoolBatchSynced.new(run, shard_id="s1", object_name=names.shard_object(run, "s1"), digest="d",
                                   games=20, positions=115, games_first_seq=21, games_last_seq=40,
                                   models=["m1"]), 6),
        _checkpoint(run, "m2", 2, 7, 1.8, 0.8),
        *_match(run, "gate-m2", "m2", model("m1"), [0, 1, 2, 0, 1, 0], "reject", 7.5),
        _at(ev.CandidateRejected.new(run, model_id="m2", reason="SPRT rejects"), 8.5),
        _at(ev.ProcessRestarted.new(run, process="selfplay", exit_code=1), 9),
        _checkpoint(run, "m3", 2, 10, 1.5, 0.7),
        *_match(run, "gate-m3", "m3", model("m1"), [4, 3, 4, 4, 2, 3], "accept", 10.5),
        _at(ev.CandidatePromoted.new(run, model_id="m3", previous_champion="m1", generation=2), 11.5),
        _at(ev.HealthCheckFailed.new(run, check="nan_loss", severity="critical", detail="nan"), 12),
        _at(ev.LoopHalted.new(run, by="health", reason="nan_loss", automatic=True), 12.1),
        _at(ev.ModelGraded.new(run, model_id="m1", positions_file="p.jsonl", grades=[
            ev.Grade(player="raw-policy", positions=50, outcome_optimal=0.5, exactly_optimal=0.3),
            ev.Grade(player="net-mcts-16", positions=50, outcome_optimal=0.6, exactly_optimal=0.4),
            ev.Grade(player="random", positions=50, outcome_optimal=0.3, exactly_optimal=0.2, reference=True),
        ]), 12.5),
        _at(ev.LoopResumed.new(run, by="ops"), 13),
    ]
    games = [_game(run, i, "m0" if i < 20 else "m1", 1 + i * 0.25) for i in range(48)]
    return control, games


async def append_recorded_run(store: EventStore, run: str, nats_settings: Any, tmp) -> dict[str, int]:
    """Append the run, games first; the sequences of the control events that the tests name."""
    from handlers.promotion.config import PromotionConfig

    config = tiny_loop_dict(nats_settings, tmp, run, curriculum=STAGES)
    control, games = recorded_run(run, config, msgspec.to_builtins(PromotionConfig()))
    await store.append_many(games)
    seqs = await store.append_many(control)
    by_tag: dict[str, int] = {}
    for event, seq in zip(control, seqs, strict=True):
        by_tag.setdefault(event.tag, seq)
    return by_tag


async def append_rollback(store: EventStore, run: str, to_seq: int) -> int:
    event = _at(ev.ChampionRolledBack.new(run, to_promotion_seq=to_seq, model_id="m1", reason="regressed"),
                14)
    return (await store.append_many([event]))[0]

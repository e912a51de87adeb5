"""Evaluator, referee and promoter services against a real server.

Match pairs are appended by the test with chosen pentanomial outcomes (the contract an eval
worker fulfils), so the gates' figures are known: an all-won gate is accepted by its SPRT, an
all-lost watch match rolls the new champion back.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from handlers.loop.controller import build_controller
from handlers.promotion.config import PromotionConfig, RegressionConfig, SprtConfig, WatchConfig
from handlers.promotion.evaluator_service import build_evaluator
from handlers.promotion.promoter_service import build_promoter
from handlers.promotion.referee import build_referee, completion_id
from projections.matches import GATE, WATCH
from projections.models import ModelRegistryProjection
from projections.runner import state_as_of
from streams import commands as cmd
from streams import events as ev
from streams import names
from streams.commanding import send_command
from streams.store import EventStore

pytestmark = pytest.mark.integration

RUN = "p1"
GATE_PAIRS = 30
CONFIG = PromotionConfig(
    simulations=4,
    sprt=SprtConfig(elo0=0.0, elo1=50.0),
    max_pairs=GATE_PAIRS,
    pairs_per_unit=4,
    regression=RegressionConfig(previous_champions=0, reference_players=(), max_pairs=4),
    watch=WatchConfig(max_pairs=10, significance=0.01),
)
LL, WW = 0, 4


class Crash(Exception):
    pass


async def checkpoint(store: EventStore, model: str, generation: int) -> int:
    return await store.append(ev.CheckpointSaved.new(
        RUN, model_id=model, object_name=names.model_object(model), digest=model, generation=generation,
        game="tictactoe",
    ))


async def events_of(store: EventStore, kind: type) -> list:
    return [s.event async for s in store.read(names.EVENTS) if isinstance(s.event, kind)]


async def play(store: EventStore, match: ev.MatchScheduled, outcomes: list[int]) -> None:
    """What an eval worker appends: one ``match.pair_played`` per pair, in pair order."""
    await store.append_many([
        ev.MatchPairPlayed.new(RUN, cause=match, match_id=match.match_id, unit_id=f"{match.match_id}/x",
                               pair_index=i, opening=[], pentanomial=p, worker="test")
        for i, p in enumerate(outcomes)
    ])


async def registry_now(store: EventStore):
    state, _ = await state_as_of(store, ModelRegistryProjection(), RUN)
    return state


async def opened(pair):
    shell, service = pair
    await shell.open()
    return shell, service


async def close(*shells) -> None:
    for shell in shells:
        await shell.consumer.close()


async def gate_completed(store: EventStore) -> ev.MatchScheduled:
    """gen0 (the champion) and c1; c1's gate match scheduled, won pair after pair, completed."""
    await checkpoint(store, "gen0", 0)
    await checkpoint(store, "c1", 1)
    evaluator, _ = await opened(build_evaluator(store, RUN, CONFIG, "tictactoe", [()]))
    referee, _ = await opened(build_referee(store, RUN))
    await evaluator.drain()
    [gate] = await events_of(store, ev.MatchScheduled)
    await play(store, gate, [WW] * GATE_PAIRS)
    await referee.drain()
    await close(evaluator, referee)
    return gate


async def test_a_redone_scheduling_adds_no_duplicate_unit(store):
    await checkpoint(store, "gen0", 0)
    await checkpoint(store, "c1", 1)
    shell, _ = build_evaluator(store, RUN, CONFIG, "tictactoe", [()])
    shell.ack_wait = 1.0
    done = shell._done

    async def crash_after_the_units(delivery, cause_id):
        if delivery.subject.endswith("match.scheduled"):
            raise Crash()  # units appended, position not saved, no ack: the process died
        await done(delivery, cause_id)

    shell._done = crash_after_the_units
    await shell.open()
    with pytest.raises(Crash):
        await shell.drain()
    await shell.consumer.close()
    [gate] = await events_of(store, ev.MatchScheduled)
    assert (gate.purpose, gate.candidate.model_id, gate.opponent.model_id) == (GATE, "c1", "gen0")
    units = -(-GATE_PAIRS // CONFIG.pairs_per_unit)
    assert await store.last_seq(names.WORK) == units

    restarted, _ = build_evaluator(store, RUN, CONFIG, "tictactoe", [()])
    restarted.ack_wait = 1.0
    await restarted.open()
    deadline = time.monotonic() + 15
    while restarted.stats.processed == 0:  # the unacked match.scheduled comes back after ack_wait
        assert time.monotonic() < deadline, "no redelivery"
        await restarted.drain(idle_timeout=1.0)
    await restarted.consumer.close()
    assert restarted.stats.emitted == units  # the same units again, with the same ids ...
    assert await store.last_seq(names.WORK) == units  # ... so the server kept the first ones
    pairs = [p for seq in range(1, units + 1) for p in (await store.get(seq, names.WORK)).event.pairs]
    assert sorted(p.pair_index for p in pairs) == list(range(GATE_PAIRS))
    assert len(await events_of(store, ev.MatchScheduled)) == 1


async def test_the_referee_completes_a_match_once_when_its_sprt_decides(store):
    gate = await gate_completed(store)
    [completed] = await events_of(store, ev.MatchCompleted)
    assert completed.id == completion_id(gate.match_id) and completed.verdict == "accept"
    assert 0 < completed.pairs < GATE_PAIRS  # decided early: the later pairs are late ones
    assert completed.pentanomial == [0, 0, 0, 0, completed.pairs]
    assert completed.llr >= completed.upper


async def test_two_promoters_racing_on_one_completion_promote_once(store):
    await gate_completed(store)
    both = [build_promoter(store, RUN, CONFIG, name=name) for name in ("promoter-a", "promoter-b")]
    barrier = asyncio.Barrier(len(both))
    for _, service in both:  # each decides on the state before either appends: a true race
        first_refresh = service.refresh

        async def refresh_then_meet(first_refresh=first_refresh, service=service):
            await first_refresh()
            service.refresh = first_refresh
            await barrier.wait()

        service.refresh = refresh_then_meet
    shells = [shell for shell, _ in both]
    for shell in shells:
        await shell.open()
    await asyncio.wait_for(asyncio.gather(*(s.drain() for s in shells)), 30)
    await close(*shells)
    promoted = await events_of(store, ev.CandidatePromoted)
    assert [p.model_id for p in promoted] == ["c1"]
    assert sum(s.stats.conflicts for s in shells) == 1  # the loser re-read and found it decided
    assert await events_of(store, ev.CandidateRejected) == []
    registry = await registry_now(store)
    assert registry.champion.model_id == "c1" and registry.champion.generation == 1


async def test_a_lost_watch_match_rolls_the_new_champion_back(store):
    gate = await gate_completed(store)
    evaluator, _ = await opened(build_evaluator(store, RUN, CONFIG, "tictactoe", [()]))
    referee, _ = await opened(build_referee(store, RUN))
    promoter, _ = await opened(build_promoter(store, RUN, CONFIG))
    await promoter.drain()
    [promoted] = await events_of(store, ev.CandidatePromoted)
    assert promoted.model_id == "c1" and promoted.previous_champion == "gen0"
    gates = {g.gate: g.passed for g in promoted.gates}
    assert gates == {"champion": True, "sprt": True, "elo_threshold": True}
    await evaluator.drain()  # the promotion schedules the watch match
    watch = next(m for m in await events_of(store, ev.MatchScheduled) if m.match_id != gate.match_id)
    assert (watch.purpose, watch.candidate.model_id, watch.opponent.model_id) == (WATCH, "c1", "gen0")
    await play(store, watch, [LL] * CONFIG.watch.max_pairs)  # the new champion loses every pair
    await referee.drain()
    await promoter.drain()
    [rollback] = await events_of(store, ev.ChampionRolledBack)
    registry = await registry_now(store)
    assert rollback.automatic and rollback.reverted_models == ["c1"]
    assert rollback.to_promotion_seq == registry.promotions[0].seq  # gen0's initial promotion
    assert rollback.evidence["los"] < CONFIG.watch.significance
    assert registry.champion.model_id == "gen0" and "c1" in registry.reverted_models
    await promoter.drain()  # nothing more to decide
    await close(evaluator, referee, promoter)
    assert len(await events_of(store, ev.ChampionRolledBack)) == 1


async def test_promote_and_rollback_commands_are_checked_by_the_controller(store):
    await checkpoint(store, "gen0", 0)
    await checkpoint(store, "c1", 1)
    shell, _ = build_controller(store, RUN)
    stop = asyncio.Event()
    task = asyncio.create_task(shell.run_until(stop))
    try:
        answer = await send_command(store, cmd.PromoteModel.new(RUN, model_id="c1", by="ops"))
        assert isinstance(answer, ev.CommandAccepted), answer
        assert (await registry_now(store)).champion.model_id == "c1"
        again = await send_command(store, cmd.PromoteModel.new(RUN, model_id="c1"))
        assert isinstance(again, ev.CommandRejected) and "already promoted" in again.reason
        back = await send_command(store, cmd.RollbackChampion.new(RUN, reason="bad games"))
        assert isinstance(back, ev.CommandAccepted), back
        registry = await registry_now(store)
        assert registry.champion.model_id == "gen0" and registry.rollbacks[-1].reason == "bad games"
        none_left = await send_command(store, cmd.RollbackChampion.new(RUN))
        assert isinstance(none_left, ev.CommandRejected) and "no earlier promotion" in none_left.reason
    finally:
        stop.set()
        await task


class PromotionLandsFirst:
    """The real store, with a promotion by someone else appended just before the first
    ``champion.rolled_back``: the race a rollback by hand runs against a live loop."""

    def __init__(self, store: EventStore, promotion: ev.CandidatePromoted):
        self.store, self.promotion = store, promotion

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def append(self, event, **kwargs):
        if isinstance(event, ev.ChampionRolledBack) and self.promotion is not None:
            promotion, self.promotion = self.promotion, None
            await self.store.append(promotion)
        return await self.store.append(event, **kwargs)


async def test_a_rollback_to_a_named_promotion_survives_a_concurrent_promotion(store):
    from handlers.promotion.manager import PromotionError, rollback_champion

    for generation in range(4):
        await checkpoint(store, f"m{generation}", generation)
    first = await store.append(ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0",
                                                        generation=1))
    await store.append(ev.CandidatePromoted.new(RUN, model_id="m2", previous_champion="m1", generation=2))
    racing = ev.CandidatePromoted.new(RUN, model_id="m3", previous_champion="m2", generation=3)

    event, seq = await rollback_champion(PromotionLandsFirst(store, racing), RUN, to_seq=first)
    registry = await registry_now(store)
    assert registry.champion.model_id == "m1" and event.to_promotion_seq == first
    assert {"m2", "m3"} <= set(event.reverted_models)  # planned again after m3's promotion
    assert registry.rollbacks[-1].seq == seq and len(registry.rollbacks) == 1

    # "back one step" would mean another target after a concurrent decision: refused
    again = ev.CandidatePromoted.new(RUN, model_id="m3", previous_champion="m1", generation=3)
    with pytest.raises(PromotionError, match="changed while it was planned"):
        await rollback_champion(PromotionLandsFirst(store, again), RUN)
    assert len((await registry_now(store)).rollbacks) == 1

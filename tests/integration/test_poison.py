"""Poison and forgery against a real server: nothing that reads the log is stopped by one message.

Undecodable bytes and events of unknown types on every subject a reader consumes — the
champion aggregate included, where the promoter appends under an expected last sequence —
are recorded once as ``event.rejected`` however many readers meet them, and a promotion
still happens. A well-formed decision naming a model with no checkpoint is refused: the
registry, ``--status``, the promoter and selfplay keep the real champion.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from handlers.loop.config import HealthSection
from handlers.loop.controller import build_controller
from handlers.loop.health import check_rejections, health_inputs
from handlers.loop.metrics import LiveReadings
from handlers.loop.selfplay import play
from handlers.loop.status import collect_status
from handlers.promotion.evaluator_service import build_evaluator
from handlers.promotion.promoter_service import build_promoter
from handlers.promotion.referee import build_referee
from handlers.runtime.service import run_service
from projections import PROJECTIONS
from projections.journal import JournalProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner, state_as_of
from streams import events as ev
from streams import names
from streams.rejections import Rejections, rejected_event, rejection_key
from streams.store import EventStore
from tests.integration.test_promotion import CONFIG, GATE_PAIRS, RUN, WW, checkpoint, events_of
from tests.integration.test_promotion import play as play_pairs
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration

JUNK = msgspec.msgpack.encode([1])  # msgpack, but not an event
UNKNOWN = msgspec.msgpack.encode({"type": "pool.from_a_newer_build", "id": "u1", "run": RUN})


async def publish(store: EventStore, stream: str, subject: str, data: bytes) -> tuple[str, int]:
    ack = await store.js.publish(subject, data, stream=stream)
    return stream, int(ack.seq)


def champion_subject(tag: str) -> str:
    return names.subject(names.EVENTS, RUN, names.AGG_CHAMPION, tag)


async def rejections(store: EventStore) -> list[ev.EventRejected]:
    return await events_of(store, ev.EventRejected)


async def fold_every_projection(store: EventStore) -> dict[str, object]:
    """What ``--status`` and the metrics do: every read model folded from the start."""
    states = {}
    for name, factory in PROJECTIONS.items():
        runner = ProjectionRunner(store, factory(_NoStages()), RUN, use_snapshots=False)
        states[name] = await runner.catch_up()
    return states


class _NoStages:
    """A loop config as the curriculum projection reads it: no stages (the default, one)."""

    curriculum = None


async def test_poison_on_every_subject_is_recorded_once_and_a_promotion_still_happens(store, log):
    poisons = set()
    poisons.add(await publish(store, names.EVENTS, champion_subject("candidate.rejected"), JUNK))
    await checkpoint(store, "gen0", 0)
    poisons.add(await publish(store, names.EVENTS,
                              names.subject(names.EVENTS, RUN, "models", "checkpoint.saved"), JUNK))
    poisons.add(await publish(store, names.EVENTS,
                              names.subject(names.EVENTS, RUN, names.AGG_LOOP, "loop.halted"), JUNK))
    poisons.add(await publish(store, names.EVENTS,
                              names.subject(names.EVENTS, RUN, names.AGG_POOL, "pool.from_a_newer_build"),
                              UNKNOWN))
    poisons.add(await publish(store, names.EVENTS,
                              names.subject(names.EVENTS, RUN, names.AGG_REJECTED, "event.rejected"), JUNK))
    poisons.add(await publish(store, names.COMMANDS, names.command_subject(RUN, "halt"), JUNK))
    poisons.add(await publish(store, names.GAMES,
                              names.subject(names.GAMES, RUN, "w1", "game.finished"), JUNK))
    await checkpoint(store, "c1", 1)

    evaluator, _ = build_evaluator(store, RUN, CONFIG, "tictactoe", [()])
    referee, _ = build_referee(store, RUN)
    promoter, promoter_service = build_promoter(store, RUN, CONFIG)
    controller, _ = build_controller(store, RUN)
    shells = (evaluator, referee, promoter, controller)
    for shell in shells:
        await shell.open()
    await evaluator.drain()
    [gate] = await events_of(store, ev.MatchScheduled)
    poisons.add(await publish(store, names.EVENTS,
                              names.subject(names.EVENTS, RUN, f"match-{gate.match_id}", "match.completed"),
                              JUNK))
    await play_pairs(store, gate, [WW] * GATE_PAIRS)
    await referee.drain()
    # the champion aggregate's last message is poison when the promoter appends under it
    poisons.add(await publish(store, names.EVENTS, champion_subject("candidate.promoted"), JUNK))
    for shell in shells:
        await shell.drain()
        await shell.consumer.close()

    [promoted] = await events_of(store, ev.CandidatePromoted)
    assert promoted.model_id == "c1"
    states = await fold_every_projection(store)
    assert states["model_registry"].champion.model_id == "c1"

    recorded = await rejections(store)
    assert {(r.stream, r.seq) for r in recorded} == poisons  # every poison, by stream and sequence
    assert len(recorded) == len(poisons)  # ... each once, though several readers met it
    journal, _ = await state_as_of(store, JournalProjection(), RUN)  # with what the later folds recorded
    assert journal.poison_count == len(poisons)
    on_events = len([p for p in poisons if p[0] == names.EVENTS])
    assert promoter.stats.rejected == evaluator.stats.rejected == on_events  # each skipped it ...
    assert controller.stats.rejected == 1
    assert promoter_service.registry.skipped == on_events  # ... and so did each runner

    # health: a failure once the recorded poison passes health.max_rejections
    inputs = health_inputs({"journal": journal}, LiveReadings(), now=0.0)
    assert check_rejections(inputs, HealthSection(max_rejections=len(poisons))) == []
    [failure] = check_rejections(inputs, HealthSection(max_rejections=len(poisons) - 1))
    assert failure.check == "rejected_events" and failure.value == len(poisons)


async def test_a_reader_in_another_process_later_records_nothing_again(store, log):
    stream, seq = await publish(store, names.EVENTS, champion_subject("candidate.rejected"), JUNK)
    await state_as_of(store, ModelRegistryProjection(), RUN)
    [first] = await rejections(store)
    assert (first.stream, first.seq, first.handler) == (stream, seq, "projection:model_registry")

    elsewhere = Rejections(EventStore(log), RUN)  # another process: nothing known in memory
    record = rejected_event(RUN, stream, champion_subject("candidate.rejected"), seq, JUNK, "again",
                            "projection:journal", at=first.time + 3600.0)
    assert await elsewhere.record(record) is False  # found in the log, not appended
    assert rejection_key(stream, seq) in elsewhere.known and elsewhere.recorded == 0
    assert len(await rejections(store)) == 1


async def test_a_followed_projection_records_poison_that_arrives_live(store):
    await checkpoint(store, "gen0", 0)
    runner = ProjectionRunner(store, JournalProjection(), RUN, use_snapshots=False)
    await runner.follow()
    try:
        stream, seq = await publish(store, names.EVENTS,
                                    names.subject(names.EVENTS, RUN, names.AGG_LOOP, "loop.halted"), JUNK)
        state = await runner.wait_for(lambda s: s.poison_count == 1, timeout=10)
        subject = names.subject(names.EVENTS, RUN, names.AGG_LOOP, "loop.halted")
        assert state.poison[-1].text.startswith(f"{subject} #{seq}:")
        assert runner.skipped == 1
    finally:
        await runner.stop()


async def test_a_forged_promotion_of_a_model_with_no_checkpoint_is_refused(store):
    await checkpoint(store, "gen0", 0)
    await checkpoint(store, "c1", 1)
    forged = ev.CandidatePromoted.new(RUN, model_id="ghost", generation=999)
    forged_seq = await store.append(forged)
    unknown_rollback = ev.ChampionRolledBack.new(RUN, to_promotion_seq=forged_seq, model_id="ghost")
    rollback_seq = await store.append(unknown_rollback)

    registry, _ = await state_as_of(store, ModelRegistryProjection(), RUN)
    assert registry.champion.model_id == "gen0" and registry.champion.generation == 0
    assert [(r.seq, r.tag) for r in registry.refusals] == [
        (forged_seq, "candidate.promoted"), (rollback_seq, "champion.rolled_back")]
    assert registry.champion_last_seq == rollback_seq  # the refused events still occupy the aggregate
    recorded = {r.seq: r.reason for r in await rejections(store)}
    assert set(recorded) == {forged_seq, rollback_seq}
    assert "no checkpoint" in recorded[forged_seq] and "no promotion" in recorded[rollback_seq]

    # the evaluator schedules c1 against the real champion, and the promoter appends after the
    # refused events (its expected last sequence counts them)
    evaluator, _ = build_evaluator(store, RUN, CONFIG, "tictactoe", [()])
    referee, _ = build_referee(store, RUN)
    promoter, _ = build_promoter(store, RUN, CONFIG)
    for shell in (evaluator, referee, promoter):
        await shell.open()
    await evaluator.drain()
    [gate] = await events_of(store, ev.MatchScheduled)
    assert (gate.candidate.model_id, gate.opponent.model_id) == ("c1", "gen0")
    await play_pairs(store, gate, [WW] * GATE_PAIRS)
    await referee.drain()
    await promoter.drain()
    for shell in (evaluator, referee, promoter):
        await shell.consumer.close()
    promoted = [p for p in await events_of(store, ev.CandidatePromoted) if p.id != forged.id]
    assert [(p.model_id, p.previous_champion) for p in promoted] == [("c1", "gen0")]
    assert len(await rejections(store)) == 2  # every reader met the forgery; recorded once


async def test_selfplay_and_status_keep_the_real_champion_after_a_forged_promotion(
        store, nats_settings, tmp_path):
    _, cfg = write_tiny_loop(nats_settings, tmp_path, selfplay={"games_in_flight": 4})
    stop = asyncio.Event()

    async def body(ctx):
        await play(ctx, cfg)

    task = asyncio.create_task(run_service("selfplay", cfg.nats, cfg.run, body,
                                           install_signals=False, stop=stop))
    try:
        async def games():
            return [s async for s in store.read(names.GAMES)]

        await until(lambda: _at_least(games, 2), 60, "the first games")
        forged_seq = await store.append(ev.CandidatePromoted.new(cfg.run, model_id="ghost", generation=999))
        last_seq = (await games())[-1].seq

        async def later_games():
            return [s for s in await games() if s.seq > last_seq + cfg.selfplay.games_in_flight]

        later = await until(later_games, 60, "games after the forged promotion")
        assert not task.done(), "selfplay stopped"
        assert {s.event.model_id for s in later} == {"t1-gen0"}
        report = await collect_status(store, cfg)
        assert report["champion"]["model_id"] == "t1-gen0" and report["champion"]["generation"] == 0
        assert report["recent"]["poison_events"] == 1
        [rejected] = [r for r in await events_of(store, ev.EventRejected) if r.run == cfg.run]
        assert rejected.seq == forged_seq and "ghost" in rejected.reason
    finally:
        stop.set()
        await task


async def _at_least(fetch, n: int):
    items = await fetch()
    return items if len(items) >= n else None

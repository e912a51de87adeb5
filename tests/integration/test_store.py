"""The event store against a real nats-server: dedupe, optimistic concurrency, reads."""

from __future__ import annotations

import asyncio

import pytest

from streams import names
from streams.errors import ConcurrencyConflict, EventNotFound
from streams.events import CandidatePromoted, LoopHalted, LoopResumed
from streams.games import GameFinished, pack_policies

pytestmark = pytest.mark.integration
CHAMPION = names.aggregate_filter(names.EVENTS, "r1", names.AGG_CHAMPION)


async def test_retried_append_is_stored_once(store):
    event = LoopHalted.new("r1", by="test", reason="retry")
    first = await store.append(event)
    again = await store.append(event)
    assert first == again
    assert await store.last_seq() == 1
    assert (await store.get(first)).event == event


async def test_two_concurrent_occ_appenders_exactly_one_wins(store):
    await store.append(CandidatePromoted.new("r1", model_id="m0"), expected_last_seq=0)
    last = (await store.last(names.EVENTS, CHAMPION)).seq
    racers = [CandidatePromoted.new("r1", model_id=f"m{i}") for i in (1, 2)]
    results = await asyncio.gather(
        *(store.append(e, expected_last_seq=last) for e in racers), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, int)]
    losses = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(wins) == 1 and len(losses) == 1
    winner = (await store.last(names.EVENTS, CHAMPION)).event
    assert winner.model_id in {"m1", "m2"}


async def test_retried_occ_append_is_not_a_false_conflict(store):
    event = CandidatePromoted.new("r1", model_id="m1")
    seq = await store.append(event, expected_last_seq=0)
    # the ack was "lost": the producer retries with the same expectation
    assert await store.append(event, expected_last_seq=0) == seq
    with pytest.raises(ConcurrencyConflict):
        await store.append(CandidatePromoted.new("r1", model_id="m2"), expected_last_seq=0)


async def test_occ_covers_every_subject_of_the_aggregate(store):
    await store.append(CandidatePromoted.new("r1", model_id="m1"), expected_last_seq=0)
    # a different event type on the same aggregate moves its last sequence
    from streams.events import CandidateRejected

    await store.append(CandidateRejected.new("r1", model_id="m2", reason="weak"))
    with pytest.raises(ConcurrencyConflict):
        await store.append(CandidatePromoted.new("r1", model_id="m3"), expected_last_seq=1)


async def test_bulk_append_keeps_order_and_dedupes(store):
    events = [LoopHalted.new("r1", reason=str(i)) for i in range(3000)]
    seqs = await store.append_many(events, window=500)
    assert seqs == list(range(1, 3001))
    assert await store.append_many(events[:10]) == list(range(1, 11))
    assert await store.last_seq() == 3000


async def test_read_range_by_sequence_and_time(store):
    await store.append_many([LoopHalted.new("r1", reason=str(i)) for i in range(50)])
    middle = (await store.get(25)).time
    got = [s.seq async for s in store.read(start_seq=10, end_seq=20)]
    assert got == list(range(10, 21))
    by_time = [s.seq async for s in store.read(start_time=middle)]
    assert by_time[0] <= 25 and by_time[-1] == 50
    assert [s async for s in store.read(start_seq=51)] == []


async def test_follow_sees_new_events(store):
    await store.append(LoopHalted.new("r1"))
    seen = []

    async def reader():
        async for s in store.read(follow=True):
            seen.append(s.seq)
            if len(seen) == 3:
                return

    task = asyncio.create_task(reader())
    await store.append(LoopResumed.new("r1"))
    await store.append(LoopHalted.new("r1"))
    await asyncio.wait_for(task, 10)
    assert seen == [1, 2, 3]


async def test_streams_are_separate_and_missing_events_are_errors(store):
    g = GameFinished.new("r1", game_id="g1", game="tictactoe", moves=[4], **pack_policies([[1.0]]),
                         outcome=0, model_id="m0")
    seq = await store.append(g)
    assert (await store.get(seq, names.GAMES)).event == g
    assert await store.last_seq(names.EVENTS) == 0
    with pytest.raises(EventNotFound):
        await store.get(99)
    assert await store.last(names.EVENTS, CHAMPION) is None


async def test_stream_definitions_are_idempotent_and_append_only(log):
    from streams.definitions import ensure_all

    await ensure_all(log.js, log.settings)
    await ensure_all(log.js, log.settings)
    info = await log.js.stream_info(names.EVENTS)
    assert info.config.deny_delete and info.config.deny_purge
    wq = await log.js.stream_info(names.WORK)
    assert str(getattr(wq.config.retention, "value", wq.config.retention)) == "workqueue"


async def test_a_refused_definition_change_is_a_clear_error(log):
    import msgspec

    from streams.definitions import ensure_streams
    from streams.errors import DefinitionConflict

    # a single server cannot hold three replicas: the server refuses, we explain
    bad = msgspec.structs.replace(log.settings, replicas=3)
    with pytest.raises(DefinitionConflict, match="EVENTS"):
        await ensure_streams(log.js, bad)

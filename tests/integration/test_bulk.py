"""Bulk replay over the lean connection and pipelined bulk append, on a real nats-server
that wants a login (the fixtures run with authorisation on)."""

from __future__ import annotations

import asyncio

import pytest

from streams import names
from streams.errors import StoreError
from streams.events import LoopHalted, LoopStarted, NodeJoined

pytestmark = pytest.mark.integration


def _events(n: int, run: str = "r1") -> list:
    return [
        LoopHalted.new(run, reason=str(i)) if i % 3 else NodeJoined.new(run, node=f"n{i % 4}")
        for i in range(n)
    ]


async def test_bulk_replay_gives_what_the_ordered_consumer_gives(store):
    await store.append_many(_events(400) + _events(200, run="r2"))
    for kwargs in (
        {},
        {"subject_filter": names.run_filter(names.EVENTS, "r1"), "start_seq": 50, "end_seq": 500},
        {"subject_filter": names.aggregate_filter(names.EVENTS, "r1", "node-n1")},
    ):
        lean: list = []
        ordered: list = []
        last = await store.replay(names.EVENTS, lambda *a, out=lean: out.append(a), **kwargs)
        end = kwargs.get("end_seq") or await store.last_seq()
        last_ordered = await store._replay_ordered(
            names.EVENTS, lambda *a, out=ordered: out.append(a),
            kwargs.get("subject_filter", names.run_filter(names.EVENTS)),
            kwargs.get("start_seq", 1), end, None,
        )
        assert lean == ordered and lean and last == last_ordered == lean[-1][0]
    seq, subject, ts, data = lean[0]
    stored = await store.get(seq)
    assert subject == stored.subject and ts == pytest.approx(stored.time, abs=1e-6)


async def test_a_handle_error_propagates_and_leaves_no_consumer(store):
    await store.append_many(_events(300))

    class Stop(Exception):
        pass

    stop = Stop()
    handled = []

    def handle(seq, subject, ts, data):
        handled.append(seq)
        if seq == 5:
            raise stop

    with pytest.raises(Stop) as info:
        await store.replay(names.EVENTS, handle)
    assert info.value is stop and handled == [1, 2, 3, 4, 5]
    assert (await store.js.stream_info(names.EVENTS)).state.consumer_count == 0


async def test_bulk_append_twice_stores_once(store):
    events = _events(300)
    first = await store.append_many(events, window=64)
    assert first == list(range(1, 301))
    assert await store.append_many(events) == first
    assert await store.last_seq() == 300


async def test_an_oversized_event_is_refused_by_name_and_the_rest_are_stored(store):
    events = _events(299)
    events.insert(100, LoopStarted.new("r1", config={"blob": "x" * (9 * 1024 * 1024)}))
    with pytest.raises(StoreError, match="loop.started.*max_payload"):
        await store.append_many(events)
    assert (await store.js.stream_info(names.EVENTS)).state.messages == 299


async def test_a_replay_resumes_where_it_stopped_when_its_consumer_disappears(store):
    await store.append_many([LoopHalted.new("r1", reason="x" * 200) for _ in range(20_000)])
    seen: list[int] = []
    dropped: list[asyncio.Task] = []

    async def drop_consumers() -> int:
        infos = await store.js.consumers_info(names.EVENTS)
        for info in infos:
            await store.js.delete_consumer(names.EVENTS, info.name)
        return len(infos)

    def handle(seq, subject, ts, data):
        seen.append(seq)
        if seq == 100:
            dropped.append(asyncio.get_running_loop().create_task(drop_consumers()))

    assert await store.replay(names.EVENTS, handle) == 20_000
    assert dropped[0].result() == 1 and seen == list(range(1, 20_001))


async def test_the_lean_connection_serves_the_authenticated_server(store):
    """The fixture's server wants a login: the lean reader logs in itself (no fallback to
    nats-py's ordered consumer), and gives what that consumer gives."""
    from nats.js import api

    from streams import auth, bulk

    assert auth.credentials_path(store.log.settings.data_dir).exists()
    assert await store.append_many(_events(300)) == list(range(1, 301))
    lean: list = []
    config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL,
                                filter_subject=names.run_filter(names.EVENTS))
    last = await bulk.replay(store.nc, store.js, names.EVENTS, config,
                             lambda *a: lean.append(a), 300)
    ordered: list = []
    await store._replay_ordered(names.EVENTS, lambda *a: ordered.append(a),
                                names.run_filter(names.EVENTS), 1, 300, None)
    assert last == 300 and lean == ordered

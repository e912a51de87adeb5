"""Bulk replay over the lean connection and pipelined bulk append, on a real nats-server
that wants a login (the fixtures run with authorisation on)."""

from __future__ import annotations

import asyncio

import pytest

from streams import names
from streams.errors import StoreError
from streams.events import LoopHalted, LoopStarted, NodeJoined
from streams.games import GameFinished, pack_policies
from tests.waiting import until

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


def _games(n: int, worker: str = "w1") -> list:
    return [GameFinished.new("r1", game_id=f"g{i}", game="connect4", moves=[3, 4, 3],
                             **pack_policies([[0.5, 0.5]] * 3), outcome=1, model_id="m0", worker=worker)
            for i in range(n)]


async def test_selfplay_sized_appends_go_over_one_kept_lean_connection(store):
    """A batch of 64 games (selfplay's largest) takes the lean publisher, and every call after
    the first reuses its connection: no size threshold, no connection per call."""
    from streams import bulk

    seqs = [await store.append_many(_games(64, worker=f"w{k}")) for k in range(3)]
    assert seqs == [list(range(1 + 64 * k, 65 + 64 * k)) for k in range(3)]
    assert bulk.publisher(store.nc).connections == 1
    stored = await store.get(100, names.GAMES)
    assert stored.subject == "jz.games.r1.w1.game.finished" and stored.event.game_id == "g35"


async def test_lean_and_nats_py_appends_store_the_same_and_dedupe_each_other(store):
    """Both paths store what the other would, in order, and each recognises the other's
    appends by id: a retry through either path is stored once."""
    first, second = _events(300), _events(300)
    lean = await store.append_many(first + first[:5])  # repeated inside the call: stored once
    assert lean == list(range(1, 301)) + [1, 2, 3, 4, 5]
    encoded = store._encode(second + first[:10])
    seqs, errors = [0] * len(encoded), []
    await store._publish_pipelined(encoded, seqs, errors, 64, 10.0)
    assert seqs == list(range(301, 601)) + list(range(1, 11)) and errors == []
    assert await store.append_many(second) == list(range(301, 601))
    assert await store.last_seq() == 600
    for seq, event in ((1, first[0]), (450, second[149])):
        assert (await store.get(seq)).event == event


async def test_an_append_finishes_over_nats_py_when_the_lean_connection_breaks(store, caplog):
    from streams import bulk

    events = [LoopHalted.new("r1", reason=str(i)) for i in range(50_000)]
    task = asyncio.create_task(store.append_many(events))
    await until(store.last_seq, 10, "the first lean appends", poll=0.005)
    bulk.publisher(store.nc).close()
    assert await task == list(range(1, 50_001))
    assert "lean connection unusable" in caplog.text
    assert (await store.js.stream_info(names.EVENTS)).state.messages == 50_000
    assert await store.append_many(events[:3]) == [1, 2, 3]  # a fresh lean connection
    assert bulk.publisher(store.nc).connections == 2


async def test_an_append_nobody_stores_is_refused_by_both_paths(store):
    """No stream takes the subject (the server answers 503 instead of an acknowledgement)."""
    await store.js.delete_stream(names.GAMES)
    with pytest.raises(StoreError, match="game.finished: no stream takes this subject"):
        await store.append_many(_games(3))
    encoded = store._encode(_games(3))
    seqs, errors = [0] * 3, []
    await store._publish_pipelined(encoded, seqs, errors, 64, 10.0)
    assert seqs == [-1, -1, -1] and errors[0] == (0, "no stream takes this subject")

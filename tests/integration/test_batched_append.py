"""Appends of many concurrent producers, batched (``streams.batched_append``), and the
per-event outcomes of ``EventStore.append_each`` they rest on, on a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from streams.batched_append import BatchedAppender
from streams.envelope import derived_id
from streams.errors import StoreError
from streams.events import LoopStarted
from streams.matchmaking_events import P2pMovePlayed

pytestmark = pytest.mark.integration


def _move(game: int, ply: int) -> P2pMovePlayed:
    return P2pMovePlayed.new("r1", id=derived_id(f"g{game}", "p2p.move_played", ply), game_id=f"g{game}",
                             ply=ply, move=ply % 7, seat=ply % 2)


async def test_each_event_gets_its_own_outcome(store):
    oversized = LoopStarted.new("r1", config={"blob": "x" * (9 * 1024 * 1024)})
    outcomes = await store.append_each([_move(0, 0), oversized, _move(0, 1)])
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], StoreError) and "max_payload" in str(outcomes[1])
    assert "loop.started" in str(outcomes[1])
    # a repeat is deduplicated: the stored copies' sequences
    assert await store.append_each([_move(0, 1), _move(0, 0)]) == [2, 1]


async def test_a_turn_of_concurrent_appends_is_one_batch_and_each_caller_gets_its_sequence(store):
    appender = BatchedAppender(store)
    games = 200
    seqs = await asyncio.gather(*(appender.append(_move(g, 0)) for g in range(games)))
    assert appender.batches == 1 and appender.events == games
    assert sorted(seqs) == list(range(1, games + 1))
    for g in (0, 57, 199):  # each caller's sequence is where its own event is stored
        stored = await store.get(seqs[g])
        assert stored.event.game_id == f"g{g}"

    async def game(g: int) -> list[int]:  # each producer waits for its last append, as a game does
        return [await appender.append(_move(g, ply)) for ply in range(1, 6)]

    per_game = await asyncio.gather(*(game(g) for g in range(games)))
    assert all(s == sorted(s) for s in per_game)  # one game's events in its own order
    assert appender.batches == 6  # one batch per turn: five turns of 200
    assert await store.last_seq() == games * 6


async def test_a_refused_event_fails_its_caller_alone(store):
    appender = BatchedAppender(store)
    oversized = LoopStarted.new("r1", config={"blob": "x" * (9 * 1024 * 1024)})
    results = await asyncio.gather(appender.append(_move(1, 0)), appender.append(oversized),
                                   appender.append(_move(2, 0)), return_exceptions=True)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], StoreError) and "max_payload" in str(results[1])
    assert appender.batches == 1

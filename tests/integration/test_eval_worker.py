"""Evaluation workers against a real server, on tic-tac-toe with small players.

A worker process killed (SIGKILL) in the middle of a unit leaves its unit to another worker,
and the match ends with every pair counted exactly once. A unit of a completed match is
acknowledged without play, a unit that does not decode is recorded as ``event.rejected``,
and the worker goes on. While the loop is halted no unit is taken (no match game starts)
until it is resumed. Model players are fetched once, verified against their digest; a model
whose bytes fail the digest makes its unit rejected.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from engine.checkpoint import make_meta, save_checkpoint
from engine.games import get_game
from engine.network import NetworkConfig, build_network
from engine.openings import openings_for
from handlers.loop.config import EvaluationSection, GameSpec, HealthSection, LoopConfig, load_in_force
from handlers.loop.process import child_command
from handlers.promotion import eval_worker
from handlers.promotion.config import PromotionConfig
from handlers.promotion.evaluator import work_units
from handlers.promotion.evaluator_service import MATCH_PLAYERS, match_work_consumer
from handlers.runtime.service import run_service
from projections.matches import Matches, MatchesProjection
from projections.runner import ProjectionRunner
from streams import codec, names
from streams import events as ev
from streams.kv import Heartbeat, get_value
from streams.objects import put_object
from streams.store import EventStore
from streams.work import MatchUnit
from tests.loop_configs import write_tiny_loop

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN = "ew"
GAME = get_game("tictactoe")
RANDOM = ev.PlayerSpec(kind="random")
SLOW = ev.PlayerSpec(kind="pure_mcts", simulations=2000)  # 0.2-1 s a pair: "mid-unit" is observable
LONG = ev.PlayerSpec(kind="pure_mcts", simulations=8000)  # a unit that outlasts several ack waits
TINY_NET = NetworkConfig(blocks=1, channels=8, value_hidden=8)
T = TypeVar("T")


def loop_config(nats_settings) -> LoopConfig:
    return LoopConfig(
        run=RUN,
        game=GameSpec(name="tictactoe"),
        nats=nats_settings,
        evaluation=EvaluationSection(torch_threads=1),
        health=HealthSection(interval_s=0.3),
    )


async def until(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy (the log is the witness), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.05)  # polling interval, not synchronisation
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def schedule(
    store: EventStore,
    match_id: str,
    candidate: ev.PlayerSpec,
    opponent: ev.PlayerSpec,
    max_pairs: int,
    per_unit: int,
) -> list[MatchUnit]:
    """``match.scheduled`` and its units on WORK, as the evaluator makes them."""
    scheduled = ev.MatchScheduled.new(
        RUN,
        match_id=match_id,
        candidate=candidate,
        opponent=opponent,
        purpose="reference",
        max_pairs=max_pairs,
        pairs_per_unit=per_unit,
    )
    await store.append(scheduled)
    units = work_units(scheduled, GAME.name, openings_for(GAME))
    for unit in units:
        await store.append(unit)
    return units


class Followed:
    """Events of one tag in the run, followed live from the start (an ordered consumer).

    Polled while workers append (``EventStore.read`` fixes its end when called, so it is
    used only once they are stopped).
    """

    def __init__(self, store: EventStore, tag: str):
        self.store = store
        self.tag = tag
        self.events: list = []
        self._sub = None

    async def __aenter__(self) -> Followed:
        async def on_msg(msg) -> None:
            self.events.append(codec.decode(msg.data))

        subjects = names.tag_filter(names.EVENTS, RUN, self.tag)
        self._sub = await self.store.subscribe_ordered(names.EVENTS, subjects, on_msg)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._sub.unsubscribe()

    def of(self, match_id: str) -> list[ev.MatchPairPlayed]:
        return [e for e in self.events if e.match_id == match_id]


async def pairs_played(store: EventStore, match_id: str | None = None) -> list[ev.MatchPairPlayed]:
    """Every ``match.pair_played`` in the log now (read once the workers are stopped)."""
    subjects = names.tag_filter(names.EVENTS, RUN, "match.pair_played")
    return [
        s.event
        async for s in store.read(names.EVENTS, subject_filter=subjects)
        if isinstance(s.event, ev.MatchPairPlayed) and match_id in (None, s.event.match_id)
    ]


async def rejections(store: EventStore) -> list[ev.EventRejected]:
    subjects = names.tag_filter(names.EVENTS, RUN, "event.rejected")
    return [
        s.event
        async for s in store.read(names.EVENTS, subject_filter=subjects)
        if isinstance(s.event, ev.EventRejected)
    ]


async def heartbeat(store: EventStore, node: str) -> Heartbeat | None:
    data = await get_value(store.log, names.KV_HEARTBEATS, names.heartbeat_key(RUN, node))
    return msgspec.msgpack.decode(data, type=Heartbeat) if data else None


async def work_left(store: EventStore) -> int:
    return int((await store.js.stream_info(names.WORK)).state.messages)


def start_worker(config: LoopConfig, node: str) -> tuple[asyncio.Task, asyncio.Event]:
    """An evaluation worker service in this process (as ``handlers.loop.process`` runs it)."""
    stop = asyncio.Event()

    async def body(ctx) -> None:
        ctx.extra["node"] = node
        await eval_worker.serve(ctx, config, promotion=PromotionConfig())

    task = asyncio.create_task(
        run_service(node, config.nats, config.run, body, stop=stop, install_signals=False)
    )
    return task, stop


async def stop_worker(task: asyncio.Task, stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def all_counted(store: EventStore, match_id: str, pairs: int, timeout: float) -> Matches:
    runner = ProjectionRunner(store, MatchesProjection(), RUN, use_snapshots=False)
    await runner.follow()
    try:
        return await runner.wait_for(
            lambda s: (m := s.get(match_id)) is not None and len(m.pairs_counted) >= pairs, timeout
        )
    finally:
        await runner.stop()


async def test_a_worker_killed_mid_unit_leaves_every_pair_counted_once(store, nats_settings, tmp_path):
    # The one shared consumer, made first with a short ack wait so the dead worker's unit
    # comes back within the test (the workers bind to it as it is).
    consumer = match_work_consumer(store.log, RUN)
    await consumer.open(ack_wait=3.0)
    await consumer.close()
    path, _ = write_tiny_loop(nats_settings, tmp_path, run=RUN,
                              promotion_config=str(ROOT / "config" / "promotion.yaml"))
    # as the supervisor does: the config in force recorded, the process told the run and server
    await store.append(ev.LoopStarted.new(RUN, by="test", **load_in_force(path).started_fields()))
    units = await schedule(store, "kill", SLOW, SLOW, max_pairs=12, per_unit=6)

    output = open(tmp_path / "worker-7.log", "wb")  # closed below
    cmd, child_env = child_command("evalworker", 7, RUN, nats_settings)
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **child_env},
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        async with Followed(store, "match.pair_played") as followed:

            async def first_pair_of_worker_7():
                return [p for p in followed.of("kill") if p.worker.endswith("evalworker-7")]

            first = await until(first_pair_of_worker_7, 25, "worker 7's first pair")
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        output.close()
    killed_unit = next(u for u in units if u.unit_id == first[0].unit_id)

    task, stop = start_worker(loop_config(nats_settings), "worker-b")
    try:
        state = await all_counted(store, "kill", 12, timeout=25)
    finally:
        await stop_worker(task, stop)

    match = state.matches["kill"]
    assert match.pairs_counted == frozenset(range(12))
    assert sum(match.pentanomial) == 12 and match.ignored_pairs == 0 and match.late_pairs == 0
    played = await pairs_played(store, "kill")
    assert sorted(p.pair_index for p in played) == list(range(12))  # each pair once in the log
    by_a = {p.pair_index for p in played if p.worker.endswith("evalworker-7")}
    by_b = {p.pair_index for p in played if p.worker == "worker-b"}
    assert by_a.isdisjoint(by_b) and by_a | by_b == set(range(12))
    in_unit = {pair.pair_index for pair in killed_unit.pairs}
    assert by_a & in_unit and in_unit - by_a  # killed mid-unit; the rest was played by worker b
    assert await work_left(store) == 0


async def test_completed_match_units_are_skipped_and_undecodable_ones_rejected(store, nats_settings):
    done = await schedule(store, "done", RANDOM, RANDOM, max_pairs=4, per_unit=2)
    await store.append(
        ev.MatchCompleted.new(
            RUN,
            match_id="done",
            verdict="accept",
            pairs=0,
            pentanomial=[0] * 5,
            elo=0.0,
            elo_ci95=0.0,
            llr=3.0,
            lower=-2.94,
            upper=2.94,
        )
    )
    garbage = await store.js.publish(names.subject(names.WORK, RUN, "match", "work.match_unit"), b"\xc1junk")
    await schedule(store, "live", RANDOM, RANDOM, max_pairs=2, per_unit=2)

    task, stop = start_worker(loop_config(nats_settings), "worker-s")
    try:
        await all_counted(store, "live", 2, timeout=20)

        async def settled():
            hb = await heartbeat(store, "worker-s")
            return hb if hb and hb.detail["units_done"] == 1 and hb.detail["units_rejected"] == 1 else None

        beat = await until(settled, 10, "the worker's heartbeat after the three kinds of unit")
    finally:
        await stop_worker(task, stop)

    assert beat.detail["units_skipped"] == len(done) == 2
    assert beat.detail["pairs_played"] == 2 and beat.roles == [MATCH_PLAYERS]
    assert [p.match_id for p in await pairs_played(store)] == ["live", "live"]
    [rejected] = await rejections(store)
    assert (rejected.stream, rejected.seq, rejected.handler) == (names.WORK, garbage.seq, MATCH_PLAYERS)
    assert rejected.payload_prefix == b"\xc1junk".hex() and rejected.reason
    assert await work_left(store) == 0


async def test_a_halted_loop_starts_no_match_game_until_resumed(store, nats_settings):
    await store.append(ev.LoopHalted.new(RUN, by="test", reason="halt before any unit"))
    units = await schedule(store, "halt", RANDOM, RANDOM, max_pairs=4, per_unit=2)
    published = time.time()
    config = loop_config(nats_settings)
    task, stop = start_worker(config, "worker-h")
    try:

        async def halted_a_while():
            hb = await heartbeat(store, "worker-h")
            late = hb is not None and hb.time >= published + 3 * config.health.interval_s
            return hb if late and hb.detail["halted"] == 1.0 else None

        beat = await until(halted_a_while, 15, "heartbeats of the halted worker")
        info = await store.js.consumer_info(names.WORK, names.durable(RUN, MATCH_PLAYERS))
        assert (info.num_pending, info.num_ack_pending) == (len(units), 0)  # none taken
        assert beat.detail["pairs_played"] == 0 and beat.detail["busy"] == 0.0
        assert await pairs_played(store) == []

        resumed = ev.LoopResumed.new(RUN, by="test")
        await store.append(resumed)
        state = await all_counted(store, "halt", 4, timeout=20)
    finally:
        await stop_worker(task, stop)
    assert state.matches["halt"].pairs_counted == frozenset(range(4))
    assert all(p.time >= resumed.time for p in await pairs_played(store))


async def test_model_players_are_fetched_once_and_a_corrupt_model_rejects_its_unit(store, nats_settings):
    async def register(model_id: str, seed: int, recorded_digest: str | None = None) -> None:
        net = build_network(GAME, TINY_NET, seed=seed)
        data = save_checkpoint(net, make_meta(net, game=GAME, model_id=model_id))
        digest = await put_object(store.log, names.OBJ_MODELS, names.model_object(model_id), data)
        await store.append(
            ev.CheckpointSaved.new(
                RUN,
                model_id=model_id,
                object_name=names.model_object(model_id),
                digest=recorded_digest or digest,
                generation=1,
                game=GAME.name,
            )
        )

    await register("ew-good", 1)
    await register("ew-bad", 2, recorded_digest="0" * 64)
    good = ev.PlayerSpec(kind="model", model_id="ew-good", simulations=4)
    bad = ev.PlayerSpec(kind="model", model_id="ew-bad", simulations=4)
    await schedule(store, "good", good, RANDOM, max_pairs=3, per_unit=3)
    [bad_unit] = await schedule(store, "bad", bad, RANDOM, max_pairs=2, per_unit=2)

    stop = asyncio.Event()
    worker = eval_worker.EvalWorker(store, RUN, loop_config(nats_settings), stop=stop, node="worker-m")
    task = asyncio.create_task(worker.run_until_stopped())
    try:
        async with Followed(store, "event.rejected") as followed:
            await all_counted(store, "good", 3, timeout=20)

            async def rejected_units():
                return followed.events

            [rejected] = await until(rejected_units, 10, "the corrupt model's unit rejected")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert worker.players.fetches == 1 and worker.players.cached == ["ew-good"]
    assert {p.match_id for p in await pairs_played(store)} == {"good"}
    assert "ew-bad" in rejected.reason and "digest" in rejected.reason
    assert rejected.subject == names.subject(names.WORK, RUN, "match", bad_unit.tag)
    assert await work_left(store) == 0


async def test_a_live_worker_keeps_its_unit_past_the_ack_wait(store, nats_settings):
    ack_wait = 1.0  # far shorter than the unit: only in-progress signals keep it
    consumer = match_work_consumer(store.log, RUN)
    await consumer.open(ack_wait=ack_wait)
    await consumer.close()
    # 12 pairs at 8,000 rollouts a move: several seconds on a fast idle machine (at SLOW's
    # 2,000 an idle 2-core machine played them in 1.4 s, inside 1.5 ack waits)
    await schedule(store, "long", LONG, LONG, max_pairs=12, per_unit=12)
    config = loop_config(nats_settings)
    taken_at = time.time()
    first = start_worker(config, "worker-1")
    second = None
    try:

        async def unit_taken():
            info = await store.js.consumer_info(names.WORK, names.durable(RUN, MATCH_PLAYERS))
            return info.num_ack_pending == 1

        await until(unit_taken, 15, "worker 1 holding the unit")
        second = start_worker(config, "worker-2")  # idle, pulling: it would get a redelivery
        await all_counted(store, "long", 12, timeout=25)
    finally:
        for task, stop in filter(None, (first, second)):
            await stop_worker(task, stop)
    played = await pairs_played(store, "long")
    assert played[-1].time - taken_at > 1.5 * ack_wait  # the unit outlasted the ack wait
    info = await store.js.consumer_info(names.WORK, names.durable(RUN, MATCH_PLAYERS))
    assert info.delivered.consumer_seq == 1  # one delivery: never redelivered while worker 1 lived
    assert sorted(p.pair_index for p in played) == list(range(12))
    assert {p.worker for p in played} == {"worker-1"}
    assert await work_left(store) == 0

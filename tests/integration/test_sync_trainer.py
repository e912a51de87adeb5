"""Sync and trainer against a real server, on tic-tac-toe at tiny scale.

Games played by the engine become GAMES records; sync turns them into shards whose samples
match those games, once even across a crash; the trainer creates generation 0, trains when
the threshold is crossed, stores a checkpoint that loads with its recorded digest, and runs
alone under its lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import numpy as np
import pytest

from engine.checkpoint import load_checkpoint
from engine.games import get_game
from engine.mcts import SearchSettings, UniformEvaluator
from engine.network import DEFAULT_TICTACTOE_NETWORK
from engine.samples import Samples, samples_from_records
from engine.selfplay import SelfplaySettings, play_games
from engine.train import TrainConfig
from handlers.loop import sync as sync_service
from handlers.loop import trainer as trainer_service
from handlers.loop.config import GameSpec, HealthSection, LoopConfig, SyncSection, TrainingSection
from handlers.loop.sync import PoolSync, record_of
from handlers.loop.trainer import LEASE, Trainer
from handlers.loop.training_plan import initial_model_id, plan_training
from handlers.runtime.service import run_service
from projections.models import ModelRegistry, ModelRegistryProjection
from projections.pool import Pool, PoolProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.games import GameFinished, pack_policies, policy_array
from streams.kv import Heartbeat, acquire_lease, get_value
from streams.objects import get_object, sha256
from streams.store import EventStore

pytestmark = pytest.mark.integration

RUN = "t1"
GAME = get_game("tictactoe")


def loop_config(nats_settings, *, per_shard: int = 8, threshold: int = 40, lr: float = 0.02):
    return LoopConfig(
        run=RUN,
        game=GameSpec(name="tictactoe"),
        nats=nats_settings,
        network=DEFAULT_TICTACTOE_NETWORK,
        sync=SyncSection(games_per_shard=per_shard, max_wait_s=0.5),
        training=TrainingSection(
            threshold_positions=threshold,
            window="fixed",
            window_positions=10_000,
            max_samples_per_position=4.0,
            torch_threads=1,
            check_every_steps=4,
            train=TrainConfig(steps=12, batch_size=32, lr=lr),
        ),
        health=HealthSection(interval_s=0.5),
    )


def play(n: int, seed: int) -> list:
    settings = SelfplaySettings(
        search=SearchSettings(simulations=8, dirichlet_fraction=0.25), games_in_flight=4
    )
    return list(play_games(GAME, UniformEvaluator(), settings, n, np.random.default_rng(seed)))


async def publish(store: EventStore, models: list[str], seed: int = 0) -> list[tuple[int, GameFinished]]:
    """One real tic-tac-toe game per entry of ``models``, played by that model; (seq, event)."""
    games = [
        GameFinished.new(
            RUN,
            game_id=f"g{seed}-{i}",
            game="tictactoe",
            moves=list(r.moves),
            **pack_policies(r.policies),
            root_values=list(r.root_values),
            outcome=r.outcome,
            model_id=model,
            stage="warmup",
            worker="w1",
        )
        for i, (r, model) in enumerate(zip(play(len(models), seed), models, strict=True))
    ]
    seqs = await store.append_many(games)
    return list(zip(seqs, games, strict=True))


async def following(store: EventStore, projection) -> ProjectionRunner:
    runner = ProjectionRunner(store, projection, RUN, use_snapshots=False)
    await runner.follow()
    return runner


async def drive(sync: PoolSync, done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Step the sync handler until ``done()`` (or fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "sync did not get there in time"
        await sync.step(timeout=0.2)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)  # polling the log with a deadline


async def events_of(store: EventStore, kind: type) -> list:
    return [s.event async for s in store.read(names.EVENTS) if isinstance(s.event, kind)]


def expected_samples(games: list[tuple[int, GameFinished]], model: str, first: int, last: int):
    records = [record_of(g) for s, g in games if g.model_id == model and first <= s <= last]
    return samples_from_records(GAME, records)


async def shard_samples(store: EventStore, shard) -> Samples:
    return Samples.from_bytes(await get_object(store.log, names.OBJ_POOL, shard.object_name, shard.digest))


# -- sync -----------------------------------------------------------------------------------


async def test_sync_writes_shards_whose_samples_match_the_games(store, nats_settings):
    config = loop_config(nats_settings)
    models = ["m0", "m1", "m0"] * 6  # 18 games: batches of 8, 8, then 2 after max_wait_s
    games = await publish(store, models[:9])
    poison_seq = (
        await store.js.publish(
            names.subject(names.GAMES, RUN, "selfplay", "game.finished"),
            b"\x93not an event",
            stream=names.GAMES,
        )
    ).seq
    games += await publish(store, models[9:], seed=1)
    pool = await following(store, PoolProjection())
    sync = PoolSync(store, RUN, config)
    await sync.open()
    try:
        await drive(sync, lambda: pool.state.games == 18)
    finally:
        await sync.close()
    state: Pool = pool.state
    assert len(state.shards) == 6 and state.ignored_batches == 0
    assert [(s.games_first_seq, s.games_last_seq) for s in state.shards[::2]] == [
        (games[0][0], games[7][0]),
        (games[8][0], games[15][0]),
        (games[16][0], games[17][0]),
    ]
    for shard in state.shards:
        got = await shard_samples(store, shard)
        want = expected_samples(games, shard.model_id, shard.games_first_seq, shard.games_last_seq)
        assert shard.positions == len(got) == len(want) > 0 and shard.stages == ("warmup",)
        assert np.array_equal(got.planes, want.planes)
        assert np.array_equal(got.policies, want.policies)
        assert np.array_equal(got.values, want.values)
        assert np.array_equal(got.searched, want.searched) and not np.array_equal(got.searched, got.values)
    assert state.positions == sum(len(policy_array(g)) for _, g in games)
    [rejected] = await events_of(store, ev.EventRejected)
    assert rejected.seq == poison_seq and rejected.handler == "sync"
    assert await sync.shell.consumer.lag() == 0
    await pool.stop()


class Crash(Exception):
    pass


@pytest.mark.parametrize("appends_before_crash", [1, 2])
async def test_a_crash_between_append_and_ack_does_not_duplicate_a_shard(
    log, store, nats_settings, appends_before_crash
):
    config = loop_config(nats_settings, per_shard=6)
    games = await publish(store, ["a", "b"] * 3)
    crashing = EventStore(log)  # the process that dies after its n-th pool append
    real_append, appended = crashing.append, []

    async def append_then_die(event, **kw):
        seq = await real_append(event, **kw)
        appended.append(event)
        if len(appended) == appends_before_crash:
            raise Crash()
        return seq

    crashing.append = append_then_die  # type: ignore[method-assign]
    first = PoolSync(crashing, RUN, config, ack_wait=1.0)
    await first.open()
    with pytest.raises(Crash):
        await drive(first, lambda: False)
    await first.close()

    pool = await following(store, PoolProjection())
    assert len(pool.state.shards) == appends_before_crash
    before = pool.state.shards[0]
    restarted = PoolSync(store, RUN, config, ack_wait=1.0)
    await restarted.open()
    assert restarted.resume == (games[0][0], games[-1][0])
    try:
        await drive(restarted, lambda: restarted.stats.batches == 1)
    finally:
        await restarted.close()
    state = await pool.wait_for(lambda s: s.games == 6)
    assert sorted(s.model_id for s in state.shards) == ["a", "b"]
    assert state.games == 6 and state.ignored_batches == 0
    assert len(await events_of(store, ev.PoolBatchSynced)) == 2
    assert state.shards[0] == before  # its object was not replaced: the digest still holds
    await shard_samples(store, state.shards[0])
    assert restarted.stats.shards == 2 - appends_before_crash
    assert await restarted.shell.consumer.lag() == 0
    await pool.stop()


async def _true(value: bool) -> bool:
    return value


# -- trainer --------------------------------------------------------------------------------


async def test_trainer_creates_generation_zero_then_trains_on_the_threshold(store, nats_settings):
    config = loop_config(nats_settings)
    registry = await following(store, ModelRegistryProjection())
    stop = asyncio.Event()

    def body(name, module):
        async def serve(ctx):
            ctx.extra["node"] = f"test-{name}"
            await module.serve(ctx, config)

        return serve

    services = [
        asyncio.create_task(
            run_service(name, nats_settings, RUN, body(name, module), stop=stop, install_signals=False)
        )
        for name, module in (("sync", sync_service), ("trainer", trainer_service))
    ]
    try:
        gen0 = initial_model_id(RUN)
        await registry.wait_for(lambda s: gen0 in s.models, timeout=15)
        await publish(store, ["x"] * 16)
        state: ModelRegistry = await registry.wait_for(
            lambda s: any(m.generation == 1 for m in s.models.values()), timeout=15
        )
    finally:
        stop.set()
        await asyncio.gather(*services)
    beat = await get_value(store.log, names.KV_HEARTBEATS, names.heartbeat_key(RUN, "test-trainer"))
    [child] = [m for m in state.models.values() if m.generation == 1]
    assert child.parent == gen0 and child.source == "trainer"
    data = await get_object(store.log, names.OBJ_MODELS, child.object_name, child.digest)
    assert sha256(data) == child.digest
    net, meta = load_checkpoint(data, expect_game=GAME, expect_arch=DEFAULT_TICTACTOE_NETWORK)
    assert (meta.model_id, meta.generation, meta.parent_id) == (child.model_id, 1, gen0)
    [started] = await events_of(store, ev.TrainingStarted)
    saved = [e for e in await events_of(store, ev.CheckpointSaved) if e.generation == 1]
    assert [e.causation_id for e in saved] == [started.id]
    pool = await following(store, PoolProjection())
    new = pool.state.trainings[0].new_positions
    assert new >= config.training.threshold_positions
    assert saved[0].samples_trained <= config.training.max_samples_per_position * new
    assert saved[0].samples_trained == started.samples_planned
    assert beat is not None
    heartbeat = msgspec.msgpack.decode(beat, type=Heartbeat)
    assert heartbeat.roles == ["trainer"] and heartbeat.model_id == child.model_id
    assert set(heartbeat.detail) == {"training_steps", "policy_loss", "value_loss", "samples_per_s"}
    assert heartbeat.detail["training_steps"] == saved[0].samples_trained // 32
    await registry.stop()
    await pool.stop()


async def synced_pool(store: EventStore, config: LoopConfig, models: list[str]) -> None:
    pool = await following(store, PoolProjection())
    await publish(store, models)
    sync = PoolSync(store, RUN, config)
    await sync.open()
    try:
        await drive(sync, lambda: pool.state.games == len(models))
    finally:
        await sync.close()
        await pool.stop()


async def test_two_trainers_only_the_lease_holder_trains(store, nats_settings):
    config = loop_config(nats_settings)
    await synced_pool(store, config, ["x"] * 16)
    stops = [asyncio.Event(), asyncio.Event()]
    trainers = [Trainer(store, RUN, config, stop=s, node=f"tr{i}", retry_s=0.2) for i, s in enumerate(stops)]
    tasks = [asyncio.create_task(t.run_until_stopped()) for t in trainers]
    registry = await following(store, ModelRegistryProjection())
    try:
        await until(lambda: _true(any(t.trained for t in trainers)))
        [leader] = [t for t in trainers if t.leased]
        follower = trainers[1 - trainers.index(leader)]
        assert len(leader.trained) == 1 and follower.trained == []
        stops[trainers.index(leader)].set()  # the leader stops and releases the lease
        await until(lambda: _true(follower.leased))
    finally:
        for s in stops:
            s.set()
        await asyncio.gather(*tasks)
    assert len(await events_of(store, ev.TrainingStarted)) == 1
    assert sorted(e.generation for e in await events_of(store, ev.CheckpointSaved)) == [0, 1]
    await registry.stop()


async def test_an_open_training_is_run_again_after_a_restart(store, nats_settings):
    config = loop_config(nats_settings)
    stop = asyncio.Event()
    first = Trainer(store, RUN, config, stop=stop, node="first")
    registry = await following(store, ModelRegistryProjection())
    task = asyncio.create_task(first.run_until_stopped())
    await registry.wait_for(lambda s: bool(s.models), timeout=15)
    stop.set()
    await task
    await synced_pool(store, config, ["x"] * 16)
    pool = await following(store, PoolProjection())
    started = plan_training(pool.state, registry.state, config.training, run=RUN, trainer="first")
    assert started is not None
    await store.append(started)  # ... and the trainer that appended it died
    await pool.wait_for(lambda s: s.open_training is not None)
    stop = asyncio.Event()
    second = Trainer(store, RUN, config, stop=stop, node="second")
    task = asyncio.create_task(second.run_until_stopped())
    try:
        await pool.wait_for(lambda s: s.open_training is None, timeout=15)
    finally:
        stop.set()
        await task
    assert pool.state.trainings[-1].outcome == "checkpoint"
    assert len(await events_of(store, ev.TrainingStarted)) == 1
    [saved] = [e for e in await events_of(store, ev.CheckpointSaved) if e.generation == 1]
    assert saved.causation_id == started.id and second.trained == [saved.model_id]
    await registry.stop()
    await pool.stop()


async def test_a_diverged_training_records_a_critical_health_failure(store, nats_settings):
    config = loop_config(nats_settings, lr=1e30)
    await synced_pool(store, config, ["x"] * 16)
    pool = await following(store, PoolProjection())
    stop = asyncio.Event()
    trainer = Trainer(store, RUN, config, stop=stop, node="t")
    task = asyncio.create_task(trainer.run_until_stopped())
    try:
        await pool.wait_for(lambda s: bool(s.trainings) and not s.trainings[-1].open, timeout=15)
    finally:
        stop.set()
        await task
    assert pool.state.trainings[-1].outcome == "diverged"
    [failure] = await events_of(store, ev.HealthCheckFailed)
    assert (failure.check, failure.severity) == ("nan_loss", "critical")
    assert [e.generation for e in await events_of(store, ev.CheckpointSaved)] == [0]
    await pool.stop()


async def test_a_trainer_that_loses_its_lease_stops_and_takes_it_again(log, store, nats_settings):
    fast = msgspec.structs.replace(nats_settings, lock_ttl_s=0.9)  # renew every 0.3 s
    config = msgspec.structs.replace(loop_config(nats_settings), nats=fast)
    registry = await following(store, ModelRegistryProjection())
    stop = asyncio.Event()
    trainer = Trainer(store, RUN, config, stop=stop, node="t", retry_s=0.2)
    task = asyncio.create_task(trainer.run_until_stopped())
    try:
        await registry.wait_for(lambda s: bool(s.models), timeout=15)
        locks = await log.js.key_value(names.KV_LOCKS)
        await locks.delete(names.lock_key(RUN, LEASE))  # expired, say, and taken by another
        thief = await acquire_lease(log, RUN, LEASE, "thief")
        await until(lambda: _true(not trainer.leased))
        await thief.release()
        await until(lambda: _true(trainer.leased))
        await publish(store, ["x"] * 16)
        sync = PoolSync(store, RUN, config)
        await sync.open()
        try:
            await drive(sync, lambda: bool(trainer.trained))
        finally:
            await sync.close()
    finally:
        stop.set()
        await task
    assert [e.generation for e in await events_of(store, ev.CheckpointSaved)] == [0, 1]
    await registry.stop()

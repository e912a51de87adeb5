"""Sync as a real child process, killed with SIGKILL at random points many times over: every
valid game still ends in exactly one pool shard (none lost, none twice), poison in none.

The kills land while games are held unacknowledged, while a batch is flushed, or between
batches; the random points come from a fixed seed (``SYNC_KILL_SEED`` draws others).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys

import numpy as np
import pytest

from engine.games import get_game
from engine.mcts import SearchSettings, UniformEvaluator
from engine.selfplay import SelfplaySettings, play_games
from handlers.loop.config import load_in_force
from handlers.loop.process import child_command
from projections.pool import PoolProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.games import GameFinished, pack_policies
from streams.store import EventStore
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "k1"
KILLS = 12
SEED = int(os.environ.get("SYNC_KILL_SEED", "20240613"))
MODELS = ("m0", "m1", "m2")


def finished_games(n: int, rng: random.Random) -> list[GameFinished]:
    """``n`` real tic-tac-toe games (cheap searches), each by one of ``MODELS``."""
    settings = SelfplaySettings(search=SearchSettings(simulations=4), games_in_flight=8)
    records = play_games(get_game("tictactoe"), UniformEvaluator(), settings, n,
                         np.random.default_rng(rng.randrange(2**32)))
    return [
        GameFinished.new(RUN, game_id=f"g{i}", game="tictactoe", moves=list(r.moves),
                         **pack_policies(r.policies), root_values=list(r.root_values),
                         outcome=r.outcome, model_id=rng.choice(MODELS), stage="main", worker="w0")
        for i, r in enumerate(records)
    ]


async def delivered_up_to(store: EventStore) -> int:
    """The last GAMES sequence the sync consumer has handed out (0 before it exists)."""
    try:
        info = await store.js.consumer_info(names.GAMES, names.durable(RUN, "sync"))
    except Exception:  # noqa: BLE001 - not made yet by the starting process
        return 0
    return int(info.delivered.stream_seq or 0)


async def test_sync_killed_at_random_points_loses_no_game_and_syncs_none_twice(
    tmp_path, store, nats_settings
):
    rng = random.Random(SEED)
    path, config = write_tiny_loop(nats_settings, tmp_path, RUN,
                                   sync={"games_per_shard": 5, "max_wait_s": 0.3})
    await store.append(ev.LoopStarted.new(RUN, **load_in_force(path).started_fields()))
    argv, env = child_command("sync", 0, RUN, config.nats)
    games = iter(finished_games(8 * (KILLS + 1), rng))
    valid: dict[int, GameFinished] = {}
    poison: list[int] = []
    log_file = open(tmp_path / "sync.log", "ab")  # noqa: SIM115 - closed below

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(*argv, env={**os.environ, **env}, stdout=log_file,
                                                    stderr=log_file, stdin=asyncio.subprocess.DEVNULL)

    async def publish_burst() -> int:
        burst = [next(games) for _ in range(rng.randint(1, 8))]
        for seq, game in zip(await store.append_many(burst), burst, strict=True):
            valid[seq] = game
        if rng.random() < 0.3:  # now and then a poison message among them
            subject = names.subject(names.GAMES, RUN, "selfplay", "game.finished")
            poison.append((await store.js.publish(subject, b"\x93junk", stream=names.GAMES)).seq)
        return max(max(valid), max(poison, default=0))

    try:
        for _ in range(KILLS):
            proc = await spawn()
            try:
                last = await publish_burst()
                await until(lambda last=last: _at_least(delivered_up_to(store), last), 30,
                            "the sync process fetching the burst", poll=0.02)
                await asyncio.sleep(rng.uniform(0.0, 0.5))  # the kill point: held, flushing or idle
            finally:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            assert proc.returncode == -signal.SIGKILL, "sync ended before it was killed: see sync.log"
        proc = await spawn()  # the last one is left alone to finish
        try:
            await publish_burst()
            pool = ProjectionRunner(store, PoolProjection(), RUN, use_snapshots=False)

            async def all_synced() -> bool:
                return (await pool.catch_up()).games >= len(valid)

            await until(all_synced, 60, f"all {len(valid)} valid games in shards (see sync.log)")
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    finally:
        log_file.close()

    synced = [s.event async for s in store.read(names.EVENTS) if isinstance(s.event, ev.PoolBatchSynced)]
    assert len({e.shard_id for e in synced}) == len(synced), "a shard recorded twice"
    holders = {seq: [e.shard_id for e in synced if e.models == [game.model_id]
                     and e.games_first_seq <= seq <= e.games_last_seq]
               for seq, game in valid.items()}
    assert {seq: h for seq, h in holders.items() if len(h) != 1} == {}, "games in no shard or in two"
    assert sum(e.games for e in synced) == len(valid)  # each shard holds exactly its range's games
    rejected = [s.event async for s in store.read(names.EVENTS) if isinstance(s.event, ev.EventRejected)]
    assert sorted({r.seq for r in rejected if r.stream == names.GAMES}) == sorted(poison)
    print(f"seed {SEED}: {KILLS} kills, {len(valid)} games, {len(synced)} shards, {len(poison)} poison",
          file=sys.stderr)


async def _at_least(value, target: int) -> bool:
    return await value >= target

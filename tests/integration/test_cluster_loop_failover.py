"""The whole loop on a real 3-server JetStream cluster (R3, per-role permissions on) survives
its EVENTS stream leader being killed with SIGKILL (issue 19).

The tiny tic-tac-toe loop of the end-to-end test runs against the cluster (its ``nats:``
section: the three URLs, the admin login, which the loop's processes share, R3, fast pings),
started as a user starts it, until it has played games and trained a checkpoint. The server
leading EVENTS is killed; the loop must ride the election out (no process crashes) and go on:
games, a pool batch and a trained checkpoint stored after the kill. The killed server is
restarted and catches up, the loop is stopped, and the log is checked: sequences contiguous,
every game the selfplay worker reported acknowledged is stored, every event's reference
resolves, no game or event stored twice, every game in exactly one pool batch, and no
checkpoint evaluated twice.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from streams import names
from streams.connection import connect
from streams.events import (
    CheckpointSaved,
    MatchCompleted,
    MatchPairPlayed,
    MatchScheduled,
    PoolBatchSynced,
    ProcessRestarted,
    TrainingStarted,
)
from streams.games import GameFinished
from streams.kv import alive_nodes
from streams.store import EventStore, Stored
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
RUN = "lf"
PROMOTION = {  # the e2e test's promotion, with short matches
    "simulations": 8,
    "sprt": {"elo0": 0.0, "elo1": 60.0, "alpha": 0.1, "beta": 0.1},
    "elo_threshold": 0.0,
    "max_pairs": 16,
    "pairs_per_unit": 4,
    "regression": {"previous_champions": 0, "reference_players": [{"kind": "random"}],
                   "max_pairs": 4, "significance": 0.001},
    "watch": {"enabled": False},
}


def loop_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``scripts/unified_ai_loop.py ARGS`` as a user runs it."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "unified_ai_loop.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def cluster_loop_config(nats_cluster, tmp_path: Path) -> Path:
    """The e2e tests' tiny loop with its ``nats:`` section on the cluster."""
    admin = nats_cluster.settings_for("admin")
    promotion = tmp_path / "promotion.yaml"
    promotion.write_text(yaml.safe_dump(PROMOTION))
    path, _ = write_tiny_loop(
        admin, tmp_path, RUN, promotion_config=str(promotion),
        nats={"replicas": 3, "ping_interval_s": admin.ping_interval_s,
              "max_outstanding_pings": admin.max_outstanding_pings},
    )
    return path


async def stored(store: EventStore, stream: str) -> list[Stored]:
    return [s async for s in store.read(stream, subject_filter=names.run_filter(stream, RUN))]


def trained_checkpoints(log: list[Stored]) -> list[Stored]:
    """The checkpoints the trainer saved (not the initial model the loop starts from)."""
    return [s for s in log if isinstance(s.event, CheckpointSaved) and s.event.source == "trainer"]


@dataclass
class AckedGames:
    """The most games each selfplay worker has reported acknowledged (its heartbeat's
    ``games``, counted once ``append_many`` returned), sampled while the loop runs."""

    store: EventStore
    most: dict[str, int] = field(default_factory=dict)

    async def sample(self) -> None:
        try:
            beats = await alive_nodes(self.store.log, RUN)
        except Exception:  # noqa: BLE001 - the bucket may be electing: the next sample reads it
            return
        for beat in beats:
            if "selfplay" in beat.roles:
                self.most[beat.node] = max(self.most.get(beat.node, 0), int(beat.detail.get("games", 0)))


async def trained(store: EventStore, acked: AckedGames) -> bool:
    """Games played and a checkpoint trained on them."""
    await acked.sample()
    return bool(await stored(store, names.GAMES)) and bool(
        trained_checkpoints(await stored(store, names.EVENTS)))


async def progressed(store: EventStore, after: float, acked: AckedGames) -> list[Stored] | None:
    """The EVENTS stored after ``after`` (server time), once games, a pool batch and a trained
    checkpoint are among what was stored since."""
    await acked.sample()
    games = [s for s in await stored(store, names.GAMES) if s.time > after]
    events = [s for s in await stored(store, names.EVENTS) if s.time > after]
    batches = [s for s in events if isinstance(s.event, PoolBatchSynced)]
    return events if games and batches and trained_checkpoints(events) else None


async def caught_up(nats_cluster, name: str) -> bool:
    placed = await nats_cluster.placement(names.EVENTS)
    follower = {r.name: r for r in placed.followers}.get(name)
    return placed.leader == name or (follower is not None and follower.current and follower.lag == 0)


async def test_loop_rides_out_the_events_leader_killed(nats_cluster, tmp_path):
    t0 = time.monotonic()
    config = cluster_loop_config(nats_cluster, tmp_path)
    started = await asyncio.to_thread(loop_script, "--start", "--config", str(config))
    assert started.returncode == 0, started.stdout + started.stderr
    admin = await connect(nats_cluster.settings_for("admin"), name="test-admin", ensure=False)
    store = EventStore(admin)
    acked = AckedGames(store)
    figures: dict[str, float] = {}
    try:
        await until(lambda: trained(store, acked), 60, "games and a first trained checkpoint")
        figures["games before the kill"] = len(await stored(store, names.GAMES))
        leader = await nats_cluster.leader(names.EVENTS)
        figures["kill at s"] = time.monotonic() - t0
        killed_at = time.time()
        nats_cluster.kill(leader)
        after = await until(lambda: progressed(store, killed_at, acked), 60,
                            "games, a pool batch and a trained checkpoint after the kill")
        # the first event any loop process got stored after the kill: the failover as the loop
        # saw it (plus at most its own pace of writing)
        figures["first EVENTS append after the kill s"] = min(s.time for s in after) - killed_at
        figures["progress seen at s"] = time.monotonic() - t0
        assert (await nats_cluster.placement(names.EVENTS)).leader != nats_cluster.servers[leader].name
        nats_cluster.restart(leader)
        await until(lambda: caught_up(nats_cluster, nats_cluster.servers[leader].name), 20,
                    "the restarted server to catch up")
        figures["restarted and caught up at s"] = time.monotonic() - t0
    finally:
        stopped = await asyncio.to_thread(loop_script, "--stop", "--config", str(config), timeout=120)
    try:
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        figures["stopped at s"] = time.monotonic() - t0
        games, events = await stored(store, names.GAMES), await stored(store, names.EVENTS)
        figures["games after the kill"] = sum(1 for s in games if s.time > killed_at)
        check_no_process_crashed(events)
        check_contiguous_and_once(games, events)
        check_acknowledged_games_stored(games, acked)
        check_references_resolve(events)
        check_every_game_in_one_batch(games, events)
        check_no_checkpoint_evaluated_twice(events)
    finally:
        await admin.close()
        print(", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))


def check_no_process_crashed(events: list[Stored]) -> None:
    restarts = [s.event.process for s in events if isinstance(s.event, ProcessRestarted)]
    assert not restarts, f"processes crashed and were restarted: {Counter(restarts)}"


def check_contiguous_and_once(games: list[Stored], events: list[Stored]) -> None:
    for stream, log in ((names.GAMES, games), (names.EVENTS, events)):
        assert [s.seq for s in log] == list(range(1, len(log) + 1)), f"{stream}: a sequence is missing"
        assert len({s.event.id for s in log}) == len(log), f"{stream}: an event is stored twice"
    game_ids = Counter(s.event.game_id for s in games if isinstance(s.event, GameFinished))
    assert len(game_ids) == len(games) and max(game_ids.values()) == 1, "a game is stored twice"


def check_acknowledged_games_stored(games: list[Stored], acked: AckedGames) -> None:
    assert acked.most, "no selfplay heartbeat was read"
    by_worker = Counter(s.event.worker for s in games if isinstance(s.event, GameFinished))
    for worker, reported in acked.most.items():
        assert by_worker[worker] >= reported, f"{worker}: {reported} acknowledged, {by_worker[worker]} stored"


def check_references_resolve(events: list[Stored]) -> None:
    """Each process writes an event only after what it refers to was acknowledged: a
    reference that does not resolve is an acknowledged event lost."""
    log = [s.event for s in events]
    shards = {e.shard_id for e in log if isinstance(e, PoolBatchSynced)}
    models = {e.model_id for e in log if isinstance(e, CheckpointSaved)}
    matches = {e.match_id for e in log if isinstance(e, MatchScheduled)}
    for e in log:
        if isinstance(e, TrainingStarted):
            assert set(e.shards) <= shards and e.parent_model in models, e
        elif isinstance(e, CheckpointSaved) and e.source == "trainer":
            assert e.parent_model in models, e
        elif isinstance(e, MatchScheduled):
            assert e.candidate.kind != "model" or e.candidate.model_id in models, e
        elif isinstance(e, (MatchPairPlayed, MatchCompleted)):
            assert e.match_id in matches, e


def check_every_game_in_one_batch(games: list[Stored], events: list[Stored]) -> None:
    """Pool batches cover GAMES from 1 without gap or overlap, each counting its range's games."""
    counted: Counter[tuple[int, int]] = Counter()
    for e in (s.event for s in events):
        if isinstance(e, PoolBatchSynced):
            counted[(e.games_first_seq, e.games_last_seq)] += e.games
    ranges = sorted(counted)
    assert ranges and ranges[0][0] == 1 and ranges[-1][1] <= len(games)
    for (_, last), (first, _) in zip(ranges, ranges[1:], strict=False):
        assert first == last + 1, f"pool batches overlap or leave a gap: {ranges}"
    for (first, last), n in counted.items():
        assert n == last - first + 1, f"batch {first}..{last} counts {n} games"


def check_no_checkpoint_evaluated_twice(events: list[Stored]) -> None:
    """One match per (candidate, opponent, purpose), each pair and each verdict once."""
    log = [s.event for s in events]
    scheduled = [e for e in log if isinstance(e, MatchScheduled)]
    assert scheduled, "no match was scheduled"
    keys = Counter((e.candidate.model_id, e.opponent.label, e.purpose) for e in scheduled)
    assert max(keys.values()) == 1, f"a checkpoint evaluated twice: {keys}"
    assert len({e.match_id for e in scheduled}) == len(scheduled), "a match scheduled twice"
    pairs = Counter((e.match_id, e.pair_index) for e in log if isinstance(e, MatchPairPlayed))
    assert not pairs or max(pairs.values()) == 1, "a pair counted twice"
    completed = Counter(e.match_id for e in log if isinstance(e, MatchCompleted))
    assert not completed or max(completed.values()) == 1, "a match decided twice"
    checkpoints = Counter(e.model_id for e in log if isinstance(e, CheckpointSaved))
    assert max(checkpoints.values()) == 1, "a checkpoint saved twice"

"""The whole loop, end to end, on tic-tac-toe at toy scale against a real nats-server.

start → games → synced batch → training → checkpoint → match → promotion; halt (no new
game.finished once every selfplay worker reports paused) → resume → games again; kill -9 of a
handler (restarted; nothing lost or duplicated); rollback to the first promotion; stop; start
again (same champion, same pool, no repeated promotion). The script entry points are run as a
user runs them, and the metrics are scraped from the real endpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from projections.models import ModelRegistryProjection, lineage
from projections.pool import PoolProjection, training_window
from projections.runner import ProjectionRunner, state_as_of
from streams import names
from streams.kv import alive_nodes
from streams.server import free_port
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]

PROMOTION = {
    "simulations": 8,
    "sprt": {"elo0": 0.0, "elo1": 60.0, "alpha": 0.1, "beta": 0.1},
    "elo_threshold": 0.0,
    "max_pairs": 40,
    "pairs_per_unit": 4,
    "regression": {"previous_champions": 0, "reference_players": [{"kind": "random"}],
                   "max_pairs": 8, "significance": 0.001},
    "watch": {"enabled": False},
}


def script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


async def tags(store, stream=names.EVENTS, run="e2e") -> list:
    return [s.event async for s in store.read(stream, subject_filter=names.run_filter(stream, run))]


def child_pids(name: str, run: str) -> list[int]:
    """Loop processes ``name`` of ``run`` (``python -m handlers.loop.process NAME --run RUN``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        runs = [cmd[i + 1] for i, arg in enumerate(cmd[:-1]) if arg == b"--run"]
        if b"handlers.loop.process" in cmd and name.encode() in cmd and runs == [run.encode()]:
            pids.append(int(entry.name))
    return pids


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


async def test_the_whole_loop(store, nats_settings, tmp_path):
    promo = tmp_path / "promotion.yaml"
    promo.write_text(yaml.safe_dump(PROMOTION))
    metrics_port = free_port()
    config, cfg = write_tiny_loop(
        nats_settings, tmp_path, run="e2e",
        promotion_config=str(promo), metrics={"port": metrics_port},
    )
    started = script("unified_ai_loop.py", "--start", "--config", str(config))
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout and "logs in" in started.stdout
    try:
        await _run_scenario(store, cfg, config, metrics_port)
    finally:
        stopped = script("unified_ai_loop.py", "--stop", "--config", str(config), timeout=180)
        print(stopped.stdout, stopped.stderr)


async def _run_scenario(store, cfg, config: Path, metrics_port: int) -> None:
    registry = ProjectionRunner(store, ModelRegistryProjection(), "e2e")
    await registry.follow()

    # 1. start → games → batch → training → checkpoint → match → promotion
    await registry.wait_for(lambda s: any(not p.initial for p in s.promotions), timeout=300)
    kinds = Counter(e.tag for e in await tags(store))
    for tag in ("loop.started", "pool.batch_synced", "training.started", "checkpoint.saved",
                "match.scheduled", "match.pair_played", "match.completed", "candidate.promoted"):
        assert kinds[tag] >= 1, f"no {tag} in {kinds}"
    first_promotion = registry.state.promotions[0]  # generation 0, the first champion
    promoted_model = next(p for p in registry.state.promotions if not p.initial).model_id

    # metrics from the real endpoint follow the projections
    text = await until(lambda: _scrape_when(metrics_port, "jetzero_champion_generation"), 60,
                       "metrics")
    for metric in ("jetzero_games_total", "jetzero_pool_positions", "jetzero_halted",
                   "jetzero_consumer_lag", "jetzero_process_restarts_total"):
        assert metric in text

    # 2. halt: every selfplay worker pauses; then no game.finished while halted
    halted = script("unified_ai_loop.py", "--halt", "--reason", "e2e", "--config", str(config))
    assert halted.returncode == 0 and "halted" in halted.stdout

    async def workers_paused():
        beats = [b for b in await alive_nodes(store.log, "e2e") if "selfplay" in b.roles]
        return beats and all(b.detail.get("paused") == 1.0 for b in beats)

    await until(workers_paused, 30, "selfplay workers to pause")
    games_at_pause = await store.last_seq(names.GAMES)
    beat_at_pause = max(b.time for b in await alive_nodes(store.log, "e2e"))

    async def two_more_beats():
        beats = [b for b in await alive_nodes(store.log, "e2e") if "selfplay" in b.roles]
        return all(b.time > beat_at_pause + 2 * cfg.health.interval_s for b in beats)

    await until(two_more_beats, 30, "heartbeats while paused")
    assert await store.last_seq(names.GAMES) == games_at_pause
    assert "jetzero_halted" in scrape(metrics_port)

    resumed = script("unified_ai_loop.py", "--resume", "--config", str(config))
    assert resumed.returncode == 0, resumed.stderr

    async def more_games():
        return await store.last_seq(names.GAMES) > games_at_pause

    await until(more_games, 60, "games after resume")

    # 3. kill -9 of a handler mid-run: restarted, recorded, nothing lost or duplicated
    [sync_pid] = child_pids("sync", "e2e")
    os.kill(sync_pid, signal.SIGKILL)

    async def restarted():
        return any(e.tag == "process.restarted" and e.process == "sync" for e in await tags(store))

    await until(restarted, 60, "sync restart")
    pool = ProjectionRunner(store, PoolProjection(), "e2e")
    await pool.follow()
    games_now = await store.last_seq(names.GAMES)
    await pool.wait_for(lambda s: max((sh.games_last_seq for sh in s.shards), default=0)
                        >= games_now - 64, timeout=90)
    await pool.stop()

    # 4. rollback to the first promotion (while the loop runs)
    rolled = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "promotion", "rollback", "--to",
         str(first_promotion.seq), "--config", str(config)],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    state = await registry.wait_for(lambda s: bool(s.rollbacks), timeout=30)
    assert state.champion.model_id == first_promotion.model_id
    assert lineage(state)[-1].model_id == first_promotion.model_id
    assert promoted_model in state.reverted_models
    # the games of reverted models leave the training window
    pool = ProjectionRunner(store, PoolProjection(), "e2e")
    await pool.catch_up()
    window = training_window(pool.state, state, cfg.training)
    assert window and not any(sh.model_id in state.reverted_models for sh in window)
    assert any(sh.model_id in state.reverted_models for sh in pool.state.shards)

    # every game id once; every checkpoint evaluated once; no model promoted twice
    games = await tags(store, names.GAMES)
    assert len({g.game_id for g in games}) == len(games)
    events = await tags(store)
    gate_matches = Counter(e.candidate.model_id for e in events
                           if e.tag == "match.scheduled" and e.purpose == "gate")
    assert gate_matches and max(gate_matches.values()) == 1
    promoted = Counter(e.model_id for e in events if e.tag == "candidate.promoted")
    assert max(promoted.values()) == 1
    await registry.stop()

    # 5. stop, start again: it continues from the log — the champion and the pool as they were
    #    at the stop, and no promotion repeated
    stopped = script("unified_ai_loop.py", "--stop", "--config", str(config), timeout=180)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    status = script("unified_ai_loop.py", "--status", "--json", "--config", str(config))
    assert status.returncode == 0 and '"state":"stopped"' in status.stdout
    at_stop = await state_as_of(store, ModelRegistryProjection(), "e2e")
    pool_at_stop = await state_as_of(store, PoolProjection(), "e2e")
    again = script("unified_ai_loop.py", "--start", "--config", str(config))
    assert again.returncode == 0, again.stderr
    twice = script("unified_ai_loop.py", "--start", "--config", str(config))
    assert "already running" in twice.stdout
    starts = [s.seq async for s in store.read(subject_filter=names.tag_filter(
        names.EVENTS, "e2e", "loop.started"))]
    assert len(starts) == 2
    registry_at_start, _ = await state_as_of(store, ModelRegistryProjection(), "e2e", seq=starts[-1])
    pool_at_start, _ = await state_as_of(store, PoolProjection(), "e2e", seq=starts[-1])
    assert registry_at_start.champion == at_stop[0].champion
    assert pool_at_start.positions == pool_at_stop[0].positions
    promoted = Counter(e.model_id for e in await tags(store) if e.tag == "candidate.promoted")
    assert max(promoted.values()) == 1


async def _scrape_when(port: int, needle: str):
    try:
        text = await asyncio.to_thread(scrape, port)
    except OSError:
        return None
    return text if needle in text else None

"""Selfplay games/s through a 3-server JetStream cluster (R3, permissions on) with 1, 2 and 3
node agents connected to one server, tic-tac-toe with a tiny net (the test suite's scale).

    .venv/bin/python -m bench.cluster_agents [--seconds 20]

For ``bench/cluster.py`` (``games_per_s``). Each agent runs in this process on its own node
login; the figure is game.finished events stored per second over the measuring window, after
every agent has published its first game.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import yaml

from handlers.cluster.agent import AgentOptions, run_agent
from handlers.cluster.credentials import role_file
from handlers.cluster.servers import LocalCluster
from handlers.loop.checkpoints import create_initial_model
from handlers.loop.config import load_in_force
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.config import NatsSettings
from streams.connection import connect
from streams.store import EventStore

RUN = "bench"


def _settings(cluster: LocalCluster, login: str, url: str | None = None) -> NatsSettings:
    return NatsSettings(url=url or ",".join(cluster.urls), replicas=3,
                        credentials=str(role_file(cluster.credentials_dir, login)),
                        ping_interval_s=1.0, max_outstanding_pings=2)


def _loop_file(tmp: Path, settings: NatsSettings) -> Path:
    path = tmp / "loop.yaml"
    path.write_text(yaml.safe_dump({
        "run": RUN, "game": {"name": "tictactoe"},
        "nats": {"url": settings.url, "credentials": settings.credentials, "replicas": 3},
        "network": {"blocks": 1, "channels": 16, "value_hidden": 16},
        "selfplay": {"workers": 1, "games_in_flight": 16, "torch_threads": 1},
        "curriculum": [{"name": "main", "simulations": 16, "temperature_moves": 3}],
        "health": {"interval_s": 1.0, "min_free_disk_gb": 0.0},
        "supervisor": {"log_dir": str(tmp / "logs")},
    }))
    return path


async def _games(store: EventStore) -> int:
    return (await store.stream_state(names.GAMES)).messages


async def games_per_s(agents: int, seconds: float, tmp: Path) -> float:
    """Games/s of ``agents`` agents on server 0 of a fresh 3-server cluster."""
    cluster = LocalCluster.on_free_ports(tmp / f"c{agents}")
    cluster.nodes = {f"a{i}": ["selfplay"] for i in range(agents)}
    cluster.start()
    try:
        admin = await connect(_settings(cluster, "admin"), name="bench-admin")
        store = EventStore(admin)
        in_force = load_in_force(_loop_file(tmp, _settings(cluster, "admin")))
        await store.append(ev.LoopStarted.new(RUN, by="bench", **in_force.started_fields()))
        registry = ProjectionRunner(store, ModelRegistryProjection(), RUN)
        await registry.follow()
        await create_initial_model(store, RUN, in_force.loop, registry)
        await registry.stop()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(run_agent(_settings(cluster, f"node-a{i}", cluster.urls[0]), RUN,
                                               AgentOptions(name=f"a{i}", roles=("selfplay",)), stop=stop))
                 for i in range(agents)]
        workers = {f"a{i}-selfplay" for i in range(agents)}
        while True:  # every agent has joined and published a game
            seen = {s.event.worker async for s in store.read(names.GAMES, subject_filter=names.run_filter(
                names.GAMES, RUN)) if hasattr(s.event, "worker")}
            if workers <= seen:
                break
            await asyncio.sleep(0.5)
        start_games, start = await _games(store), time.monotonic()
        await asyncio.sleep(seconds)  # the measuring window
        rate = (await _games(store) - start_games) / (time.monotonic() - start)
        stop.set()
        await asyncio.gather(*tasks)
        await admin.close()
        return rate
    finally:
        cluster.stop(timeout=5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.agents:
            rate = asyncio.run(games_per_s(n, args.seconds, Path(tmp)))
            print(f"agents={n} games_per_s={rate:.1f} ({args.seconds:.0f} s window, tic-tac-toe, "
                  f"16 sims, 1 torch thread each)", flush=True)


if __name__ == "__main__":
    main()

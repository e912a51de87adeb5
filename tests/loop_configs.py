"""Tiny loop configs for tests: tic-tac-toe at toy scale, pointed at a test server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from handlers.loop.config import LoopConfig, load_loop_config
from streams import auth
from streams.config import NatsSettings


def nats_section(server: str | NatsSettings) -> dict[str, Any]:
    """The ``nats:`` section of a config that uses the test server (logging in with its
    credentials); a plain URL gives a section without credentials."""
    if isinstance(server, str):
        return {"url": server}
    return {"url": server.client_url, "credentials": str(auth.client_file(server))}


def tiny_loop_dict(nats_url: str | NatsSettings, tmp: Path, run: str = "t1",
                   **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run": run,
        "game": {"name": "tictactoe"},
        "nats": nats_section(nats_url),
        "network": {"blocks": 1, "channels": 16, "value_hidden": 16},
        "selfplay": {"workers": 1, "games_in_flight": 16, "torch_threads": 1},
        "curriculum": [{"name": "main", "simulations": 16, "temperature_moves": 3}],
        "sync": {"games_per_shard": 16, "max_wait_s": 2},
        "training": {"threshold_positions": 300, "window": "fixed", "window_positions": 5000,
                     "torch_threads": 1,
                     "train": {"steps": 60, "batch_size": 32, "lr": 0.02}},
        "evaluation": {"workers": 1, "torch_threads": 1},
        "health": {"interval_s": 0.5, "min_free_disk_gb": 0.0},
        "supervisor": {"log_dir": str(tmp / "logs"), "restart_backoff_s": 0.2},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def write_tiny_loop(nats_url: str | NatsSettings, tmp: Path, run: str = "t1",
                    **overrides: Any) -> tuple[Path, LoopConfig]:
    path = tmp / f"{run}.yaml"
    path.write_text(yaml.safe_dump(tiny_loop_dict(nats_url, tmp, run, **overrides)))
    return path, load_loop_config(path)


async def start_tiny_run(store, nats_url: str | NatsSettings, tmp: Path, run: str) -> str:
    """What an agent waits for before it works, as the loop records it: the tiny config in
    force (``loop.started``) and the generation-0 champion; the champion's model id."""
    from handlers.loop.checkpoints import create_initial_model
    from handlers.loop.config import load_in_force
    from projections.models import ModelRegistryProjection
    from projections.runner import ProjectionRunner
    from streams import events as ev

    path, _ = write_tiny_loop(nats_url, tmp, run)
    in_force = load_in_force(path)
    await store.append(ev.LoopStarted.new(run, by="test", **in_force.started_fields()))
    registry = ProjectionRunner(store, ModelRegistryProjection(), run)
    await registry.follow()
    try:
        return await create_initial_model(store, run, in_force.loop, registry)
    finally:
        await registry.stop()

"""Entry point of one loop process: ``python -m handlers.loop.process NAME --run RUN [--index I]``.

A process never reads a config file: it is told how to reach the server (``JETZERO_NATS``,
the ``nats:`` settings as JSON, in its environment) and which run it belongs to (``--run``),
and reads the config in force from the run's latest ``loop.started``
(``handlers.loop.config.read_in_force``), so a process restarted after a file was edited
keeps running on what its start recorded. :func:`child_command` is how the supervisor (or a
node on another machine) builds that command line and environment.

Every service module exposes ``async def serve(ctx: ServiceContext, config: LoopConfig)``;
a service that needs the promotion config takes it as the keyword-only ``promotion``.
``SERVICES`` maps process names to those modules. The supervisor starts one process per name
(``selfplay`` and ``evalworker`` as many as configured, with ``--index``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import uvloop

from handlers.loop.config import ConfigInForce, LoopConfig, read_in_force
from handlers.runtime.service import run_service
from streams import names
from streams.config import NatsSettings, convert_config
from streams.errors import ConfigError, JetzeroError

SERVICES = {
    "controller": "handlers.loop.controller",
    "sync": "handlers.loop.sync",
    "trainer": "handlers.loop.trainer",
    "evaluator": "handlers.promotion.evaluator_service",
    "referee": "handlers.promotion.referee",
    "promoter": "handlers.promotion.promoter_service",
    "health": "handlers.loop.health",
    "selfplay": "handlers.loop.selfplay",
    "evalworker": "handlers.promotion.eval_worker",
}
WORKER_POOLS = ("selfplay", "evalworker")  # run as many as configured, each with --index
NATS_ENV = "JETZERO_NATS"  # how a child reaches the server: NatsSettings as JSON


def process_names(config: LoopConfig) -> list[tuple[str, int]]:
    """Every child process of the loop: ``(service name, index)``."""
    # a loaded config holds numbers: "auto" was resolved when it was decoded
    counts = {"selfplay": int(config.selfplay.workers), "evalworker": int(config.evaluation.workers)}
    return [(name, i) for name in SERVICES for i in range(counts.get(name, 1))]


def process_label(name: str, index: int) -> str:
    """How a process is named in logs and heartbeats: ``selfplay-2``, ``controller``."""
    return f"{name}-{index}" if name in WORKER_POOLS else name


def child_command(name: str, index: int, run: str, nats: NatsSettings,
                  *, verbose: bool = False) -> tuple[list[str], dict[str, str]]:
    """The command line of one loop process and the environment entries it needs."""
    cmd = [sys.executable, "-m", "handlers.loop.process", name, "--run", run, "--index", str(index)]
    if verbose:
        cmd.append("--verbose")
    return cmd, {NATS_ENV: msgspec.json.encode(nats).decode()}


def nats_from_env(env: Mapping[str, str]) -> NatsSettings:
    """The server settings a parent put in ``env`` (``ConfigError`` if absent or malformed)."""
    raw = env.get(NATS_ENV)
    if not raw:
        raise ConfigError(f"{NATS_ENV} is not set: loop processes are started by the supervisor "
                          "(jetzero loop start), which tells them how to reach the server")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{NATS_ENV}: not JSON: {exc}") from None
    return convert_config(data, NatsSettings, NATS_ENV)


def service_arguments(serve: Callable[..., Any], in_force: ConfigInForce) -> dict[str, Any]:
    """The keyword-only arguments ``serve`` names, from the config in force."""
    given = {"promotion": in_force.promotion}
    wanted = [p.name for p in inspect.signature(serve).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = [w for w in wanted if w not in given]
    if unknown:
        raise TypeError(f"{serve.__module__}.serve takes {unknown}, which no config provides")
    return {w: given[w] for w in wanted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="handlers.loop.process")
    parser.add_argument("name", choices=sorted(SERVICES))
    parser.add_argument("--run", required=True, help="the run whose latest loop.started is in force")
    parser.add_argument("--index", type=int, default=0, help="worker index (selfplay, evalworker)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s {args.name}[{args.index}] %(levelname)s %(name)s: %(message)s",
    )
    try:
        names.check_run(args.run)
        nats = nats_from_env(os.environ)
    except (JetzeroError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(SERVICES[args.name])
    label = process_label(args.name, args.index)
    logger = logging.getLogger(label)

    async def body(ctx):
        in_force = await read_in_force(ctx.store, args.run)
        logger.info("config in force: loop.started #%d (loop %s sha256 %.12s, promotion %s sha256 %.12s)",
                    in_force.seq, in_force.loop_path, in_force.loop_sha256, in_force.promotion_path,
                    in_force.promotion_sha256)
        # nats: how this process reaches the server (its parent said); the rest: as recorded
        config = msgspec.structs.replace(in_force.loop, nats=nats)
        ctx.extra["index"] = args.index
        ctx.extra["node"] = f"{os.uname().nodename}-{label}"
        await module.serve(ctx, config, **service_arguments(module.serve, in_force))

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_service(label, nats, args.run, body))
    except JetzeroError as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

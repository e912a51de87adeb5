"""Entry point of one loop process: ``python -m handlers.loop.process NAME --config PATH``.

Every service module exposes ``async def serve(ctx: ServiceContext, config: LoopConfig)``;
``SERVICES`` maps process names to those modules. The supervisor starts one process per
name (``selfplay`` and ``evalworker`` as many as configured, with ``--index``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys

import uvloop

from handlers.loop.config import load_loop_config
from handlers.runtime.service import run_service
from streams.errors import JetzeroError

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="handlers.loop.process")
    parser.add_argument("name", choices=sorted(SERVICES))
    parser.add_argument("--config", default="config/unified_loop.yaml")
    parser.add_argument("--index", type=int, default=0, help="worker index (selfplay, evalworker)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s {args.name}[{args.index}] %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = load_loop_config(args.config)
    except JetzeroError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    module = importlib.import_module(SERVICES[args.name])
    label = args.name if args.name not in ("selfplay", "evalworker") else f"{args.name}-{args.index}"

    async def body(ctx):
        ctx.extra["index"] = args.index
        ctx.extra["node"] = f"{os.uname().nodename}-{label}"
        await module.serve(ctx, config)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run_service(label, config.nats, config.run, body))
    except JetzeroError as exc:
        logging.getLogger(label).error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

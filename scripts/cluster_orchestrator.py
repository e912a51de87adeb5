#!/usr/bin/env python3
"""The cluster orchestrator: ``jetzero cluster up``, then keep the cluster whole until Ctrl-C.

    python scripts/cluster_orchestrator.py --config config/cluster.yaml [--interval 5]

Every ``--interval`` seconds: embedded servers whose process is gone are started again on their
stores, and ``handlers.cluster.heal`` tells lagging agents to resync and restarts the
unreachable where their launch method allows. What it did is printed
(rounds where every agent is in step print nothing). Ctrl-C stops the orchestrator; the servers
keep running (``jetzero cluster down`` stops them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handlers.cluster.config import DEFAULT_CONFIG_PATH, load_cluster_config  # noqa: E402
from handlers.cluster.up import bring_up, heal_round, restart_dead_servers  # noqa: E402
from scripts.common import guarded, run_async  # noqa: E402


async def orchestrate(config_path: Path, interval: float, rounds: int | None = None) -> None:
    from streams.connection import connect
    from streams.store import EventStore

    cfg = load_cluster_config(config_path)
    for line in await bring_up(cfg):
        print(line, flush=True)
    conn = await connect(cfg.settings_for("admin"), name="jetzero-orchestrator", ensure=False)
    try:
        done = 0
        while rounds is None or done < rounds:
            await asyncio.sleep(interval)  # the healing period, not a synchronisation
            actions = restart_dead_servers(cfg)
            actions += await heal_round(EventStore(conn), cfg, max(interval, 5.0), quiet=True)
            stamp = time.strftime("%H:%M:%S")
            for action in actions:
                print(f"{stamp} {action}", flush=True)
            done += 1
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", default=str(DEFAULT_CONFIG_PATH), help="cluster config")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between heals")
    args = parser.parse_args(argv)
    try:
        guarded(lambda: run_async(lambda: orchestrate(Path(args.config), args.interval)), code=2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("stopped (the servers keep running: jetzero cluster down)")


if __name__ == "__main__":
    main()

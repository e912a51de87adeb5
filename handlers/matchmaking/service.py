"""Running the matchmaking server until SIGINT / SIGTERM (``jetzero p2p serve``).

Starts the embedded nats-server if the loop config names none running, connects for good,
opens the AI players (``AiPlayers``: worker processes following the run's champion), rebuilds
the games in progress and serves the page and the socket.

Once it listens, ``settle_heap`` moves everything loaded so far (torch, the projections caught
up, the games rebuilt) out of the garbage collector's reach: a full collection over that heap
stopped the event loop for 55-66 ms (measured in bench/matchmaking.py, 200 clients), the whole
of the move round trip's p99; after it, 4-6 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable

from handlers.matchmaking.ai import AiPlayers
from handlers.matchmaking.config import P2PConfig
from handlers.matchmaking.server import MatchmakingServer
from handlers.matchmaking.tokens import secret
from streams.config import NatsSettings
from streams.connection import connect
from streams.server import start_if_needed
from streams.store import EventStore

__all__ = ["serve", "settle_heap"]

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Collect once, then freeze what is left: the long-lived heap is no longer scanned by
    every full collection (what is created later still is; freed by reference counts as ever)."""
    gc.collect()
    gc.freeze()


async def serve(config: P2PConfig, nats: NatsSettings, run: str, *, host: str | None = None,
                port: int | None = None, ready: Callable[[MatchmakingServer], None] | None = None) -> None:
    """Serve until a signal; ``ready(server)`` is called once it listens."""
    embedded = start_if_needed(nats)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        conn = await connect(nats, name="jetzero-matchmaking")
        try:
            key = secret(config.server.token_secret, nats.data_dir)
            async with AiPlayers.open(config.ai, nats, run, levels=config.levels) as ai:
                async with MatchmakingServer(config, EventStore(conn), run, ai, key, host=host,
                                             port=port) as server:
                    log.info("matchmaking: http://%s:%d/ (run %s)", server.host, server.port, run)
                    settle_heap()
                    if ready is not None:
                        ready(server)
                    await stop.wait()
        finally:
            await conn.close()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        if embedded is not None:
            embedded.stop()

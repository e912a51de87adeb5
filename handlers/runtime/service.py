"""The shell of every long-running service: connect, follow the loop status, stop on signal.

``run_service`` is the one ``async def main`` pattern: a ``ServiceContext`` with the store,
the run, a live loop-status projection (``ctx.halted`` for the pause check) and a stop
event set by SIGTERM / SIGINT; the body runs until it returns or stop is set.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from projections.loop_status import LoopStatusProjection
from projections.runner import ProjectionRunner
from streams.config import NatsSettings
from streams.connection import Log, connect
from streams.store import EventStore

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    name: str
    run: str
    log: Log
    store: EventStore
    status: ProjectionRunner
    stop: asyncio.Event
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def halted(self) -> bool:
        """True while the loop is halted: start no new games, training steps or match games."""
        return self.status.state.halted

    @property
    def stopping(self) -> bool:
        return self.stop.is_set() or self.status.state.state in ("stopping", "stopped")

    async def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True if stop was set meanwhile."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def wait_while_halted(self, poll: float = 0.5) -> bool:
        """Block while halted; True if stop was set meanwhile."""
        while self.halted and not self.stop.is_set():
            if await self.sleep(poll):
                return True
        return self.stop.is_set()


Body = Callable[[ServiceContext], Coroutine[Any, Any, None]]


async def run_service(
    name: str,
    settings: NatsSettings,
    run: str,
    body: Body,
    *,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
) -> None:
    """Connect, follow the loop status, run ``body`` until it returns or stop is set."""
    stop = stop or asyncio.Event()
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    conn = await connect(settings, name=f"jetzero-{name}")
    store = EventStore(conn)
    status = ProjectionRunner(store, LoopStatusProjection(), run)
    await status.follow()
    ctx = ServiceContext(name, run, conn, store, status, stop)
    try:
        body_task = asyncio.create_task(body(ctx))
        stop_task = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({body_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if body_task in done:
            body_task.result()  # a crash surfaces loudly; the supervisor restarts us
        else:
            try:
                await asyncio.wait_for(body_task, 30)
            except TimeoutError:
                log.warning("%s: did not finish within 30 s of stop; abandoning", name)
        stop_task.cancel()
    finally:
        await status.stop()
        await conn.close()

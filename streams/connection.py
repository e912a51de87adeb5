"""Connecting to the log: one ``Log`` holds the NATS connection and its JetStream context.

Long-lived processes reconnect forever (nats-py's default gives up after about two minutes
of outage); short-lived CLI calls fail fast with ``ServerUnreachable``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from streams.config import NatsSettings
from streams.definitions import ensure_all
from streams.errors import ServerUnreachable

log = logging.getLogger(__name__)


@dataclass
class Log:
    """An open connection to the log."""

    nc: Client
    js: JetStreamContext
    settings: NatsSettings

    closing: bool = False

    async def close(self) -> None:
        self.closing = True
        if not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), 3.0)
            except Exception:  # noqa: BLE001 - closing a dead connection must not mask the cause
                await self.nc.close()


async def _error_cb(exc: Exception) -> None:
    log.warning("nats: %s", exc)


async def _quiet_error_cb(exc: Exception) -> None:
    log.debug("nats: %s", exc)


async def _reconnected_cb() -> None:
    log.info("nats: reconnected")


async def connect(
    settings: NatsSettings,
    *,
    name: str = "jetzero",
    long_lived: bool = True,
    ensure: bool = True,
) -> Log:
    """Connect to ``settings.client_url``; with ``ensure`` create/update streams and buckets."""
    url = settings.client_url
    holder: list[Log] = []

    async def disconnected() -> None:
        if not (holder and holder[0].closing):
            log.warning("nats: disconnected from %s; reconnecting", url)

    try:
        nc = await nats.connect(
            servers=url.split(","),
            name=name,
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=-1 if long_lived else 2,
            reconnect_time_wait=0.5 if long_lived else 0.2,
            ping_interval=10,
            max_outstanding_pings=3,
            error_cb=_error_cb if long_lived else _quiet_error_cb,
            disconnected_cb=disconnected if long_lived else None,
            reconnected_cb=_reconnected_cb if long_lived else None,
            pending_size=64 * 1024 * 1024,
        )
    except Exception as exc:  # nats raises several unrelated types for "nobody there"
        raise ServerUnreachable(
            f"no NATS server answers at {url}: {exc.__class__.__name__}"
            " (start one with 'jetzero server start', or check nats.url)"
        ) from None
    js = nc.jetstream(timeout=10)
    conn = Log(nc, js, settings)
    holder.append(conn)
    if ensure:
        try:
            await ensure_all(js, settings)
        except BaseException:
            await nc.close()
            raise
    return conn

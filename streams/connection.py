"""Connecting to the log: one ``Log`` holds the NATS connection and its JetStream context.

Long-lived processes reconnect forever (nats-py's default gives up after about two minutes
of outage); short-lived CLI calls fail fast with ``ServerUnreachable``. Every client logs in
with the credentials ``streams.auth.client_login`` finds; a server that refuses them is
``NotAuthorized`` at once (nats-py would retry a refused login forever).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext

from streams import auth, bulk
from streams.config import NatsSettings
from streams.definitions import ensure_all
from streams.errors import NotAuthorized, ServerUnreachable

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
        bulk.close(self.nc)  # the lean publishing connection goes first
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
    user, password = auth.client_login(settings)
    holder: list[Log] = []
    refused = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        if "authorization violation" in str(exc).lower() and not refused.done():
            refused.set_result(str(exc))
        await (_error_cb if long_lived and holder else _quiet_error_cb)(exc)

    async def disconnected() -> None:
        if not (holder and holder[0].closing):
            log.warning("nats: disconnected from %s; reconnecting", url)

    nc = Client()
    connecting = asyncio.ensure_future(nc.connect(
        servers=url.split(","),
        name=name,
        user=user,
        password=password,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1 if long_lived else 2,
        reconnect_time_wait=0.5 if long_lived else 0.2,  # type: ignore[arg-type] # seconds
        ping_interval=10,
        max_outstanding_pings=3,
        error_cb=on_error,
        disconnected_cb=disconnected if long_lived else None,
        reconnected_cb=_reconnected_cb if long_lived else None,
        pending_size=64 * 1024 * 1024,
    ))
    try:
        await asyncio.wait([connecting, refused], return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled: take the connection attempt down with us
        connecting.cancel()
        raise
    if refused.done() and not (connecting.done() and connecting.exception() is None):
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        await nc.close()
        where = auth.client_file(settings)
        raise NotAuthorized(
            f"the server at {url} refused this client's login "
            + (f"as {user} (credentials {where})" if user else
               f"without credentials ({'none at ' + str(where) if where else 'set nats.credentials'})")
        )
    try:
        connecting.result()
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

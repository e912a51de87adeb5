"""Connecting to the log: one ``Log`` holds the NATS connection and its JetStream context.

Long-lived processes reconnect forever (nats-py's default gives up after about two minutes
of outage); short-lived CLI calls fail fast with ``ServerUnreachable``. Every client logs in
with the credentials ``streams.auth.client_login`` finds; a server that refuses them is
``NotAuthorized`` at once (nats-py would retry a refused login forever).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js import JetStreamContext

from streams import auth, bulk
from streams.config import NatsSettings
from streams.definitions import ensure_all
from streams.errors import ConfigError, NotAuthorized, PublishDenied, ServerUnreachable
from streams.failover import through_failover

log = logging.getLogger(__name__)


@dataclass
class Log:
    """An open connection to the log."""

    nc: Client
    js: JetStreamContext
    settings: NatsSettings

    closing: bool = False
    # Publishes awaiting an answer, by lower-cased subject: a future each, set with the
    # server's text when it refuses the publish (nats-py would only time out).
    denial_watch: dict[str, list[asyncio.Future[str]]] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return str(self.nc.options.get("user") or "(no user)")

    def watch_denial(self, subject: str) -> asyncio.Future[str]:
        """A future the server's refusal of a publish to ``subject`` completes; pass it to
        ``unwatch_denial`` once the publish is answered."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.denial_watch.setdefault(subject.lower(), []).append(fut)
        return fut

    def unwatch_denial(self, subject: str, fut: asyncio.Future[str]) -> None:
        waiting = self.denial_watch.get(subject.lower())
        if waiting and fut in waiting:
            waiting.remove(fut)
            if not waiting:
                del self.denial_watch[subject.lower()]

    def denied(self, subject: str) -> PublishDenied:
        """The error for a publish to ``subject`` the server refused this login."""
        return PublishDenied(
            f"publish to {subject} denied by the server: user {self.user!r} has no permission "
            "for that subject (see 'jetzero cluster credentials' for what each role may do)",
            subject=subject, user=self.user,
        )

    def _refused(self, subject: str, text: str) -> None:
        for fut in self.denial_watch.pop(subject.lower(), []):
            if not fut.done():
                fut.set_result(text)

    async def close(self) -> None:
        self.closing = True
        bulk.close(self.nc)  # the lean publishing connection goes first
        if not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), 3.0)
            except Exception:  # noqa: BLE001 - closing a dead connection must not mask the cause
                await self.nc.close()


_PUBLISH_DENIED = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


def denied_subject(text: str) -> str | None:
    """The subject of a server's publish-permission refusal in ``text`` (lower-cased by the
    server), or None when ``text`` is something else."""
    found = _PUBLISH_DENIED.search(text)
    return found.group(1) if found else None


def _error_text(exc: BaseException) -> str:
    """An error's class and message: nats-py's reconnect failures often carry no message."""
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


async def _error_cb(exc: Exception) -> None:
    log.warning("nats: %s", _error_text(exc))


async def _quiet_error_cb(exc: Exception) -> None:
    log.debug("nats: %s", _error_text(exc))


async def _reconnected_cb() -> None:
    log.info("nats: reconnected")


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """The client's TLS context from ``settings.tls`` (None: no TLS asked for); a file that
    cannot be read is a ``ConfigError`` naming it."""
    tls = settings.tls
    if tls is None:
        return None
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file and tls.key_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"nats.tls: {exc.__class__.__name__}: {exc}") from None
    return context


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
    # A TLS handshake that fails will fail again: give up at once (nats-py would retry, and
    # its clean-up after a failed handshake can wait for ever).
    tls_failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        if "authorization violation" in str(exc).lower() and not refused.done():
            refused.set_result(str(exc))
        if isinstance(exc, ssl.SSLError) and not tls_failed.done() and not holder:
            tls_failed.set_result(str(exc))
        if holder and (subject := denied_subject(str(exc))) is not None:
            holder[0]._refused(subject, str(exc))
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
        # A server that takes a connection but says nothing (frozen) is left as soon as a silent
        # one is dropped: short pings (a cluster's) mean a short wait for its INFO too.
        connect_timeout=min(2.0, max(0.5, 2 * settings.ping_interval_s)),  # type: ignore[arg-type]
        allow_reconnect=True,
        max_reconnect_attempts=-1 if long_lived else 2,
        reconnect_time_wait=0.5 if long_lived else 0.2,  # type: ignore[arg-type] # seconds
        ping_interval=settings.ping_interval_s,  # type: ignore[arg-type] # seconds, float fine
        max_outstanding_pings=settings.max_outstanding_pings,
        error_cb=on_error,
        disconnected_cb=disconnected if long_lived else None,
        reconnected_cb=_reconnected_cb if long_lived else None,
        pending_size=64 * 1024 * 1024,
        tls=tls_context(settings),  # type: ignore[arg-type] # None: plain TCP
    ))
    try:
        await asyncio.wait([connecting, refused, tls_failed], return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled: take the connection attempt down with us
        connecting.cancel()
        raise
    if tls_failed.done() and not (connecting.done() and connecting.exception() is None):
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        raise ServerUnreachable(f"TLS with the NATS server at {url} failed: {tls_failed.result()} "
                                "(check nats.tls: the CA that signed the servers' certificates, "
                                "and this client's certificate if they verify clients)")
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
            await through_failover(settings, lambda: ensure_all(js, settings),
                                   "applying the streams and buckets")
        except BaseException:
            await nc.close()
            raise
    return conn

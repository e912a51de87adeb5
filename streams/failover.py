"""Riding out a stream's leader election on a cluster, for requests that are safe to repeat.

When the server leading a stream (or a KV bucket, an object store, a consumer) dies, the
others elect a new leader within seconds (4-9 s measured, ``../shared/CLUSTER_NOTES.md``);
meanwhile requests get no responders, a 503 or no answer. Appends ride this out in
``EventStore.append`` (resent under the same id); :func:`through_failover` does the same for
requests whose repetition changes nothing: reads, a KV put of a whole value by its one
writer, applying the definitions. On a single server (``replicas`` 1) there is no election
to wait for: the error is raised at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from streams.config import NatsSettings
from streams.errors import StoreError

T = TypeVar("T")
FAILOVER_WINDOW_S = 20.0  # how long a request is repeated while no leader answers
FAILOVER_RETRY_S = 0.1
_ELECTING_CODES = (10158, 10008)  # duplicate message id is in process; JetStream unavailable


def electing(exc: BaseException) -> bool:
    """``exc`` is how a request fails while its stream has no leader (or no server answers)."""
    if isinstance(exc, (TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError,
                        ServiceUnavailableError)):
        return True
    return isinstance(exc, APIError) and (exc.code == 503 or exc.err_code in _ELECTING_CODES)


async def through_failover(settings: NatsSettings, request: Callable[[], Awaitable[T]],
                           what: str) -> T:
    """``request()``, repeated on a cluster while no leader answers, for up to
    ``FAILOVER_WINDOW_S``; then ``StoreError`` naming ``what``. Other errors pass through."""
    if settings.replicas <= 1:
        return await request()
    started = time.monotonic()
    while True:
        try:
            return await request()
        except Exception as exc:  # noqa: BLE001 - only an election's errors are repeated
            if not electing(exc):
                raise
            if time.monotonic() - started > FAILOVER_WINDOW_S:
                raise StoreError(f"{what}: no leader answered within {FAILOVER_WINDOW_S:.0f} s "
                                 f"({exc.__class__.__name__})") from None
        await asyncio.sleep(FAILOVER_RETRY_S)

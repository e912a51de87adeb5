"""Durable pull consumers with explicit ack: what handlers and workers consume through.

``Delivery`` hides nats' message type: the stream sequence, subject, payload, how many times
it was delivered, and ack / nak / in-progress / term.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from streams import names
from streams.connection import Log
from streams.errors import StoreError
from streams.failover import FAILOVER_WINDOW_S, through_failover
from streams.store import parse_ack_reply


@dataclass(slots=True)
class Delivery:
    seq: int
    subject: str
    data: bytes
    time: float
    delivered: int
    _msg: Any

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        await self._msg.nak(delay=delay)

    async def in_progress(self) -> None:
        await self._msg.in_progress()

    async def term(self) -> None:
        await self._msg.term()


class DurableConsumer:
    """One durable pull consumer on ``stream`` filtered by ``subject_filter``."""

    def __init__(self, log: Log, stream: str, subject_filter: str, durable: str):
        self.log = log
        self.stream = stream
        self.subject_filter = subject_filter
        self.durable = durable
        self._sub: Any = None
        self._leaderless_since: float | None = None  # when fetches began to find no leader

    async def open(self, *, ack_wait: float = 30.0, max_ack_pending: int = 1000) -> None:
        """Open (or bind to) the durable: it delivers from where its acknowledgements left off."""
        await self._subscribe(ack_wait, max_ack_pending, deliver_policy=api.DeliverPolicy.ALL)

    async def open_from(self, start_seq: int, *, ack_wait: float = 30.0, max_ack_pending: int = 1000) -> None:
        """Open the consumer so that it delivers in order from stream sequence ``start_seq``.

        The durable is made again from there: what an earlier (killed) process held unacked
        comes back now and in order, not after its ack wait and behind newer messages, where
        a handler that remembers "done up to N" would skip it as already done.
        """
        async def remake() -> None:
            try:
                await self.log.js.delete_consumer(self.stream, self.durable)
            except NotFoundError:
                pass
            await self._subscribe(ack_wait, max_ack_pending,
                                  deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=max(1, start_seq))

        try:
            await through_failover(self.log.settings, remake, f"consumer {self.durable} on {self.stream}")
        except APIError as exc:
            raise StoreError(f"consumer {self.durable} on {self.stream}: {exc.description}") from None

    async def _subscribe(self, ack_wait: float, max_ack_pending: int, **deliver: Any) -> None:
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            filter_subject=self.subject_filter,
            **deliver,
        )
        try:
            self._sub = await through_failover(self.log.settings, lambda: self.log.js.pull_subscribe(
                self.subject_filter, durable=self.durable, stream=self.stream, config=config
            ), f"consumer {self.durable} on {self.stream}")
        except APIError as exc:
            raise StoreError(f"consumer {self.durable} on {self.stream}: {exc.description}") from None

    async def fetch(self, batch: int = 64, timeout: float = 1.0) -> list[Delivery]:
        """Up to ``batch`` messages; an empty list when none arrive within ``timeout``.

        On a cluster, while the consumer has no leader (503: its server died, the others
        elect one) nothing can arrive: that is an empty list too, for up to
        ``FAILOVER_WINDOW_S``; then ``StoreError``."""
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except (TimeoutError, NatsTimeout):
            return []
        except ServiceUnavailableError:
            return await self._no_leader(timeout)
        self._leaderless_since = None
        out = []
        for msg in msgs:
            seq, ts, _ = parse_ack_reply(msg.reply)
            delivered = int(msg.reply.split(".")[4 if len(msg.reply.split(".")) == 9 else 6])
            out.append(Delivery(seq, msg.subject, msg.data, ts, delivered, msg))
        return out

    async def _no_leader(self, timeout: float) -> list[Delivery]:
        """Nothing delivered within ``timeout``: the consumer has no leader (yet)."""
        now = time.monotonic()
        self._leaderless_since = self._leaderless_since or now
        if self.log.settings.replicas <= 1 or now - self._leaderless_since > FAILOVER_WINDOW_S:
            raise StoreError(f"consumer {self.durable} on {self.stream}: no server answers for it "
                             "(it has no leader, or does not exist)")
        await asyncio.sleep(timeout)
        return []

    async def ack_wait(self) -> float | None:
        """The consumer's ack wait as the server has it (whoever created it first set it)."""
        try:
            info = await self.log.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return None
        return float(info.config.ack_wait) if info.config.ack_wait else None

    async def lag(self) -> int:
        """Messages not yet delivered plus delivered but not acknowledged."""
        try:
            info = await self.log.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return 0
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - durable stays on the server by design
                pass


async def consumer_lags(conn: Log, run: str) -> dict[str, int]:
    """Lag (pending + unacknowledged) of every durable consumer of ``run``, by handler name.

    Lists the consumers of each jetzero stream through the connection's JetStream context;
    a stream that cannot be listed is left out (and logged), never fatal.
    """
    prefix = names.durable(run, "_")[: -len("_")]
    lags: dict[str, int] = {}
    for stream in names.STREAM_PREFIX:
        try:
            infos = await conn.js.consumers_info(stream)
        except Exception:  # noqa: BLE001 - a stream that cannot be listed is left out
            continue
        for info in infos:
            durable = getattr(info.config, "durable_name", None) or ""
            if not durable.startswith(prefix):
                continue
            handler = durable[len(prefix):]
            lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            lags[handler] = lags.get(handler, 0) + lag
    return lags

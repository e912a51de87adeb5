"""A lean reader for bulk replays: a push consumer's deliveries cut straight out of the socket.

nats-py builds a message object, parses its headers and queues it for a task per delivery;
for a 2 KB event that costs more than decoding and folding it. ``replay`` opens one extra
connection, subscribes an inbox, creates an ephemeral ordered-style push consumer (no acks,
flow control, heartbeats) delivering to it, and hands each delivery to
``handle(seq, subject, time, data)`` from ``data_received``: no task, queue or object per
message, and TCP back-pressure plus the consumer's flow control bound memory.

``Unavailable``: this connection cannot be used (TLS, nkey/JWT auth, refused): the caller
reads another way. ``Interrupted``: the connection dropped, stalled or skipped a delivery
after ``last``; the caller resumes from ``last + 1``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.js import JetStreamContext, api

_CRLF = b"\r\n"
_H, _M = ord("H"), ord("M")
_SPACE = ord(" ")
_STALLED = b"Nats-Consumer-Stalled:"


class Unavailable(Exception):
    """The lean connection could not be set up; nothing was handled."""


class Interrupted(Exception):
    """Delivery stopped after sequence ``last`` (0: nothing handled)."""

    def __init__(self, reason: str, last: int):
        super().__init__(reason)
        self.last = last


class _Deliveries(asyncio.Protocol):
    """The NATS client protocol, reduced to what one push consumer's deliveries need."""

    def __init__(self, handle: Callable[[int, str, float, bytes], None], end: int):
        loop = asyncio.get_running_loop()
        self.handle = handle
        self.end = end
        self.last = 0
        self.dseq = 0
        self.active = time.monotonic()
        self.info: asyncio.Future[dict] = loop.create_future()
        self.pong: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._need = 0  # bytes the next frame needs before parsing can go on

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Interrupted(f"replay connection lost: {exc or 'closed'}", self.last))

    def _fail(self, exc: BaseException) -> None:
        for waiter in (self.info, self.pong, self.finished):
            if not waiter.done():
                waiter.set_exception(exc)

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(self.last)

    def data_received(self, data: bytes) -> None:
        self.active = time.monotonic()
        if self._chunks:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks, self._buffered, self._need = [], 0, 0
        try:
            rest = self._parse(data)
        except Exception as exc:  # noqa: BLE001 - a protocol error ends this connection
            self._fail(Interrupted(f"replay protocol error: {exc!r}", self.last))
            if self.transport is not None:
                self.transport.close()
            return
        if rest:
            self._chunks, self._buffered = [rest], len(rest)

    def _parse(self, buf: bytes) -> bytes:
        """Handle every whole frame in ``buf``; return the incomplete tail."""
        pos, size = 0, len(buf)
        finished = self.finished
        while pos < size:
            eol = buf.find(_CRLF, pos)
            if eol < 0:
                self._need = 0
                return buf[pos:]
            op = buf[pos]
            if op != _H and op != _M:
                self._command(buf[pos:eol])
                pos = eol + 2
                continue
            args = buf[pos:eol].split()
            start = eol + 2
            stop = start + int(args[-1])
            if stop + 2 > size:
                self._need = stop + 2 - pos
                return buf[pos:]
            pos = stop + 2
            if op == _H:
                header_end = start + int(args[-2])
                reply = args[3] if len(args) == 6 else b""
                if buf[start + 8] == _SPACE:  # "NATS/1.0 100 ...": heartbeat or flow control
                    self._control(buf[start:header_end], reply)
                    continue
                body = buf[header_end:stop]
            else:
                reply = args[3] if len(args) == 5 else b""
                body = buf[start:stop]
            if finished.done():
                continue
            t = reply.split(b".")
            o = 2 if len(t) == 9 else 4
            dseq = int(t[o + 4])
            if dseq != self.dseq + 1:
                self._fail(Interrupted(f"delivery {dseq} after {self.dseq}", self.last))
                continue
            self.dseq = dseq
            seq = int(t[o + 3])
            if seq > self.end:
                self._finish()
                continue
            try:
                self.handle(seq, args[1].decode(), int(t[o + 5]) / 1e9, body)
            except BaseException as exc:  # handed to the caller unchanged
                self._fail(exc)
                continue
            self.last = seq
            if seq >= self.end or t[o + 6] == b"0":
                self._finish()
        return b""

    def _command(self, line: bytes) -> None:
        if line.startswith(b"PING"):
            assert self.transport is not None
            self.transport.write(b"PONG\r\n")
        elif line.startswith(b"PONG"):
            if not self.pong.done():
                self.pong.set_result(None)
        elif line.startswith(b"INFO"):
            if not self.info.done():
                self.info.set_result(json.loads(line[5:]))
        elif line.startswith(b"-ERR"):
            self._fail(Interrupted(f"server: {line[5:].decode(errors='replace')}", self.last))

    def _control(self, header: bytes, reply: bytes) -> None:
        assert self.transport is not None
        if header[9:12] != b"100":  # e.g. "409 Consumer Deleted"
            status = header[9 : header.find(_CRLF)].decode(errors="replace")
            self._fail(Interrupted(f"consumer status {status}", self.last))
            return
        if reply:  # flow control request: every delivery before it has been handled
            self.transport.write(b"PUB " + reply + b" 0\r\n\r\n")
            return
        at = header.find(_STALLED)
        if at >= 0:  # a heartbeat saying the consumer waits for a flow-control answer
            stalled = header[at + len(_STALLED) : header.find(_CRLF, at)].strip()
            self.transport.write(b"PUB " + stalled + b" 0\r\n\r\n")


def _connect_options(nc: Client) -> dict:
    url = nc.connected_url
    options: dict = {"verbose": False, "pedantic": False, "headers": True, "protocol": 1,
                     "lang": "python-jetzero-replay", "version": "1", "name": "jetzero-replay"}
    user, password, token = nc.options.get("user"), nc.options.get("password"), nc.options.get(
        "token"
    )
    if isinstance(user, str) and isinstance(password, str):
        options["user"], options["pass"] = user, password
    elif isinstance(token, str):
        options["auth_token"] = token
    elif url is not None and url.username:
        if url.password is None:
            options["auth_token"] = url.username
        else:
            options["user"], options["pass"] = url.username, url.password
    return options


async def _open(nc: Client, protocol: _Deliveries, inbox: str, timeout: float) -> asyncio.Transport:
    url = nc.connected_url
    if url is None or url.scheme not in ("nats", "") or not url.hostname:
        raise Unavailable("not a plain nats:// connection")
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: protocol, url.hostname, url.port or 4222), timeout
        )
    except (OSError, asyncio.TimeoutError) as exc:
        raise Unavailable(f"cannot connect: {exc!r}") from None
    try:
        info = await asyncio.wait_for(protocol.info, timeout)
        if info.get("tls_required") or info.get("nonce"):
            raise Unavailable("the server wants TLS or nkey/JWT authentication")
        transport.write(
            b"CONNECT " + json.dumps(_connect_options(nc)).encode() + b"\r\n"
            b"SUB " + inbox.encode() + b" 1\r\nPING\r\n"
        )
        await asyncio.wait_for(protocol.pong, timeout)
    except (Interrupted, asyncio.TimeoutError, ValueError) as exc:
        transport.close()
        raise Unavailable(f"handshake failed: {exc}") from None
    except BaseException:
        transport.close()
        raise
    return transport  # type: ignore[return-value]


async def replay(
    nc: Client,
    js: JetStreamContext,
    stream: str,
    config: api.ConsumerConfig,
    handle: Callable[[int, str, float, bytes], None],
    end: int,
    *,
    idle_timeout: float = 15.0,
    timeout: float = 5.0,
) -> int:
    """Deliver the messages ``config`` selects (its start and filter) up to ``end`` to
    ``handle``; return the last sequence handled (0: none). ``config`` gets the delivery
    settings filled in here."""
    inbox = nc.new_inbox()
    protocol = _Deliveries(handle, end)
    transport = await _open(nc, protocol, inbox, timeout)
    config.deliver_subject = inbox
    config.ack_policy = api.AckPolicy.NONE
    config.max_deliver = 1
    config.flow_control = True
    config.idle_heartbeat = 5.0
    config.mem_storage = True
    config.num_replicas = 1
    config.inactive_threshold = 60.0
    consumer = None
    try:
        info = await js.add_consumer(stream, config)
        consumer = info.name
        if int(info.num_pending) + int(info.delivered.consumer_seq) == 0:
            return 0
        while True:
            done, _ = await asyncio.wait([protocol.finished], timeout=idle_timeout / 3)
            if done:
                return protocol.finished.result()
            if time.monotonic() - protocol.active > idle_timeout:
                raise Interrupted(f"no delivery or heartbeat for {idle_timeout:.0f} s",
                                  protocol.last)
    finally:
        transport.close()
        if not protocol.finished.done():
            protocol.finished.cancel()
        if consumer is not None:
            try:
                await js.delete_consumer(stream, consumer)
            except Exception:  # noqa: BLE001 - it expires on its own once the inbox is gone
                pass

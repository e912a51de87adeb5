"""Bulk replay over a lean second connection that speaks the NATS protocol.

nats-py spends more per message (a message object, header parsing, a queue, a coroutine)
than jetzero spends decoding and folding a 2 KB event. For replay (every projection's catch
up) ``EventStore`` opens one extra plain connection, logged in as the main connection is
(user and password: the embedded server's credentials), and cuts frames straight out of the
socket: an ephemeral push consumer (no acks, flow control, heartbeats) delivers to an inbox;
each delivery goes to ``handle(seq, subject, time, data)`` from ``data_received``. TCP
back-pressure and the consumer's flow control bound memory.

``Unavailable``: this connection cannot be used (TLS, nkey/JWT or token auth, refused); the
caller goes through nats-py. ``Interrupted``: the connection dropped, stalled or skipped a
delivery; a replay resumes after ``last``. ``HandleFailed``: ``handle`` raised; its
exception is in ``error``.

(Bulk append used to have a lean path too; the loop's appends are batches of at most a
few dozen games, where a second connection costs more than it saves, so it was removed:
``EventStore.append_many`` pipelines over nats-py.)
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.js import JetStreamContext, api

_CRLF, _LF = b"\r\n", b"\n"
_H, _M, _SPACE = ord("H"), ord("M"), ord(" ")
_STALLED = b"Nats-Consumer-Stalled:"
# A delivery with headers and a 9-token reply: subject, seq, dseq, ns, pending, sizes.
_DELIVERY = re.compile(
    rb"HMSG ([^ ]+) [^ ]+ \$JS\.ACK\.[^. ]+\.[^. ]+\.\d+\.(\d+)\.(\d+)\.(\d+)\.(\d+) (\d+) (\d+)\r\n"
)


class Unavailable(Exception):
    """The lean connection could not be set up; nothing was sent or handled."""


class Interrupted(Exception):
    """The lean connection stopped working; a replay had handled up to ``last``."""

    def __init__(self, reason: str, last: int = 0):
        super().__init__(reason)
        self.last = last


class HandleFailed(Exception):
    """``handle`` raised ``error`` during a replay (kept apart from connection trouble)."""

    def __init__(self, error: BaseException):
        super().__init__(repr(error))
        self.error = error


class _Connection(asyncio.Protocol):
    """Framing, server commands and the handshake; subclasses take the messages."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.info: asyncio.Future[dict] = loop.create_future()
        self.pong: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.active = time.monotonic()
        self.last = 0
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._need = 0  # bytes the frame at the head of _chunks needs

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Interrupted(f"bulk connection lost: {exc or 'closed'}", self.last))

    def _fail(self, exc: BaseException) -> None:
        for waiter in (self.info, self.pong, self.finished):
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # whoever waits gets it; nobody waiting is no error

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
            self._fail(Interrupted(f"bulk protocol error: {exc!r}", self.last))
            if self.transport is not None:
                self.transport.close()
            return
        if rest:
            self._chunks, self._buffered = [rest], len(rest)
        self.active = time.monotonic()  # a slow handle is not a silent server

    def _parse(self, buf: bytes) -> bytes:
        """Take every whole frame in ``buf``; return the incomplete tail."""
        pos, size = 0, len(buf)
        while pos < size:
            after = self._frame(buf, pos, size)
            if after < 0:
                return buf[pos:]
            pos = after
        return b""

    def _frame(self, buf: bytes, pos: int, size: int) -> int:
        """Take the frame at ``pos``; return where the next begins, or -1 if it is partial."""
        eol = buf.find(_LF, pos)  # control lines end in CRLF; memchr finds LF fast
        if eol < 0:
            return -1
        eol -= 1
        op = buf[pos]
        if op != _H and op != _M:
            self._command(buf[pos:eol])
            return eol + 2
        args = buf[pos:eol].split(b" ")
        start = eol + 2
        stop = start + int(args[-1])
        if stop + 2 > size:
            self._need = stop + 2 - pos
            return -1
        if op == _H:  # HMSG subject sid [reply] header-size total-size
            header_end = start + int(args[-2])
            reply = args[3] if len(args) == 6 else b""
            if buf[start + 8] == _SPACE:  # "NATS/1.0 100 Idle Heartbeat" and the like
                self._status(args[1], buf[start:header_end], reply)
            else:
                self._message(args[1], reply, buf[header_end:stop])
        else:  # MSG subject sid [reply] size
            self._message(args[1], args[3] if len(args) == 5 else b"", buf[start:stop])
        return stop + 2

    def _message(self, subject: bytes, reply: bytes, body: bytes) -> None:
        raise NotImplementedError

    def _status(self, subject: bytes, header: bytes, reply: bytes) -> None:
        raise NotImplementedError

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


class _Deliveries(_Connection):
    """One push consumer's deliveries, each handed to ``handle`` as it is cut out."""

    def __init__(self, handle: Callable[[int, str, float, bytes], None], end: int):
        super().__init__()
        self.handle = handle
        self.end = end
        self.dseq = 0
        self._subjects: dict[bytes, str] = {}

    def _parse(self, buf: bytes) -> bytes:
        # The common frame, a delivery with headers, in one regex match; the rest frame by frame.
        pos, size = 0, len(buf)
        match, deliver = _DELIVERY.match, self._deliver
        while pos < size:
            m = match(buf, pos)
            if m is None:
                after = self._frame(buf, pos, size)
                if after < 0:
                    return buf[pos:]
                pos = after
                continue
            start = m.end()
            stop = start + int(m[7])
            if stop + 2 > size:
                self._need = stop + 2 - pos
                return buf[pos:]
            pos = stop + 2
            deliver(m[1], m[2], m[3], m[4], m[5], buf[start + int(m[6]) : stop])
        return b""

    def _message(self, subject: bytes, reply: bytes, body: bytes) -> None:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<dseq>.<ns>.<pending>, or with
        # domain and account hash before <stream> and a random token after <pending>.
        t = reply.rsplit(b".", 5)
        if t[0].count(b".") != 3:
            t = reply.rsplit(b".", 6)[:-1]
        self._deliver(subject, t[2], t[3], t[4], t[5], body)

    def _deliver(
        self, subject: bytes, seq_: bytes, dseq_: bytes, ns: bytes, pending: bytes, body: bytes
    ) -> None:
        if self.finished.done():
            return
        dseq = int(dseq_)
        if dseq != self.dseq + 1:
            self._fail(Interrupted(f"delivery {dseq} after {self.dseq}", self.last))
            return
        self.dseq = dseq
        seq = int(seq_)
        if seq > self.end:
            self._finish()
            return
        name = self._subjects.get(subject)
        if name is None:
            name = subject.decode()
            if len(self._subjects) < 4096:
                self._subjects[subject] = name
        try:
            self.handle(seq, name, int(ns) / 1e9, body)
        except BaseException as exc:  # handed to the caller unchanged
            self._fail(HandleFailed(exc))
            return
        self.last = seq
        if seq >= self.end or pending == b"0":
            self._finish()

    def _status(self, subject: bytes, header: bytes, reply: bytes) -> None:
        assert self.transport is not None
        if header[9:12] != b"100":  # e.g. "409 Consumer Deleted"
            status = header[9 : header.find(_CRLF)].decode(errors="replace")
            self._fail(Interrupted(f"consumer status {status}", self.last))
        elif reply:  # flow control request: every delivery before it has been handled
            self.transport.write(b"PUB " + reply + b" 0\r\n\r\n")
        elif (at := header.find(_STALLED)) >= 0:  # heartbeat: a flow-control answer is due
            stalled = header[at + len(_STALLED) : header.find(_CRLF, at)].strip()
            self.transport.write(b"PUB " + stalled + b" 0\r\n\r\n")


def _connect_options(nc: Client) -> dict:
    """The CONNECT of the lean connection: ``nc``'s user and password, if it has them."""
    options: dict = {"verbose": False, "pedantic": False, "headers": True,
                     "no_responders": True, "protocol": 1, "lang": "python-jetzero-bulk",
                     "version": "1", "name": "jetzero-bulk"}
    user, password = nc.options.get("user"), nc.options.get("password")
    if isinstance(user, str) and isinstance(password, str):
        options["user"], options["pass"] = user, password
    return options


async def _open(nc: Client, protocol: _Connection, subscribe: str, timeout: float):
    """Connect to the server ``nc`` is connected to, authenticate, subscribe ``subscribe``."""
    url = nc.connected_url
    if url is None or url.scheme not in ("nats", "") or not url.hostname:
        raise Unavailable("not a plain nats:// connection")
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: protocol, url.hostname, url.port or 4222), timeout
        )
    except (TimeoutError, OSError) as exc:
        raise Unavailable(f"cannot connect: {exc!r}") from None
    try:
        info = await asyncio.wait_for(protocol.info, timeout)
        if info.get("tls_required") or info.get("nonce"):
            raise Unavailable("the server wants TLS or nkey/JWT authentication")
        transport.write(
            b"CONNECT " + json.dumps(_connect_options(nc)).encode() + b"\r\n"
            b"SUB " + subscribe.encode() + b" 1\r\nPING\r\n"
        )
        await asyncio.wait_for(protocol.pong, timeout)
    except (TimeoutError, Interrupted, ValueError) as exc:
        transport.close()
        raise Unavailable(f"handshake failed: {exc}") from None
    except BaseException:
        transport.close()
        raise
    return transport


async def replay(
    nc: Client,
    js: JetStreamContext,
    stream: str,
    config: api.ConsumerConfig,
    handle: Callable[[int, str, float, bytes], None],
    end: int,
    *,
    heartbeat: float = 2.0,
    timeout: float = 5.0,
) -> int:
    """Deliver what ``config`` selects (its start and filter) up to sequence ``end`` to
    ``handle``; return the last sequence handled (0: none). ``config`` gets the delivery
    settings filled in here. Three ``heartbeat`` intervals of silence are ``Interrupted``
    (the server tells nobody when a consumer is deleted)."""
    idle_timeout = 3 * heartbeat
    inbox = nc.new_inbox()
    protocol = _Deliveries(handle, end)
    transport = await _open(nc, protocol, inbox, timeout)
    config.deliver_subject = inbox
    config.ack_policy = api.AckPolicy.NONE
    config.max_deliver = 1
    config.flow_control = True
    config.idle_heartbeat = heartbeat
    config.mem_storage = True
    config.num_replicas = 1
    config.inactive_threshold = 60.0
    consumer = None
    try:
        info = await js.add_consumer(stream, config)
        consumer = info.name
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        if (info.num_pending or 0) + (delivered or 0) == 0:
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
        if consumer is not None:
            try:
                await js.delete_consumer(stream, consumer)
            except Exception:  # noqa: BLE001 - it expires on its own once the inbox is gone
                pass

"""Bulk append and bulk replay over lean connections that speak the NATS protocol.

nats-py spends more per message (a message object, header parsing, a queue, a coroutine)
than jetzero spends encoding or decoding a 2 KB event. So ``EventStore`` moves its bulk
traffic to plain connections of its own, logged in as the main connection is (user and
password: the embedded server's credentials), that cut frames straight out of the socket.

Append (``Publisher``, one per main connection, opened on first use and kept): pipelined
``HPUB``s, each with ``Nats-Msg-Id`` and a reply subject ``<inbox>.<call>.<index>`` under
one wildcard subscription; the acknowledgements fill in each call's sequences, refusals and
duplicates included. ``close(nc)`` closes it (``Log.close`` does).

Replay (``replay``, one connection per call): an ephemeral push consumer (no acks, flow
control, heartbeats) delivers to an inbox; each delivery goes to
``handle(seq, subject, time, data)`` from ``data_received``. TCP back-pressure and the
consumer's flow control bound memory.

``Unavailable``: a lean connection cannot be used (TLS, nkey/JWT or token auth, refused);
the caller goes through nats-py. ``Interrupted``: the connection dropped, stalled or skipped
a delivery; a replay resumes after ``last``, an append resends what is unacknowledged (ids
deduplicate). ``HandleFailed``: ``handle`` raised; its exception is in ``error``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import weakref
from collections.abc import Callable, Sequence

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from streams import names

_CRLF, _LF = b"\r\n", b"\n"
_H, _M, _SPACE = ord("H"), ord("M"), ord(" ")
_STALLED = b"Nats-Consumer-Stalled:"
# A delivery with headers and a 9-token reply: subject, seq, dseq, ns, pending, sizes.
_DELIVERY = re.compile(
    rb"HMSG ([^ ]+) [^ ]+ \$JS\.ACK\.[^. ]+\.[^. ]+\.\d+\.(\d+)\.(\d+)\.(\d+)\.(\d+) (\d+) (\d+)\r\n"
)
# A publish acknowledgement: MSG <inbox>.<call>.<index> <sid> <size>.
_ACK = re.compile(rb"MSG [^ ]+\.(\d+)\.(\d+) [^ ]+ (\d+)\r\n")
_MSG_ID_HEADER = b"NATS/1.0\r\n" + names.HDR_MSG_ID.encode() + b": "
_WRITE_BATCH = 256 * 1024  # bytes of HPUBs handed to the transport at a time


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


class PubAck(msgspec.Struct):
    """JetStream's answer to a publish: where it was stored, or why not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False  # already stored (same Nats-Msg-Id): ``seq`` is that copy's
    error: dict | None = None


pub_ack = msgspec.json.Decoder(PubAck)


NO_STREAM = "no stream takes this subject"  # a 503 status: no stream, or none with a leader now
ELECTING = "no leader yet"  # an acknowledgement's error while a cluster elects a stream's leader
_ELECTING_CODES = (10158, 10008)  # duplicate message id is in process; JetStream unavailable


def ack_error(ack: PubAck) -> str | None:
    """The server's reason for refusing a publish, or None when it was stored."""
    if ack.error is None:
        return None
    reason = str(ack.error.get("description", ack.error))
    return f"{ELECTING}: {reason}" if ack.error.get("err_code") in _ELECTING_CODES else reason


def electing(reason: str) -> bool:
    """A refusal that, on a cluster, means "the stream has no leader at the moment"."""
    return reason == NO_STREAM or reason.startswith(ELECTING)


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
        self.stopped = False  # finished, failed or lost: nothing more is handled
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._need = 0  # bytes the frame at the head of _chunks needs
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Interrupted(f"bulk connection lost: {exc or 'closed'}", self.last))
        self.resume_writing()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def writable(self) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        if self._writable is not None:
            await self._writable

    def _fail(self, exc: BaseException) -> None:
        self.stopped = True
        for waiter in (self.info, self.pong, self.finished):
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # whoever waits gets it; nobody waiting is no error

    def _finish(self) -> None:
        self.stopped = True
        if not self.finished.done():
            self.finished.set_result(self.last)

    def data_received(self, data: bytes) -> None:
        self.active = time.monotonic()
        start = 0
        if self._chunks:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered < self._need:
                return
            if self._need:  # complete the partial frame alone; parse the rest of data in place
                start = self._need - (self._buffered - len(data))
                self._chunks[-1] = data[:start]
            else:  # a partial control line: its length is not known
                start = len(data)
            head = b"".join(self._chunks)
            self._chunks, self._buffered, self._need = [], 0, 0
            if not self._parse_safely(head, 0):
                return
            if self._chunks:  # the head was not one whole frame after all
                data, start = self._chunks[0] + data[start:], 0
                self._chunks, self._buffered, self._need = [], 0, 0
        self._parse_safely(data, start)
        self.active = time.monotonic()  # a slow handle is not a silent server

    def _parse_safely(self, data: bytes, start: int) -> bool:
        """Parse ``data`` from ``start``, keeping an incomplete tail; False on a protocol error."""
        try:
            rest = self._parse(data, start)
        except Exception as exc:  # noqa: BLE001 - a protocol error ends this connection
            self._fail(Interrupted(f"bulk protocol error: {exc!r}", self.last))
            if self.transport is not None:
                self.transport.close()
            return False
        if rest:
            self._chunks, self._buffered = [rest], len(rest)
        return True

    def _parse(self, buf: bytes, pos: int = 0) -> bytes:
        """Take every whole frame in ``buf`` from ``pos``; return the incomplete tail."""
        size = len(buf)
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

    def _parse(self, buf: bytes, pos: int = 0) -> bytes:
        # The common frame, a delivery with headers, matched and handed over inline (this
        # loop is most of replay's own time); anything else frame by frame.
        size = len(buf)
        match, handle, end, subjects = _DELIVERY.match, self.handle, self.end, self._subjects
        while pos < size:
            m = match(buf, pos)
            if m is None:
                after = self._frame(buf, pos, size)
                if after < 0:
                    return buf[pos:]
                pos = after
                continue
            subject, seq_, dseq_, ns, pending, header_size, total_size = m.groups()
            start = m.end()
            stop = start + int(total_size)
            if stop + 2 > size:
                self._need = stop + 2 - pos
                return buf[pos:]
            pos = stop + 2
            if self.stopped:
                continue
            dseq = int(dseq_)
            if dseq != self.dseq + 1:
                self._fail(Interrupted(f"delivery {dseq} after {self.dseq}", self.last))
                continue
            self.dseq = dseq
            seq = int(seq_)
            if seq > end:
                self._finish()
                continue
            name = subjects.get(subject) or self._name(subject)
            try:
                handle(seq, name, int(ns) / 1e9, buf[start + int(header_size) : stop])
            except BaseException as exc:  # handed to the caller unchanged
                self._fail(HandleFailed(exc))
                continue
            self.last = seq
            if seq >= end or pending == b"0":
                self._finish()
        return b""

    def _name(self, subject: bytes) -> str:
        name = subject.decode()
        if len(self._subjects) < 4096:
            self._subjects[subject] = name
        return name

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
        if self.stopped:
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
        try:
            self.handle(seq, self._subjects.get(subject) or self._name(subject), int(ns) / 1e9,
                        body)
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


class _Batch:
    """One ``Publisher.publish`` call: its sequences, refusals, and what is in flight."""

    def __init__(self, seqs: list[int], errors: list[tuple[int, str]], window: int):
        loop = asyncio.get_running_loop()
        self.seqs = seqs
        self.errors = errors
        self.window = window
        self.in_flight = 0
        self.remaining = seqs.count(0)
        self.done: asyncio.Future[None] = loop.create_future()
        self.room: asyncio.Future[None] | None = None

    def settle(self, index: int, seq: int, error: str | None) -> None:
        if self.seqs[index] != 0:
            return  # a late ack of a resent message
        if error is not None:
            self.errors.append((index, error))
            seq = -1
        self.seqs[index] = seq
        self.remaining -= 1
        self.in_flight -= 1
        room = self.room
        if room is not None and self.in_flight <= self.window * 3 // 4 and not room.done():
            room.set_result(None)
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        for waiter in (self.done, self.room):
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # whoever waits gets it; nobody waiting is no error

    async def wait_for_room(self) -> None:
        while self.in_flight >= self.window and not self.done.done():
            self.room = asyncio.get_running_loop().create_future()
            await asyncio.wait([self.room, self.done], return_when=asyncio.FIRST_COMPLETED)
            self.room = None
        if self.done.done():
            self.done.result()  # raises Interrupted if the connection broke


class _Acks(_Connection):
    """Acknowledgements of pipelined publishes, for every call in flight on the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: dict[int, _Batch] = {}

    def _parse(self, buf: bytes, pos: int = 0) -> bytes:
        size = len(buf)
        match = _ACK.match
        while pos < size:
            m = match(buf, pos)
            if m is None:
                after = self._frame(buf, pos, size)
                if after < 0:
                    return buf[pos:]
                pos = after
                continue
            start = m.end()
            stop = start + int(m[3])
            if stop + 2 > size:
                self._need = stop + 2 - pos
                return buf[pos:]
            pos = stop + 2
            batch = self.batches.get(int(m[1]))
            if batch is not None:  # None: a late ack of a call that has returned
                ack = pub_ack.decode(buf[start:stop])
                batch.settle(int(m[2]), ack.seq, ack_error(ack))
        return b""

    def _message(self, subject: bytes, reply: bytes, body: bytes) -> None:
        _, call, index = subject.rsplit(b".", 2)
        if (batch := self.batches.get(int(call))) is not None:
            ack = pub_ack.decode(body)
            batch.settle(int(index), ack.seq, ack_error(ack))

    def _status(self, subject: bytes, header: bytes, reply: bytes) -> None:
        _, call, index = subject.rsplit(b".", 2)
        if (batch := self.batches.get(int(call))) is not None:
            status = header[9 : header.find(_CRLF)].decode(errors="replace")
            batch.settle(int(index), 0,
                         NO_STREAM if status.startswith("503") else status)

    def _fail(self, exc: BaseException) -> None:
        super()._fail(exc)
        for batch in self.batches.values():
            batch.fail(exc)


class Publisher:
    """Pipelined appends over one lean connection, opened on first use and kept open."""

    def __init__(self, nc: Client):
        self.nc = nc
        self._protocol: _Acks | None = None
        self._inbox = b""
        self._max_payload = 0
        self._opening = asyncio.Lock()
        self._calls = itertools.count(1)
        self.connections = 0  # lean connections opened so far (one, unless one broke)

    async def _connection(self, timeout: float) -> _Acks:
        async with self._opening:
            if self._protocol is None or self._protocol.stopped:
                inbox = self.nc.new_inbox()
                protocol = _Acks()
                _, info = await _open(self.nc, protocol, inbox + ".>", timeout)
                self._protocol, self._inbox = protocol, inbox.encode()
                self._max_payload = int(info.get("max_payload", 1024 * 1024))
                self.connections += 1
            return self._protocol

    async def publish(
        self,
        messages: Sequence[tuple[bytes, bytes, bytes]],
        seqs: list[int],
        errors: list[tuple[int, str]],
        *,
        window: int = 4000,
        timeout: float = 30.0,
        attempts: int = 3,
    ) -> None:
        """Publish ``(subject, payload, msg id)`` messages whose ``seqs`` entry is 0, in order,
        and fill in their stream sequences (-1 and an ``errors`` entry when refused). An entry
        still 0 on return was not acknowledged after ``attempts`` rounds; resending is safe.
        ``Interrupted`` if the connection breaks on the way (what was acknowledged is in
        ``seqs``)."""
        batch = _Batch(seqs, errors, window)
        if batch.remaining == 0:
            return
        protocol = await self._connection(timeout)
        transport = protocol.transport
        assert transport is not None
        call = next(self._calls)
        prefix = b"%s.%d." % (self._inbox, call)
        max_payload = self._max_payload
        protocol.batches[call] = batch
        try:
            for _ in range(attempts):
                out: list[bytes] = []
                size = 0
                for index, (subject, payload, msg_id) in enumerate(messages):
                    if seqs[index] != 0:
                        continue
                    header_size = len(_MSG_ID_HEADER) + len(msg_id) + 4
                    total = header_size + len(payload)
                    if total > max_payload:
                        batch.in_flight += 1
                        batch.settle(index, 0, f"{len(payload)} bytes exceed the server's "
                                               f"max_payload {max_payload}")
                        continue
                    if batch.in_flight >= window:
                        transport.write(b"".join(out))
                        out, size = [], 0
                        await batch.wait_for_room()
                    out.append(b"HPUB %b %b%d %d %d\r\n%b%b\r\n\r\n%b\r\n" % (
                        subject, prefix, index, header_size, total, _MSG_ID_HEADER, msg_id,
                        payload))
                    batch.in_flight += 1
                    size += total
                    if size >= _WRITE_BATCH:
                        transport.write(b"".join(out))
                        out, size = [], 0
                        await protocol.writable()
                if out:
                    transport.write(b"".join(out))
                if batch.remaining == 0:
                    return
                done, _ = await asyncio.wait([batch.done], timeout=timeout)
                if done:
                    batch.done.result()  # raises Interrupted if the connection broke
                    return
                batch.in_flight = 0  # resend what is unacknowledged; ids deduplicate
        finally:
            protocol.batches.pop(call, None)

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


_publishers: weakref.WeakKeyDictionary[Client, Publisher] = weakref.WeakKeyDictionary()


def publisher(nc: Client) -> Publisher:
    """The ``Publisher`` of main connection ``nc`` (one per connection)."""
    found = _publishers.get(nc)
    if found is None:
        found = _publishers[nc] = Publisher(nc)
    return found


def close(nc: Client) -> None:
    """Close ``nc``'s lean publishing connection, if it has one."""
    found = _publishers.pop(nc, None)
    if found is not None:
        found.close()


def _connect_options(nc: Client) -> dict:
    """The CONNECT of a lean connection: ``nc``'s user and password, if it has them."""
    options: dict = {"verbose": False, "pedantic": False, "headers": True,
                     "no_responders": True, "protocol": 1, "lang": "python-jetzero-bulk",
                     "version": "1", "name": "jetzero-bulk"}
    user, password = nc.options.get("user"), nc.options.get("password")
    if isinstance(user, str) and isinstance(password, str):
        options["user"], options["pass"] = user, password
    return options


async def _open(nc: Client, protocol: _Connection, subscribe: str, timeout: float):
    """Connect to the server ``nc`` is connected to, authenticate, subscribe ``subscribe``;
    return the transport and the server's INFO."""
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
    return transport, info


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
    transport, _ = await _open(nc, protocol, inbox, timeout)
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
                # bounded: a login that may not delete consumers (a cluster node's) would wait
                # out the whole API timeout (10 s) on every replay
                await asyncio.wait_for(js.delete_consumer(stream, consumer), 1.0)
            except Exception:  # noqa: BLE001 - it expires on its own once the inbox is gone
                pass

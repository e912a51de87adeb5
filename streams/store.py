"""The event store: append (deduplicated, optionally under optimistic concurrency), bulk
append, read by sequence, replay a range with bounded memory, follow live, last of an aggregate.

Every ``nats`` error on this path is translated here into the ``streams.errors`` tree.
Appends set ``Nats-Msg-Id`` to the event id, so a retried append is stored once. An append
with ``expected_last_seq`` uses ``Nats-Expected-Last-Subject-Sequence`` with the aggregate's
wildcard filter; a retry of an append that did land is recognised by its id, not reported as
a conflict. Reads never raise on a message that does not decode: they hand back a
placeholder (``decode_or_placeholder``); recording it is the reader's part (``streams.rejections``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from streams import bulk, codec, names
from streams.connection import Log, denied_subject
from streams.envelope import Event
from streams.errors import ConcurrencyConflict, DecodeError, EventNotFound, StoreError
from streams.failover import through_failover

_WRONG_LAST_SEQUENCE = 10071
_ELECTING = (10158, 10008)  # duplicate message id is in process; JetStream unavailable
# A stream's leader dies: its election takes 4-9 s (Raft); appends retry through it.
FAILOVER_WINDOW_S = 20.0
FAILOVER_RETRY_S = 0.05
FAILOVER_ATTEMPT_S = 0.5  # one attempt's wait for the ack on a cluster (a retry is deduplicated)
log = logging.getLogger(__name__)
_LEAN_ATTEMPTS = 3  # lean connections a replay tries before the ordered consumer
UNDECODABLE = "!undecodable: "  # the type of a read's placeholder for bytes that do not decode


@dataclass(frozen=True, slots=True)
class Stored:
    """One event as stored: its stream sequence, subject and server time (unix seconds)."""

    seq: int
    subject: str
    time: float
    event: Event | codec.UnknownEvent


@dataclass(frozen=True, slots=True)
class StreamState:
    stream: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int


def parse_ack_reply(reply: str) -> tuple[int, float, int]:
    """``(stream seq, timestamp s, pending)`` from a JetStream delivery's reply subject."""
    t = reply.split(".")
    o = 2 if len(t) == 9 else 4
    return int(t[o + 3]), int(t[o + 5]) / 1e9, int(t[o + 6])


class EventStore:
    """Append to and read from the jetzero streams over one connection."""

    def __init__(self, log: Log):
        self.log = log
        self.nc = log.nc
        self.js = log.js

    # -- appending --------------------------------------------------------------------------

    async def append(
        self,
        event: Event,
        *,
        expected_last_seq: int | None = None,
        aggregate: str | None = None,
    ) -> int:
        """Append one event and return its sequence.

        With ``expected_last_seq`` the append succeeds only if the aggregate's last event is at
        that sequence (0: the aggregate is empty); otherwise ``ConcurrencyConflict``.
        """
        stream = event.STREAM
        subj = codec.subject_of(event)
        headers = {names.HDR_MSG_ID: event.id}
        agg_filter = names.aggregate_filter(stream, event.run, aggregate or event.aggregate())
        if expected_last_seq is not None:
            headers[names.HDR_EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last_seq)
            headers[names.HDR_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = agg_filter
        try:
            ack = await self._publish_watched(subj, codec.encode(event), headers, stream)
        except APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                last = await self.last(stream, agg_filter)
                if last is not None and getattr(last.event, "id", None) == event.id:
                    return last.seq  # our own earlier attempt landed: not a conflict
                raise ConcurrencyConflict(
                    f"{event.tag} on {agg_filter}: expected last sequence {expected_last_seq}, "
                    f"found {last.seq if last else 0}",
                    aggregate=agg_filter,
                    expected=expected_last_seq,
                ) from None
            raise StoreError(f"append {event.tag} to {stream} refused: {exc.description}") from None
        except (TimeoutError, NatsTimeout):
            raise StoreError(f"append {event.tag}: no acknowledgement from {stream}") from None
        except (NoRespondersError, NoStreamResponseError):
            raise StoreError(f"append {event.tag}: no answer from stream {stream} (it does not "
                             "exist, or has no leader)") from None
        return int(ack.seq)

    async def _publish_watched(self, subj: str, data: bytes, headers: dict, stream: str):
        """``js.publish``, raising ``PublishDenied`` as soon as the server refuses the subject
        to this login (nats-py itself would wait out its timeout).

        On a cluster (``replicas`` > 1) an attempt that finds no leader (no responders, no
        answer, 503, "duplicate message id is in process") is sent again with the same
        ``Nats-Msg-Id`` every ``FAILOVER_RETRY_S`` for up to ``FAILOVER_WINDOW_S``: the
        stream's election after its leader died; the id keeps the event stored once."""
        clustered = self.log.settings.replicas > 1
        started = time.monotonic()
        while True:
            try:
                return await self._publish_once(
                    subj, data, headers, stream, FAILOVER_ATTEMPT_S if clustered else None
                )
            except (TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError):
                if not clustered or time.monotonic() - started > FAILOVER_WINDOW_S:
                    raise
            except APIError as exc:
                electing = exc.err_code in _ELECTING or exc.code == 503
                if not (clustered and electing) or time.monotonic() - started > FAILOVER_WINDOW_S:
                    raise
            await asyncio.sleep(FAILOVER_RETRY_S)

    async def _publish_once(self, subj, data, headers, stream, timeout):
        denial = self.log.watch_denial(subj)
        publish = asyncio.ensure_future(
            self.js.publish(subj, data, headers=headers, stream=stream, timeout=timeout)
        )
        try:
            await asyncio.wait((publish, denial), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            publish.cancel()
            raise
        finally:
            self.log.unwatch_denial(subj, denial)
        if not publish.done():
            publish.cancel()
            raise self.log.denied(subj)
        return publish.result()

    async def append_many(
        self, events: Iterable[Event], *, window: int = 4000, timeout: float = 30.0
    ) -> list[int]:
        """Pipelined append for high-volume producers; returns the sequences in order.

        Up to ``window`` in flight over the main connection's lean publisher
        (``streams.bulk.Publisher``: kept open, so a batch of any size goes there); where
        that connection cannot be used, or breaks on the way, the rest goes over nats-py.
        Ids make it safe to retry: an append whose acknowledgement was lost is republished
        and deduplicated (a duplicate's sequence is the stored copy's). An event over the
        server's ``max_payload`` is refused by name; the others are stored. On a cluster, the
        events refused because the stream has no leader (503, "in process", "unavailable") are
        sent again every ``FAILOVER_RETRY_S`` for up to ``FAILOVER_WINDOW_S``.
        """
        batch = list(events)
        outcomes = await self.append_each(batch, window=window, timeout=timeout)
        unacknowledged = sum(1 for o in outcomes if isinstance(o, _Unacknowledged))
        if unacknowledged:
            raise StoreError(f"bulk append: {unacknowledged} events unacknowledged after retries")
        refused = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, _Refused)]
        if refused:
            index, error = refused[0]
            raise StoreError(f"bulk append: {len(refused)} refused, first: {batch[index].tag}: "
                             f"{error.reason}")
        return [int(o) for o in outcomes]  # type: ignore[arg-type]

    async def append_each(
        self, events: Iterable[Event], *, window: int = 4000, timeout: float = 30.0
    ) -> list[int | StoreError]:
        """``append_many`` with an outcome per event: its sequence, or the ``StoreError`` that
        refused it (one refused event does not fail the others). Raises only what fails the
        whole batch: ``PublishDenied`` (this login may not publish there)."""
        batch = list(events)
        if not batch:
            return []
        encoded = self._encode(batch)
        seqs = [0] * len(batch)
        errors: list[tuple[int, str]] = []
        clustered, started = self.log.settings.replicas > 1, time.monotonic()
        while True:
            await self._append_round(encoded, seqs, errors, window, timeout)
            if not (clustered and time.monotonic() - started <= FAILOVER_WINDOW_S
                    and _take_back_electing(seqs, errors)):
                break
            await asyncio.sleep(FAILOVER_RETRY_S)  # the stream elects a leader: send them again
        outcomes: list[int | StoreError] = list(seqs)
        for index, seq in enumerate(seqs):
            if seq == 0:
                outcomes[index] = _Unacknowledged(batch[index].tag)
        for index, reason in errors:
            outcomes[index] = _Refused(batch[index].tag, reason)
        return outcomes

    async def _append_round(self, encoded, seqs, errors, window, timeout) -> None:
        """Publish the entries whose ``seqs`` is 0: over the lean connection, else nats-py."""
        try:
            await bulk.publisher(self.nc).publish(
                encoded, seqs, errors, window=window, timeout=timeout
            )
        except (bulk.Unavailable, bulk.Interrupted) as exc:
            if (subject := denied_subject(str(exc))) is not None:
                raise self.log.denied(subject) from None
            log.warning("bulk append: lean connection unusable (%s); %d of %d events go over "
                        "nats-py", exc, seqs.count(0), len(seqs))
            await self._publish_pipelined(encoded, seqs, errors, window, timeout)

    @staticmethod
    def _encode(batch: list[Event]) -> list[tuple[bytes, bytes, bytes]]:
        """``(subject, payload, id)`` of each event, as bytes; subjects built once per
        (type, run, aggregate)."""
        subjects: dict[tuple, bytes] = {}
        encode, out = codec.encode, []
        for event in batch:
            key = (type(event), event.run, event.aggregate())
            subject = subjects.get(key)
            if subject is None:
                subject = subjects[key] = codec.subject_of(event).encode()
            out.append((subject, encode(event), event.id.encode()))
        return out

    async def _publish_pipelined(self, encoded, seqs, errors, window, timeout) -> None:
        """Publish the entries of ``encoded`` whose ``seqs`` is 0 over nats-py's core NATS,
        one reply-inbox callback taking the acknowledgements."""
        prefix = self.nc.new_inbox()
        in_flight = 0
        room = asyncio.Event()
        done = asyncio.Event()
        remaining = seqs.count(0)
        max_payload = self.nc.max_payload

        async def on_ack(msg) -> None:
            nonlocal in_flight, remaining
            index = int(msg.subject[len(prefix) + 1 :])
            if seqs[index] == 0:
                if msg.data:
                    ack = bulk.pub_ack.decode(msg.data)
                    error = bulk.ack_error(ack)
                else:  # a status instead of an acknowledgement: 503, nobody takes the subject
                    status = (msg.headers or {}).get("Status", "")
                    error = bulk.NO_STREAM if status == "503" else f"status {status}"
                    ack = bulk.PubAck()
                if error is not None:
                    errors.append((index, error))
                    seqs[index] = -1
                else:
                    seqs[index] = ack.seq
                remaining -= 1
                in_flight -= 1
                if in_flight < window:
                    room.set()
                if remaining == 0:
                    done.set()

        if remaining == 0:
            return
        sub = await self.nc.subscribe(prefix + ".*", cb=on_ack)
        try:
            for _attempt in range(3):
                for index, (subj, payload, event_id) in enumerate(encoded):
                    if seqs[index] != 0:
                        continue
                    if len(payload) + len(event_id) + 32 > max_payload:  # 32: the header's rest
                        errors.append((index, f"{len(payload)} bytes exceed the server's "
                                              f"max_payload {max_payload}"))
                        seqs[index] = -1
                        remaining -= 1
                        if remaining == 0:
                            done.set()
                        continue
                    while in_flight >= window:
                        room.clear()
                        await room.wait()
                    in_flight += 1
                    await self.nc.publish(
                        subj.decode(), payload, reply=f"{prefix}.{index}",
                        headers={names.HDR_MSG_ID: event_id.decode()},
                    )
                await self.nc.flush()
                try:
                    await asyncio.wait_for(done.wait(), timeout)
                    break
                except TimeoutError:
                    in_flight = 0  # resend what is unacknowledged; ids deduplicate
                    room.set()
        finally:
            await sub.unsubscribe()

    # -- reading ----------------------------------------------------------------------------

    async def get(self, seq: int, stream: str = names.EVENTS) -> Stored:
        """The event at ``seq`` (``EventNotFound`` if there is none; poison: a placeholder)."""
        try:
            raw = await through_failover(
                self.log.settings, lambda: self.js.get_msg(stream, seq=seq, direct=True),
                f"read {stream} #{seq}")
        except NotFoundError:
            raise EventNotFound(f"no event at sequence {seq} in {stream}") from None
        except APIError as exc:
            raise StoreError(f"read {stream} #{seq}: {exc.description}") from None
        return _stored(raw)

    async def last(self, stream: str, subject_filter: str) -> Stored | None:
        """The last event on subjects matching ``subject_filter`` (an aggregate), or None.

        Poison there is returned as a placeholder with its sequence, never raised.
        """
        try:
            raw = await through_failover(
                self.log.settings, lambda: self.js.get_last_msg(stream, subject_filter, direct=True),
                f"last of {subject_filter}")
        except NotFoundError:
            return None
        except APIError as exc:
            raise StoreError(f"last of {subject_filter}: {exc.description}") from None
        return _stored(raw)

    async def stream_state(self, stream: str = names.EVENTS) -> StreamState:
        """Size and sequence range of a stream."""
        info = await self._stream_info(stream)
        st = info.state
        return StreamState(stream, int(st.messages), int(st.bytes), int(st.first_seq), int(st.last_seq))

    async def last_seq(self, stream: str = names.EVENTS) -> int:
        return int((await self._stream_info(stream)).state.last_seq)

    async def _stream_info(self, stream: str):
        """The stream's info; every way of not getting it is a ``StoreError`` saying which.
        On a cluster it is asked again while the stream elects a leader (``through_failover``)."""
        try:
            return await through_failover(self.log.settings, lambda: self.js.stream_info(stream),
                                          f"stream {stream}")
        except NotFoundError:
            raise StoreError(f"stream {stream} does not exist") from None
        except APIError as exc:  # 503 while the cluster elects a leader, and the like
            raise StoreError(f"stream {stream}: {exc.description}") from None
        except TimeoutError:  # nats-py's own subclasses it: no server answered
            raise StoreError(f"stream {stream}: no server answered in time") from None

    async def replay(
        self,
        stream: str,
        handle: Callable[[int, str, float, bytes], None],
        *,
        subject_filter: str | None = None,
        start_seq: int = 1,
        end_seq: int | None = None,
        start_time: float | None = None,
    ) -> int:
        """Feed every stored message in a range to ``handle(seq, subject, time, data)``.

        Uses the lean reader of ``streams.bulk`` (deliveries handed over straight from
        the socket; resumed after the last handled sequence if its connection drops), or an
        ordered push consumer with a callback where that reader cannot connect. Memory stays
        bounded whatever the range. Stops at ``end_seq`` (default: the stream's last sequence
        when called). Returns the last sequence handled (0 if none).
        """
        end = end_seq if end_seq is not None else await self.last_seq(stream)
        if end < start_seq:
            return 0
        subjects = subject_filter or names.run_filter(stream)
        last = 0
        failure: BaseException | None = None
        for _ in range(_LEAN_ATTEMPTS):
            config = _start_config(start_seq, start_time)
            config.filter_subject = subjects
            try:
                return max(last, await bulk.replay(
                    self.nc, self.js, stream, config, handle, end
                ))
            except bulk.HandleFailed as failed:
                failure = failed.error
                break
            except bulk.Unavailable:
                break
            except bulk.Interrupted as exc:
                if exc.last:
                    last, start_seq, start_time = exc.last, exc.last + 1, None
                if last >= end:
                    return last
            except APIError as exc:
                raise StoreError(f"read {stream}: {exc.description}") from None
            except (TimeoutError, NatsTimeout):
                raise StoreError(f"read {stream}: no answer from the server") from None
        if failure is not None:
            raise failure  # handle's own exception, unchanged
        return max(last, await self._replay_ordered(
            stream, handle, subjects, start_seq, end, start_time
        ))

    async def _replay_ordered(self, stream, handle, subject_filter, start_seq, end, start_time):
        """``replay`` over nats-py's ordered consumer (a callback per message)."""
        last = 0
        finished = asyncio.Event()
        failure: list[BaseException] = []

        async def on_msg(msg) -> None:
            nonlocal last
            if finished.is_set():
                return
            seq, ts, pending = parse_ack_reply(msg.reply)
            if seq > end:
                finished.set()
                return
            try:
                handle(seq, msg.subject, ts, msg.data)
            except BaseException as exc:  # handed to the caller, not swallowed
                failure.append(exc)
                finished.set()
                return
            last = seq
            if seq >= end or pending == 0:
                finished.set()

        sub = await self.subscribe_ordered(stream, subject_filter, on_msg, start_seq, start_time)
        try:
            if await self._pending(sub) == 0:
                return 0
            await finished.wait()
        finally:
            await _quiet_unsubscribe(sub)
        if failure:
            raise failure[0]
        return last

    async def read(
        self,
        stream: str = names.EVENTS,
        *,
        subject_filter: str | None = None,
        start_seq: int = 1,
        end_seq: int | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        follow: bool = False,
        queue_size: int = 1024,
    ) -> AsyncIterator[Stored]:
        """Iterate decoded events in a range (or follow live with ``follow=True``)."""
        queue: asyncio.Queue[Stored | None] = asyncio.Queue(queue_size)
        end = None if follow else (end_seq if end_seq is not None else await self.last_seq(stream))

        finished = False

        async def finish() -> None:
            nonlocal finished
            if not finished:
                finished = True
                await queue.put(None)

        async def on_msg(msg) -> None:
            if finished:
                return
            seq, ts, pending = parse_ack_reply(msg.reply)
            if (end is not None and seq > end) or (end_time is not None and ts > end_time):
                await finish()  # past the end (also when nothing before it matched)
                return
            await queue.put(Stored(seq, msg.subject, ts, decode_or_placeholder(msg.data)))
            if end is not None and (seq >= end or pending == 0):
                await finish()

        if end is not None and end < start_seq:
            return
        sub = await self.subscribe_ordered(stream, subject_filter, on_msg, start_seq, start_time)
        try:
            if not follow and await self._pending(sub) == 0:
                return
            while (item := await queue.get()) is not None:
                yield item
        finally:
            await _quiet_unsubscribe(sub)

    async def subscribe_ordered(self, stream, subject_filter, cb, start_seq=1, start_time=None):
        """An ordered push consumer calling ``cb(msg)`` from ``start_seq`` (or time), live; on a
        cluster its creation is asked again while the stream elects a leader. ``subject_filter``
        is one filter or a list of them (which must not overlap: the server refuses that)."""
        config = _start_config(start_seq, start_time)
        if isinstance(subject_filter, list) and len(subject_filter) > 1:
            config.filter_subjects = subject_filter
        first = subject_filter[0] if isinstance(subject_filter, list) else subject_filter

        async def subscribe():
            return await self.js.subscribe(
                first or names.run_filter(stream),
                stream=stream,
                cb=cb,
                ordered_consumer=True,
                deliver_policy=config.deliver_policy,
                config=config,
                pending_bytes_limit=64 * 1024 * 1024,
            )

        try:
            return await through_failover(self.log.settings, subscribe, f"read {stream}")
        except APIError as exc:
            raise StoreError(f"read {stream}: {exc.description}") from None
        except TimeoutError:  # nats-py's own subclasses it: no server answered (cut off, election)
            raise StoreError(f"read {stream}: no server answered in time") from None

    @staticmethod
    async def _pending(sub) -> int:
        try:
            info = await sub.consumer_info()
        except Exception:  # noqa: BLE001 - unknown: assume there is something to read
            return 1
        return int(info.num_pending) + int(info.delivered.consumer_seq)


def _take_back_electing(seqs: list[int], errors: list[tuple[int, str]]) -> bool:
    """Mark the entries refused because the stream had no leader as unsent again (their ids
    keep them stored once); True if there were any."""
    electing = {index for index, reason in errors if bulk.electing(reason)}
    for index in electing:
        seqs[index] = 0
    errors[:] = [(index, reason) for index, reason in errors if index not in electing]
    return bool(electing)


def _start_config(start_seq: int, start_time: float | None) -> api.ConsumerConfig:
    """A consumer config that starts at ``start_time`` if given, else at ``start_seq``."""
    config = api.ConsumerConfig()
    if start_time is not None:
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        # Whole microseconds, one early: a float of unix seconds carries ~0.25 µs of rounding
        # (a server stamp read back as a float can come out above the stamp itself), and an
        # event stored at start_time must not be skipped.
        micros = math.floor(start_time * 1_000_000) - 1
        stamp = dt.datetime.fromtimestamp(micros // 1_000_000, dt.UTC)
        stamp = stamp.replace(microsecond=micros % 1_000_000)
        config.opt_start_time = stamp.isoformat()  # type: ignore[assignment] # sent as-is
    elif start_seq > 1:
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = start_seq
    else:
        config.deliver_policy = api.DeliverPolicy.ALL
    return config


def _stored(raw: api.RawStreamMsg) -> Stored:
    stamp = (raw.headers or {}).get("Nats-Time-Stamp")
    if stamp:
        ts = parse_timestamp(stamp)
    else:
        when = getattr(raw, "time", None)
        ts = when.timestamp() if when is not None else 0.0
    return Stored(int(raw.seq or 0), raw.subject or "", ts, decode_or_placeholder(raw.data or b""))


def decode_or_placeholder(data: bytes) -> Event | codec.UnknownEvent:
    """The event in ``data``; bytes that do not decode become an ``UnknownEvent`` whose type
    starts with ``!undecodable:`` and says why. A read never fails on one bad message (its
    sequence, e.g. an aggregate's last for an expected-sequence append, still counts)."""
    try:
        return codec.decode(data)
    except DecodeError as exc:
        return codec.UnknownEvent(type=f"{UNDECODABLE}{exc}")


def parse_timestamp(text: str) -> float:
    """RFC 3339 with nanoseconds (as the server writes it) to unix seconds, ns kept."""
    head, _, frac = text.rstrip("Z").partition(".")
    whole = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    digits = "".join(ch for ch in frac if ch.isdigit())
    return (int(whole) * 10**9 + int((digits + "0" * 9)[:9])) / 1e9


async def _quiet_unsubscribe(sub) -> None:
    try:
        await sub.unsubscribe()
    except Exception:  # noqa: BLE001 - the connection may already be closed
        pass


class _Refused(StoreError):
    """One event of a bulk append the stream refused (``reason``: the server's words)."""

    def __init__(self, tag: str, reason: str):
        super().__init__(f"append {tag} refused: {reason}")
        self.reason = reason


class _Unacknowledged(StoreError):
    """One event of a bulk append no acknowledgement came for (resending it is safe)."""

    def __init__(self, tag: str):
        super().__init__(f"append {tag}: no acknowledgement after retries")
        self.reason = "no acknowledgement"

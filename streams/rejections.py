"""Poison input, the one way every reader of the log deals with it: record once, skip, count.

A stored message is *poison* for a reader when it does not decode, decodes to an event type
this build does not know, or decodes to an event that names something that does not exist
(a champion with no checkpoint). Whoever meets it first — a handler shell, a projection
runner, ``--status`` — records it as ``event.rejected`` (stream, subject, sequence, reason)
and goes on; it is never folded or acted on.

Recorded *once*, however many readers meet it: the record's id derives from the stream and
sequence alone (``rejection_id``), so readers meeting it together append the same id and the
server keeps one inside its duplicate window; past that window ``Rejections`` first reads the
run's earlier records, so a reader meeting it an hour later appends nothing. The journal
projection also counts each (stream, sequence) once, which ``health.max_rejections`` checks.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING

from streams import codec, names
from streams.envelope import Event, derived_id
from streams.errors import DecodeError
from streams.events import EventRejected

if TYPE_CHECKING:
    from streams.store import EventStore

__all__ = ["Rejections", "classify", "rejected_event", "rejection_id", "rejection_key", "rejections_of"]

log = logging.getLogger(__name__)

REASON_MAX = 500
PREFIX_BYTES = 64
_CAUSE = "event.rejected"


def rejection_key(stream: str, seq: int) -> str:
    """What names one stored message across the whole log: ``STREAM:seq``."""
    return f"{stream}:{seq}"


def rejection_id(stream: str, seq: int) -> str:
    """The id of the one ``event.rejected`` about the message at ``seq`` of ``stream``."""
    return derived_id(rejection_key(stream, seq), _CAUSE)


def classify(data: bytes) -> tuple[Event | None, str]:
    """The event in ``data``, or ``(None, why it is poison)``."""
    try:
        event = codec.decode(data)
    except DecodeError as exc:
        return None, str(exc)
    if isinstance(event, codec.UnknownEvent):
        return None, f"unknown event type {event.type!r} (not known to this build)"
    return event, ""


def rejected_event(
    run: str, stream: str, subject: str, seq: int, data: bytes, reason: str, reader: str,
    at: float | None = None,
) -> EventRejected:
    """The ``event.rejected`` record of one poison message (``at``: when it was stored)."""
    return EventRejected(
        id=rejection_id(stream, seq),
        time=time.time() if at is None else at,
        run=run,
        stream=stream,
        subject=subject,
        seq=seq,
        reason=reason[:REASON_MAX],
        handler=reader,
        payload_prefix=data[:PREFIX_BYTES].hex(),
    )


class Rejections:
    """The run's poison records as one process knows them; ``record`` appends what is new.

    One per event store and run (``rejections_of``), shared by every reader in the process.
    """

    def __init__(self, store: EventStore, run: str):
        self.store = store
        self.run = run
        self.known: set[str] = set()
        self.recorded = 0  # appended by this process
        self._read_to = 0  # EVENTS sequence up to which earlier records were read

    async def refresh(self) -> None:
        """Read the records appended since the last look (by any process)."""
        filter_ = names.tag_filter(names.EVENTS, self.run, _CAUSE)
        async for stored in self.store.read(names.EVENTS, subject_filter=filter_,
                                            start_seq=self._read_to + 1):
            if isinstance(stored.event, EventRejected):
                self.known.add(rejection_key(stored.event.stream, stored.event.seq))
            self._read_to = max(self._read_to, stored.seq)

    async def record(self, record: EventRejected) -> bool:
        """Append ``record`` unless its message is recorded already; True if appended here.

        Raises the store's error if the append fails (a shell leaves the message unacked and
        meets it again; a runner logs it and leaves the record to another reader).
        """
        key = rejection_key(record.stream, record.seq)
        if key not in self.known:
            await self.refresh()
        if key in self.known:
            return False
        log.warning("%s: rejected %s #%d: %s", record.handler, record.subject, record.seq, record.reason)
        await self.store.append(record)
        self.known.add(key)
        self.recorded += 1
        return True


_BY_STORE: weakref.WeakKeyDictionary[EventStore, dict[str, Rejections]] = weakref.WeakKeyDictionary()


def rejections_of(store: EventStore, run: str) -> Rejections:
    """The ``Rejections`` shared by every reader of ``run`` on ``store`` in this process."""
    per_run = _BY_STORE.setdefault(store, {})
    if run not in per_run:
        per_run[run] = Rejections(store, run)
    return per_run[run]


async def reject_delivery(store: EventStore, run: str, stream: str, delivery, reason: str,
                          handler: str) -> None:
    """Record a message a consumer cannot use (a ``streams.consumer.Delivery``) once as
    ``event.rejected`` by ``handler``, then ack it: it is not delivered again."""
    record = rejected_event(run, stream, delivery.subject, delivery.seq, delivery.data, reason, handler,
                            delivery.time)
    await rejections_of(store, run).record(record)
    await delivery.ack()

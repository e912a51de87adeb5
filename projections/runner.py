"""The projection runner: catch up (from a snapshot or the start), follow live, snapshot
every N events, and rebuild any projection as of a sequence or a time.

A snapshot is the state and its sequence, msgpack then zlib, under a key that carries the
projection's ``version`` (``streams.names.snapshot_key``): code whose fold differs never reads
another version's snapshot. The interval between snapshots grows with their size
(``SNAPSHOT_BYTES_PER_EVENT``), so the cost of writing them stays linear in the events.

Poison — a message that does not decode or is of a type this build does not know — leaves
the state unchanged but advances the position, and is recorded once as ``event.rejected``
(``streams.rejections``, shared with the handler shells) after the fold, counted in
``skipped``. So is an event the projection refuses (its optional ``refused_at(state, seq)``
says why: a decision naming a model that does not exist). A projection may also define
``note_subject(state, subject, seq)``, called for every message, poison included, before it
is folded: where a message is stored counts even when what it says cannot. Recording is
best effort here (a runner may read on a connection that cannot append): a failed append is
logged and left to the next reader. A fold that raises stops the runner with
``ProjectionError`` naming the sequence.

``folded_only``: a read-only follower of a busy log (the matchmaking AI's registry, beside a
server appending a move per game) follows only the event types its projection folds (its
``handlers``), one filter per type, instead of receiving every event of the run. Such a
runner catches up on everything as any other, but while following it sees no poison to
record, ``note_subject`` sees only those types, and it writes no snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from projections.base import Projection
from streams import names
from streams.errors import ProjectionError
from streams.events import EventRejected
from streams.kv import get_value, put_value
from streams.rejections import classify, rejected_event, rejections_of
from streams.store import EventStore

S = TypeVar("S")
log = logging.getLogger(__name__)

# A snapshot costs time in its size; taking one every ``snapshot_every`` events whatever its
# size would make a follower's snapshots quadratic in the log. So the next one waits until at
# least one event per SNAPSHOT_BYTES_PER_EVENT bytes of the last one has been folded: the
# bytes written stay linear in the events folded.
SNAPSHOT_BYTES_PER_EVENT = 128


class _Snapshot(msgspec.Struct, Generic[S]):
    seq: int
    state: S


class ProjectionRunner(Generic[S]):
    """Keeps one projection of one run up to date with the log."""

    def __init__(
        self,
        store: EventStore,
        projection: Projection[S],
        run: str,
        *,
        snapshot_every: int = 1000,
        use_snapshots: bool = True,
        folded_only: bool = False,
    ):
        self.store = store
        self.projection = projection
        self.run = run
        self.snapshot_every = snapshot_every
        self.use_snapshots = use_snapshots
        self.folded_only = folded_only
        self.state: S = projection.initial()
        self.position = 0
        self.skipped = 0  # poison messages met (not folded)
        self.refused = 0  # events the projection refused
        self._poison: list[EventRejected] = []  # to record after the fold
        self._note_subject = getattr(projection, "note_subject", None)
        self._refused_at = getattr(projection, "refused_at", None)
        self._since_snapshot = 0
        self._snapshot_due = snapshot_every  # events folded before the next snapshot
        self.snapshot_bytes = 0  # the size of the last snapshot written or read
        self._changed = asyncio.Condition()
        self._follow_sub: Any = None
        self._error: ProjectionError | None = None

    @property
    def subject_filter(self) -> str:
        return names.run_filter(self.projection.stream, self.run)

    @property
    def follow_filter(self) -> str | list[str]:
        """What ``follow`` reads: the run's subjects, or (``folded_only``) the folded types'."""
        tags = sorted(getattr(self.projection, "handlers", {})) if self.folded_only else []
        if not tags:
            return self.subject_filter
        return [names.tag_filter(self.projection.stream, self.run, tag) for tag in tags]

    @property
    def snapshot_key(self) -> str:
        return names.snapshot_key(self.run, self.projection.name, getattr(self.projection, "version", 1))

    # -- folding ----------------------------------------------------------------------------

    @property
    def reader(self) -> str:
        """How this runner signs the ``event.rejected`` it records."""
        return f"projection:{self.projection.name}"

    def _handle(self, seq: int, subject: str, ts: float, data: bytes) -> None:
        event, reason = classify(data)
        self._fold(seq, subject, ts, data, event, reason)

    def _fold(self, seq: int, subject: str, ts: float, data: bytes, event: Any, reason: str) -> None:
        """Fold one message already classified (``streams.rejections.classify``)."""
        if self._note_subject is not None:
            self.state = self._note_subject(self.state, subject, seq)
        if event is None:
            self.skipped += 1
            self._poison.append(rejected_event(self.run, self.projection.stream, subject, seq, data,
                                               reason, self.reader, ts))
        else:
            try:
                apply_at = getattr(self.projection, "apply_at", None)
                if apply_at is not None:
                    self.state = apply_at(self.state, event, seq)
                else:
                    self.state = self.projection.apply(self.state, event)
            except Exception as exc:
                raise ProjectionError(
                    f"projection {self.projection.name}: fold failed at sequence {seq} "
                    f"({event.tag}): {exc.__class__.__name__}: {exc}"
                ) from exc
            why = self._refused_at(self.state, seq) if self._refused_at is not None else ""
            if why:
                self.refused += 1
                self._poison.append(rejected_event(self.run, self.projection.stream, subject, seq,
                                                   data, why, self.reader, ts))
        self.position = seq
        self._since_snapshot += 1

    async def record_poison(self) -> None:
        """Record what the fold met and could not use (once for the log, best effort)."""
        if not self._poison:
            return
        pending, self._poison = self._poison, []
        rejections = rejections_of(self.store, self.run)
        for record in pending:
            try:
                await rejections.record(record)
            except Exception as exc:  # noqa: BLE001 - recording must not stop the reader
                log.warning("%s: could not record %s #%d as rejected: %s",
                            self.reader, record.subject, record.seq, exc)

    async def load_snapshot(self) -> bool:
        """Start from the snapshot under this projection's name and version, if there is one
        that decodes (one written under another version has another key and is not read)."""
        data = await get_value(self.store.log, names.KV_SNAPSHOTS, self.snapshot_key)
        if not data:
            return False
        try:
            snap_type = _Snapshot[self.projection.state_type]  # type: ignore[name-defined]
            snap = msgspec.msgpack.decode(zlib.decompress(data), type=snap_type)
        except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("snapshot %s unreadable (%s): rebuilding from the log", self.snapshot_key, exc)
            return False
        self.state, self.position = snap.state, snap.seq
        self.snapshot_bytes = len(data)
        self._snapshot_due = max(self.snapshot_every, len(data) // SNAPSHOT_BYTES_PER_EVENT)
        return True

    async def save_snapshot(self) -> None:
        """Store the state with its sequence, compressed; a snapshot is a cache, so failing to
        write one (too large for a KV value, server busy) is logged and the runner goes on."""
        data = zlib.compress(msgspec.msgpack.encode(_Snapshot(seq=self.position, state=self.state)), 1)
        self._since_snapshot = 0
        self.snapshot_bytes = len(data)
        self._snapshot_due = max(self.snapshot_every, len(data) // SNAPSHOT_BYTES_PER_EVENT)
        try:
            await put_value(self.store.log, names.KV_SNAPSHOTS, self.snapshot_key, data)
        except Exception as exc:  # noqa: BLE001 - a cache write must not stop the fold
            log.warning("snapshot %s not written (%d bytes): %s", self.snapshot_key, len(data), exc)

    @property
    def snapshot_due(self) -> bool:
        """Whether enough events were folded since the last snapshot to take the next one."""
        return self.use_snapshots and self._since_snapshot >= self._snapshot_due

    async def catch_up(self, *, until_seq: int | None = None) -> S:
        """Fold everything up to now (or ``until_seq``), starting from the snapshot if any."""
        if self.use_snapshots and self.position == 0:
            await self.load_snapshot()
        await self.store.replay(
            self.projection.stream,
            self._handle,
            subject_filter=self.subject_filter,
            start_seq=self.position + 1,
            end_seq=until_seq,
        )
        await self.record_poison()
        if self.snapshot_due:
            await self.save_snapshot()
        return self.state

    async def follow(self) -> None:
        """Catch up, then apply new events as they arrive until ``stop()``."""
        await self.catch_up()

        async def on_msg(msg) -> None:
            from streams.store import parse_ack_reply

            seq, ts, _ = parse_ack_reply(msg.reply)
            if seq <= self.position or self._error is not None:
                return
            try:
                self._handle(seq, msg.subject, ts, msg.data)
            except ProjectionError as exc:
                self._error = exc
            await self.record_poison()
            async with self._changed:
                self._changed.notify_all()
            if self.snapshot_due and not self.folded_only:
                await self.save_snapshot()

        self._follow_sub = await self.store.subscribe_ordered(
            self.projection.stream, self.follow_filter, on_msg, self.position + 1, None
        )

    async def stop(self) -> None:
        if self._follow_sub is not None:
            try:
                await self._follow_sub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass
            self._follow_sub = None

    async def wait_for(self, predicate: Callable[[S], bool], timeout: float = 10.0) -> S:
        """Wait (while following) until ``predicate(state)`` holds; raise on fold error."""

        async def _wait() -> S:
            async with self._changed:
                while not predicate(self.state):
                    if self._error is not None:
                        raise self._error
                    await self._changed.wait()
            return self.state

        return await asyncio.wait_for(_wait(), timeout)

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


async def state_as_of(
    store: EventStore,
    projection: Projection[S],
    run: str,
    *,
    seq: int | None = None,
    time: float | None = None,
) -> tuple[S, int]:
    """Rebuild ``projection`` from the start as of sequence ``seq`` or time ``time``.

    Returns the state and the last sequence folded into it.
    """
    runner: ProjectionRunner[S] = ProjectionRunner(store, projection, run, use_snapshots=False)
    if time is None:
        await runner.catch_up(until_seq=seq)
        return runner.state, runner.position

    def until_time(s: int, subject: str, ts: float, data: bytes) -> None:
        if ts > time:
            raise _Reached
        runner._handle(s, subject, ts, data)  # noqa: SLF001

    try:
        await store.replay(projection.stream, until_time, subject_filter=runner.subject_filter,
                           end_seq=seq)
    except _Reached:
        pass
    await runner.record_poison()
    return runner.state, runner.position


class _Reached(Exception):
    pass


async def states_as_of(
    store: EventStore,
    projections: Sequence[Projection[Any]],
    run: str,
    *,
    seq: int | None = None,
    time: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 2000,
) -> tuple[list[Any], int]:
    """``state_as_of`` for several projections of one stream, in one read of the log.

    Returns their states (in the order given) and the last sequence folded into them.
    ``on_progress(seq)`` is called every ``progress_every`` messages (a progress bar).
    """
    if not projections:
        return [], 0
    stream = projections[0].stream
    if any(p.stream != stream for p in projections):
        raise ValueError("states_as_of: every projection must read the same stream")
    runners = [ProjectionRunner(store, p, run, use_snapshots=False) for p in projections]

    def handle(s: int, subject: str, ts: float, data: bytes) -> None:
        if time is not None and ts > time:
            raise _Reached
        event, reason = classify(data)  # once for every projection
        for runner in runners:
            runner._fold(s, subject, ts, data, event, reason)  # noqa: SLF001
        if on_progress is not None and runners[0]._since_snapshot % progress_every == 0:  # noqa: SLF001
            on_progress(s)

    try:
        await store.replay(stream, handle, subject_filter=runners[0].subject_filter, end_seq=seq)
    except _Reached:
        pass
    for runner in runners:
        await runner.record_poison()
    return [runner.state for runner in runners], runners[0].position

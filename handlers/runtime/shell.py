"""The handler shell: durable pull consumer → decode → decide → append → remember → ack.

A handler's business logic is a pure ``decide(state, event) -> list[Event | Emit]``; this
shell does the I/O around it. Emitted ids derive from the cause (``derived_id``), so a crash
between append and ack emits nothing twice inside the server's duplicate window; past it, the
position remembered in KV skips the redelivered cause. Poison input (undecodable, or of an
event type this build does not know) is recorded once as ``event.rejected`` (shared with every
other reader: ``streams.rejections``), acknowledged and counted; the handler goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from streams import names
from streams.consumer import Delivery, DurableConsumer
from streams.envelope import Event, derived_id
from streams.errors import ConcurrencyConflict
from streams.kv import Position, load_position, save_position
from streams.rejections import classify, rejected_event, rejections_of
from streams.store import EventStore

log = logging.getLogger(__name__)


class Emit(NamedTuple):
    """An event to append, optionally only if its aggregate's last sequence is as expected."""

    event: Event
    expected_last_seq: int | None = None


Output = Event | Emit
React = Callable[[Event, int], Awaitable[Sequence[Output]]]


def stamp(outputs: Sequence[Output], cause: Event, handler: str) -> list[Emit]:
    """Give each output an id derived from its cause, and the cause's causation/correlation."""
    stamped = []
    for index, out in enumerate(outputs):
        emit = out if isinstance(out, Emit) else Emit(out)
        event = msgspec.structs.replace(
            emit.event,
            id=derived_id(cause.id, handler, index),
            causation_id=cause.id,
            correlation_id=cause.correlation_id or cause.id,
        )
        stamped.append(Emit(event, emit.expected_last_seq))
    return stamped


@dataclass
class ShellStats:
    processed: int = 0
    emitted: int = 0
    rejected: int = 0
    skipped_redelivered: int = 0
    conflicts: int = 0
    last_seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class HandlerShell:
    """Runs one handler on one durable consumer until stopped."""

    def __init__(
        self,
        store: EventStore,
        run: str,
        name: str,
        stream: str,
        subject_filter: str,
        react: React,
        *,
        on_conflict: Callable[[], Awaitable[None]] | None = None,
        paused: Callable[[], bool] = lambda: False,
        batch: int = 32,
        ack_wait: float = 60.0,
        max_conflict_retries: int = 5,
    ):
        self.store = store
        self.run = run
        self.name = name
        self.stream = stream
        self.react = react
        self.on_conflict = on_conflict
        self.paused = paused
        self.batch = batch
        self.max_conflict_retries = max_conflict_retries
        self.consumer = DurableConsumer(
            store.log, stream, subject_filter, names.durable(run, name)
        )
        self.ack_wait = ack_wait
        self.position = Position(0)
        self.stats = ShellStats()

    async def open(self) -> None:
        """Deliver from just past the remembered position: what a killed process held unacked
        comes back at once and in order, never behind newer events it would then be skipped for."""
        self.position = await load_position(self.store.log, self.run, self.name)
        await self.consumer.open_from(self.position.seq + 1, ack_wait=self.ack_wait)

    async def run_until(self, stop: asyncio.Event, *, pause_poll: float = 0.5) -> None:
        """Consume until ``stop`` is set; while ``paused()`` nothing new is fetched."""
        await self.open()
        try:
            while not stop.is_set():
                if self.paused():
                    await _wait_or(stop, pause_poll)
                    continue
                for delivery in await self.consumer.fetch(self.batch, timeout=0.5):
                    await self.process(delivery)
                    if stop.is_set():
                        break
        finally:
            await self.consumer.close()

    async def drain(self, *, idle_timeout: float = 0.5) -> int:
        """Process whatever is available now (for tests and one-shot tools); returns count."""
        count = 0
        while batch := await self.consumer.fetch(self.batch, timeout=idle_timeout):
            for delivery in batch:
                await self.process(delivery)
                count += 1
        return count

    async def process(self, delivery: Delivery) -> None:
        if delivery.seq <= self.position.seq:
            self.stats.skipped_redelivered += 1
            await delivery.ack()
            return
        event, reason = classify(delivery.data)
        if event is None:
            await self.reject(delivery, reason)
            await self._done(delivery, "")
            return
        await self._react(event, delivery.seq)
        await self._done(delivery, event.id)

    async def _react(self, event: Event, seq: int) -> None:
        for attempt in range(self.max_conflict_retries + 1):
            outputs = stamp(await self.react(event, seq), event, self.name)
            try:
                for emit in outputs:
                    await self.store.append(emit.event, expected_last_seq=emit.expected_last_seq)
                    self.stats.emitted += 1
                return
            except ConcurrencyConflict:
                self.stats.conflicts += 1
                if attempt == self.max_conflict_retries:
                    raise
                if self.on_conflict is not None:
                    await self.on_conflict()

    async def reject(self, delivery: Delivery, reason: str) -> None:
        """Record ``delivery`` as poison (once for the whole log: ``streams.rejections``)."""
        self.stats.rejected += 1
        record = rejected_event(self.run, self.stream, delivery.subject, delivery.seq,
                                delivery.data, reason, self.name, delivery.time)
        await rejections_of(self.store, self.run).record(record)

    async def _done(self, delivery: Delivery, cause_id: str) -> None:
        self.position = Position(delivery.seq, cause_id)
        await save_position(self.store.log, self.run, self.name, self.position)
        await delivery.ack()
        self.stats.processed += 1
        self.stats.last_seq = delivery.seq


async def _wait_or(stop: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout)
    except TimeoutError:
        pass

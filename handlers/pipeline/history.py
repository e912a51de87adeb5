"""Past validations from the log: recording the pipeline's events, and listing them.

``LogRecorder`` appends a validation's two events to the run's EVENTS when a log is reachable
(the configured server, or the embedded one started for the call); when none is, it notes why
once and the validation goes on unrecorded. ``champion_to`` writes the run's champion to a file
for a baseline. ``fold_history`` is the pure fold of ``pipeline.*`` events into one
``HistoryRow`` per validation; ``validation_history`` reads them from the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from handlers.loop.control import open_store
from handlers.promotion.models import CHAMPION, export_model
from streams import names
from streams.config import NatsSettings
from streams.envelope import Event
from streams.errors import JetzeroError, PromotionError
from streams.pipeline_events import GateOutcome, ValidationCompleted, ValidationRequested
from streams.store import EventStore

__all__ = ["HistoryRow", "LogRecorder", "champion_to", "fold_history", "validation_history"]


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    validation_id: str
    time: float
    pr: int = 0
    base_ref: str = ""
    base_commit: str = ""
    head_commit: str = ""
    candidate_model: str = ""
    baseline_model: str = ""
    verdict: str = "running"  # passed | failed | error | running (no completion recorded)
    exit_code: int | None = None
    reason: str = ""
    seconds: float = 0.0
    gates: list[GateOutcome] = []
    seq: int = 0


def fold_history(events: Iterable[tuple[int, object]]) -> list[HistoryRow]:
    """One row per validation, oldest first, from ``(seq, event)`` pairs (others are ignored)."""
    rows: dict[str, HistoryRow] = {}
    for seq, e in events:
        if isinstance(e, ValidationRequested):
            rows[e.validation_id] = HistoryRow(
                validation_id=e.validation_id, time=e.time, pr=e.pr, base_ref=e.base_ref,
                head_commit=e.head_commit, candidate_model=e.candidate_model,
                baseline_model=e.baseline_model, seq=seq)
        elif isinstance(e, ValidationCompleted):
            row = rows.get(e.validation_id) or HistoryRow(validation_id=e.validation_id, time=e.time,
                                                         pr=e.pr, seq=seq)
            rows[e.validation_id] = msgspec.structs.replace(
                row, verdict=e.verdict, exit_code=e.exit_code, reason=e.reason, seconds=e.seconds,
                gates=list(e.gates), base_commit=e.base_commit or row.base_commit,
                head_commit=e.head_commit or row.head_commit)
    return sorted(rows.values(), key=lambda r: r.seq)


async def validation_history(store: EventStore, run: str) -> list[HistoryRow]:
    pairs = [(stored.seq, stored.event) async for stored in store.read(
        names.EVENTS, subject_filter=names.aggregate_filter(names.EVENTS, run, names.AGG_PIPELINE))]
    return fold_history(pairs)


def _run(coro_fn: Callable[[], object]):
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


class LogRecorder:
    """Appends events to the log of ``nats`` when reachable; ``problem`` says why not."""

    def __init__(self, nats: NatsSettings, note: Callable[[str], None] = lambda text: None):
        self.nats = nats
        self.note = note
        self.problem = ""
        self.recorded: list[int] = []  # sequences of the events appended

    def __call__(self, event: Event) -> None:
        if self.problem:
            return

        async def append() -> int:
            async with open_store(self.nats) as store:
                return await store.append(event)

        try:
            self.recorded.append(_run(append))
        except (JetzeroError, OSError, TimeoutError) as exc:
            self.problem = str(exc) or type(exc).__name__
            self.note(f"events not recorded (no log reachable): {self.problem}")


def champion_to(nats: NatsSettings, run: str, path: Path) -> str:
    """Write run ``run``'s champion to ``path``; its model id, or "" when there is none or no log."""
    async def export() -> str:
        async with open_store(nats) as store:
            return (await export_model(store, run, CHAMPION, path)).model_id

    try:
        return _run(export)
    except (PromotionError, JetzeroError, OSError, TimeoutError):
        return ""

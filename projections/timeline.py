"""Timelines for the run report: what the other read models keep only as a latest value or a
count, kept here as every occurrence with its time.

- ``TimelineProjection`` (``EVENTS``): every health failure, halt, resume, start, stop and
  process restart, and every ``model.graded`` (accuracy on solved positions). The journal keeps
  the last few of these and the loop status the latest; a chart of a run needs them all.
- ``ThroughputProjection`` (``GAMES``): games and positions finished per minute of the run
  (the tally keeps only the recent games, for the live rate).

Both folds are linear in the events: occurrences are appended to persistent sequences and the
minutes sit in a persistent map (``projections.persistent``).
"""

from __future__ import annotations

from functools import cached_property

import msgspec

from projections import persistent
from projections.base import BaseProjection
from streams import events as ev
from streams import games as gm
from streams import names

__all__ = [
    "Graded",
    "Marker",
    "MinuteCount",
    "Throughput",
    "ThroughputProjection",
    "Timeline",
    "TimelineProjection",
]

MINUTE = 60.0


class Marker(msgspec.Struct, frozen=True, kw_only=True):
    """One occurrence on the run's time axis."""

    time: float
    kind: str  # health.warning | health.critical | loop.halted | loop.resumed | loop.started | ...
    text: str = ""


class Graded(msgspec.Struct, frozen=True, kw_only=True):
    """One ``model.graded``: a model's (and the references') shares on solved positions."""

    time: float
    model_id: str
    grades: tuple[ev.Grade, ...] = ()


class Timeline(msgspec.Struct, frozen=True, kw_only=True, dict=True, forbid_unknown_fields=True):
    marker_seq: persistent.Seq[Marker] = ()
    graded_seq: persistent.Seq[Graded] = ()
    first_time: float = 0.0
    last_time: float = 0.0

    @cached_property
    def markers(self) -> tuple[Marker, ...]:
        """Every occurrence, in log order."""
        return persistent.items(self.marker_seq)

    @cached_property
    def gradings(self) -> tuple[Graded, ...]:
        return persistent.items(self.graded_seq)

    def of_kind(self, *prefixes: str) -> list[Marker]:
        return [m for m in self.markers if m.kind.startswith(prefixes)]


def _mark(s: Timeline, time: float, kind: str, text: str) -> Timeline:
    return msgspec.structs.replace(
        s, marker_seq=persistent.append(s.marker_seq, Marker(time=time, kind=kind, text=text)))


class TimelineProjection(BaseProjection[Timeline]):
    name = "timeline"
    state_type = Timeline

    def initial(self) -> Timeline:
        return Timeline()

    def apply(self, state: Timeline, event) -> Timeline:
        new = super().apply(state, event)
        t = getattr(event, "time", 0.0)
        if not t:
            return new
        first = min(new.first_time, t) if new.first_time else t
        if first == new.first_time and t <= new.last_time:
            return new
        return msgspec.structs.replace(new, first_time=first, last_time=max(new.last_time, t))

    def on_health_check_failed(self, s: Timeline, e: ev.HealthCheckFailed) -> Timeline:
        return _mark(s, e.time, f"health.{e.severity}", f"{e.check}: {e.detail}")

    def on_loop_halted(self, s: Timeline, e: ev.LoopHalted) -> Timeline:
        how = "automatic" if e.automatic else f"by {e.by}"
        return _mark(s, e.time, e.tag, f"{how}: {e.reason}")

    def on_loop_resumed(self, s: Timeline, e: ev.LoopResumed) -> Timeline:
        return _mark(s, e.time, e.tag, e.reason)

    def on_loop_started(self, s: Timeline, e: ev.LoopStarted) -> Timeline:
        return _mark(s, e.time, e.tag, e.by)

    def on_loop_stopped(self, s: Timeline, e: ev.LoopStopped) -> Timeline:
        return _mark(s, e.time, e.tag, e.reason)

    def on_process_restarted(self, s: Timeline, e: ev.ProcessRestarted) -> Timeline:
        return _mark(s, e.time, e.tag, f"{e.process} (exit {e.exit_code})")

    def on_model_graded(self, s: Timeline, e: ev.ModelGraded) -> Timeline:
        graded = Graded(time=e.time, model_id=e.model_id, grades=tuple(e.grades))
        return msgspec.structs.replace(s, graded_seq=persistent.append(s.graded_seq, graded))


class MinuteCount(msgspec.Struct, frozen=True):
    minute: int  # whole minutes since 1970
    games: int
    positions: int


class Throughput(msgspec.Struct, frozen=True, kw_only=True, dict=True, forbid_unknown_fields=True):
    by_minute: persistent.Levels[int, tuple[int, int]] = ()  # minute -> (games, positions)
    games: int = 0

    @cached_property
    def minutes(self) -> tuple[MinuteCount, ...]:
        """Each minute with games, in time order."""
        merged = persistent.merged(self.by_minute)
        return tuple(MinuteCount(m, *merged[m]) for m in sorted(merged))


class ThroughputProjection(BaseProjection[Throughput]):
    name = "throughput"
    stream = names.GAMES
    state_type = Throughput

    def initial(self) -> Throughput:
        return Throughput()

    def on_game_finished(self, s: Throughput, e: gm.GameFinished) -> Throughput:
        minute = int(e.time // MINUTE)
        games, positions = persistent.get(s.by_minute, minute, (0, 0))
        counts = (games + 1, positions + len(e.moves))
        return Throughput(by_minute=persistent.put(s.by_minute, minute, counts), games=s.games + 1)

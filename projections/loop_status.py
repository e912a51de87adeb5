"""Loop status read model: running / halted / stopped, since when, by whom, why; restarts."""

from __future__ import annotations

import msgspec

from streams import events as ev
from projections.base import BaseProjection


class LoopStatus(msgspec.Struct, frozen=True, kw_only=True):
    state: str = "never started"  # never started | running | halted | stopping | stopped
    since: float = 0.0
    by: str = ""
    reason: str = ""
    started_at: float = 0.0
    starts: int = 0
    halts: int = 0
    restarts: int = 0
    config: dict = {}

    @property
    def halted(self) -> bool:
        return self.state == "halted"


class LoopStatusProjection(BaseProjection[LoopStatus]):
    name = "loop_status"
    state_type = LoopStatus

    def initial(self) -> LoopStatus:
        return LoopStatus()

    def _to(self, s: LoopStatus, e: ev._Loop, state: str) -> LoopStatus:
        return msgspec.structs.replace(s, state=state, since=e.time, by=e.by, reason=e.reason)

    def on_LoopStarted(self, s: LoopStatus, e: ev.LoopStarted) -> LoopStatus:
        # A halt outlives restarts: starting a halted loop keeps it halted.
        state = "halted" if s.state == "halted" else "running"
        base = s if state == "halted" else self._to(s, e, state)
        return msgspec.structs.replace(
            base, started_at=e.time, starts=s.starts + 1, config=e.config
        )

    def on_LoopHalted(self, s: LoopStatus, e: ev.LoopHalted) -> LoopStatus:
        return msgspec.structs.replace(self._to(s, e, "halted"), halts=s.halts + 1)

    def on_LoopResumed(self, s: LoopStatus, e: ev.LoopResumed) -> LoopStatus:
        return self._to(s, e, "running")

    def on_LoopStopRequested(self, s: LoopStatus, e: ev.LoopStopRequested) -> LoopStatus:
        return s if s.state == "halted" else self._to(s, e, "stopping")

    def on_LoopStopped(self, s: LoopStatus, e: ev.LoopStopped) -> LoopStatus:
        return s if s.state == "halted" else self._to(s, e, "stopped")

    def on_ProcessRestarted(self, s: LoopStatus, e: ev.ProcessRestarted) -> LoopStatus:
        return msgspec.structs.replace(s, restarts=s.restarts + 1)

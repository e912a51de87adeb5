"""Loop status read model: running / stopping / stopped, halted or not (a halt is orthogonal
and outlives restarts), since when, by whom, why; starts and process restarts.

``halt_seq`` is the EVENTS sequence of the latest ``loop.halted`` (the runner passes
sequences through ``apply_at``; plain ``apply`` leaves it 0): a resume names it, so a halt
recorded after the resume was asked for keeps the loop halted.
"""

from __future__ import annotations

import msgspec

from projections.base import BaseProjection
from streams import events as ev


class LoopStatus(msgspec.Struct, frozen=True, kw_only=True):
    state: str = "never started"  # never started | running | stopping | stopped
    since: float = 0.0
    by: str = ""
    reason: str = ""
    halted: bool = False
    halted_since: float = 0.0
    halted_by: str = ""
    halt_reason: str = ""
    halt_automatic: bool = False
    halt_seq: int = 0
    started_at: float = 0.0
    starts: int = 0
    halts: int = 0
    restarts: int = 0
    last_restart: str = ""
    config: dict = {}

    @property
    def label(self) -> str:
        return f"{self.state} (halted)" if self.halted else self.state


class LoopStatusProjection(BaseProjection[LoopStatus]):
    name = "loop_status"
    version = 2  # v2: halt_seq (the sequence of the latest halt)
    state_type = LoopStatus

    def initial(self) -> LoopStatus:
        return LoopStatus()

    def apply_at(self, state: LoopStatus, event, seq: int) -> LoopStatus:
        """``apply``, and a halt's sequence remembered."""
        new = self.apply(state, event)
        return msgspec.structs.replace(new, halt_seq=seq) if isinstance(event, ev.LoopHalted) else new

    @staticmethod
    def _to(s: LoopStatus, e: ev._Loop, state: str) -> LoopStatus:
        return msgspec.structs.replace(s, state=state, since=e.time, by=e.by, reason=e.reason)

    def on_loop_started(self, s: LoopStatus, e: ev.LoopStarted) -> LoopStatus:
        return msgspec.structs.replace(
            self._to(s, e, "running"), started_at=e.time, starts=s.starts + 1, config=e.config
        )

    def on_loop_halted(self, s: LoopStatus, e: ev.LoopHalted) -> LoopStatus:
        return msgspec.structs.replace(
            s, halted=True, halted_since=e.time, halted_by=e.by, halt_reason=e.reason,
            halt_automatic=e.automatic, halts=s.halts + 1,
        )

    def on_loop_resumed(self, s: LoopStatus, e: ev.LoopResumed) -> LoopStatus:
        return msgspec.structs.replace(
            s, halted=False, halted_since=e.time, halted_by=e.by, halt_reason=e.reason,
            halt_automatic=False,
        )

    def on_loop_stop_requested(self, s: LoopStatus, e: ev.LoopStopRequested) -> LoopStatus:
        return self._to(s, e, "stopping")

    def on_loop_stopped(self, s: LoopStatus, e: ev.LoopStopped) -> LoopStatus:
        return self._to(s, e, "stopped")

    def on_process_restarted(self, s: LoopStatus, e: ev.ProcessRestarted) -> LoopStatus:
        return msgspec.structs.replace(
            s, restarts=s.restarts + 1, last_restart=f"{e.process} (exit {e.exit_code})"
        )

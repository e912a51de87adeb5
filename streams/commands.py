"""Commands of the ``COMMANDS`` stream: what the CLI asks the running system to do.

A command is a request: the controller checks it against the projections and answers with
``command.accepted`` or ``command.rejected`` (same correlation id), plus the events it causes.
A command carries what its sender saw where its meaning depends on it: a resume names the
halt it resumes, a rollback "back one step" the champion decision it steps back from; if the
log has moved on by the time the controller decides, the command is refused, not applied to
a state nobody asked about.

Starting is not a command (``jetzero loop start`` launches the supervisor, which records
``loop.started``), nor is halting (``loop.halted`` is appended directly, so that it works
with the controller down).
"""

from __future__ import annotations

from typing import ClassVar

from streams import names
from streams.envelope import Event


class Command(Event, frozen=True, kw_only=True):
    by: str = ""
    reason: str = ""

    STREAM: ClassVar[str] = names.COMMANDS

    def aggregate(self) -> str:
        return names.AGG_COMMANDS

    @property
    def name(self) -> str:
        return self.tag.removeprefix("command.")


class StopLoop(Command, frozen=True, kw_only=True, tag="command.stop"):
    pass


class ResumeLoop(Command, frozen=True, kw_only=True, tag="command.resume"):
    halt_seq: int = 0  # the EVENTS sequence of the loop.halted this resume lifts (the latest seen)


class PromoteModel(Command, frozen=True, kw_only=True, tag="command.promote"):
    model_id: str


class RollbackChampion(Command, frozen=True, kw_only=True, tag="command.rollback"):
    to_promotion_seq: int = 0
    model_id: str = ""
    # the champion aggregate's last sequence its sender saw: a rollback that names no target
    # ("back one step") is refused if another decision landed since (0: not checked)
    champion_seq: int = 0


class NodeResync(Event, frozen=True, kw_only=True, tag="command.node_resync"):
    """Addressed to one node agent (on its aggregate, not the controller's): pull the champion,
    verify it and switch. Not a ``Command``: the controller leaves it to the node, which
    answers with ``node.model_synced`` or ``node.model_refused`` caused by it."""

    node: str
    by: str = ""
    reason: str = ""

    STREAM: ClassVar[str] = names.COMMANDS

    def aggregate(self) -> str:
        return names.node_aggregate(self.node)


AnyCommand = StopLoop | ResumeLoop | PromoteModel | RollbackChampion | NodeResync

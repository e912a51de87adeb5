"""Commands of the ``COMMANDS`` stream: what the CLI asks the running system to do.

A command is a request: the controller checks it against the projections and answers with
``command.accepted`` or ``command.rejected`` (same correlation id), plus the events it causes.
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


class StartLoop(Command, frozen=True, kw_only=True, tag="command.start"):
    pass


class StopLoop(Command, frozen=True, kw_only=True, tag="command.stop"):
    pass


class HaltLoop(Command, frozen=True, kw_only=True, tag="command.halt"):
    pass


class ResumeLoop(Command, frozen=True, kw_only=True, tag="command.resume"):
    pass


class PromoteModel(Command, frozen=True, kw_only=True, tag="command.promote"):
    model_id: str


class RollbackChampion(Command, frozen=True, kw_only=True, tag="command.rollback"):
    to_promotion_seq: int = 0
    model_id: str = ""


AnyCommand = StartLoop | StopLoop | HaltLoop | ResumeLoop | PromoteModel | RollbackChampion

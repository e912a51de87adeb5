"""The referee service: ends a match with ``match.completed`` once its SPRT decides or its cap is hit.

A ``HandlerShell`` on the run's EVENTS reacts to ``match.pair_played``: it folds the matches
projection up to that pair (so the decision is the one the log had at that point, whoever
redoes it) and asks ``handlers.promotion.evaluator.complete_match``. The completion's id derives from
the match id, not from the pair, so it lands once even when two referees, or a referee
redoing its work, decide on different pairs: the server drops the second append inside its
duplicate window, and past it the projection already shows the match completed.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from handlers.loop.config import LoopConfig
from handlers.promotion.evaluator import complete_match
from handlers.runtime.shell import HandlerShell
from projections.matches import MatchesProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.envelope import Event, derived_id
from streams.store import EventStore

__all__ = ["HANDLER", "Referee", "build_referee", "completion_id", "serve"]

HANDLER = "referee"


def completion_id(match_id: str) -> str:
    """The id of ``match_id``'s one ``match.completed``."""
    return derived_id(f"match:{match_id}", HANDLER)


class Referee:
    def __init__(self, store: EventStore, run: str):
        self.store = store
        self.matches = ProjectionRunner(store, MatchesProjection(), run)
        self.completed: list[str] = []  # match ids this referee completed

    async def react(self, event: Event, seq: int) -> list[Event]:
        """Appends the completion itself (its id is the match's, not a derived-from-cause one)."""
        if not isinstance(event, ev.MatchPairPlayed):
            return []
        await self.matches.catch_up(until_seq=seq)
        for completed in complete_match(self.matches.state, event):
            await self.store.append(msgspec.structs.replace(
                completed,
                id=completion_id(event.match_id),
                causation_id=event.id,
                correlation_id=event.correlation_id or event.id,
            ))
            self.completed.append(event.match_id)
        return []


def build_referee(
    store: EventStore,
    run: str,
    *,
    paused: Callable[[], bool] = lambda: False,
    name: str = HANDLER,
) -> tuple[HandlerShell, Referee]:
    """The referee on ``run``'s EVENTS; ``shell.run_until(stop)`` runs it."""
    service = Referee(store, run)
    shell = HandlerShell(
        store, run, name, names.EVENTS, names.run_filter(names.EVENTS, run), service.react,
        paused=paused,
    )
    return shell, service


async def serve(ctx, config: LoopConfig) -> None:
    """The referee service of the loop; paused while the loop is halted."""
    shell, _ = build_referee(ctx.store, ctx.run, paused=lambda: ctx.halted)
    await shell.run_until(ctx.stop)

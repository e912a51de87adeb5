"""The evaluator service: schedules evaluation matches and hands their pairs out as WORK units.

A ``HandlerShell`` on the run's EVENTS runs ``handlers.promotion.evaluator.decide`` for

- ``checkpoint.saved``, ``candidate.promoted``, ``candidate.rejected``,
  ``champion.rolled_back``: unless a candidate's evaluation is in progress (matches scheduled,
  no decision yet), the gate, regression and reference ``match.scheduled`` of the newest
  pending checkpoint (one candidate at a time, against the champion of the moment; older
  pending checkpoints are skipped; ``handlers.promotion.evaluator.schedule_next``);
- ``candidate.promoted`` also: the new champion's watch match;
- ``match.scheduled``: the match's ``MatchUnit`` items, appended to WORK.

Units are made from the ``match.scheduled`` event as it stands in the log (not together with
the scheduling), so a crash between the two appends still gets them made. Every output's id
derives from its cause: a redone reaction appends nothing twice inside the duplicate window
(WORK deduplicates by ``Nats-Msg-Id`` too), and past it the projections' "first scheduling
wins" rule makes units for the first scheduling only.

Every match player (eval workers, the promotion manager's in-process player) takes units
through ``match_work_consumer``: one durable consumer shared by all, because a work-queue
stream refuses two consumers whose filters overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.games import get_game
from engine.openings import openings_for
from handlers.loop.config import LoopConfig
from handlers.promotion import evaluator
from handlers.promotion.config import PromotionConfig
from handlers.runtime.shell import HandlerShell
from projections.matches import MatchesProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.connection import Log
from streams.consumer import DurableConsumer
from streams.envelope import Event
from streams.fencing import refusal, stale_fence
from streams.store import EventStore

__all__ = [
    "HANDLER",
    "MATCH_PLAYERS",
    "Evaluator",
    "build_evaluator",
    "match_work_consumer",
    "serve",
]

HANDLER = "evaluator"
MATCH_PLAYERS = "evalworker"  # the durable consumer (and heartbeat role) of match players
_REACTS_TO = (
    ev.CheckpointSaved,
    ev.CandidatePromoted,
    ev.CandidateRejected,
    ev.ChampionRolledBack,
    ev.MatchScheduled,
)


def match_work_consumer(log: Log, run: str) -> DurableConsumer:
    """The one consumer of ``run``'s match units that every match player shares."""
    return DurableConsumer(
        log, names.WORK, names.aggregate_filter(names.WORK, run, "match"),
        names.durable(run, MATCH_PLAYERS),
    )


class Evaluator:
    """The evaluator's state (registry and matches, caught up per reaction) and its reaction."""

    def __init__(
        self,
        store: EventStore,
        run: str,
        config: PromotionConfig,
        game: str,
        openings: Sequence[Sequence[int]],
    ):
        self.store = store
        self.run = run
        self.config = config
        self.game = game
        self.openings = [tuple(o) for o in openings]
        self.registry = ProjectionRunner(store, ModelRegistryProjection(), run)
        self.matches = ProjectionRunner(store, MatchesProjection(), run)

    async def refresh(self) -> None:
        await self.registry.catch_up()
        await self.matches.catch_up()

    async def react(self, event: Event, seq: int) -> list[Event]:
        if not isinstance(event, _REACTS_TO):
            return []
        if current := await stale_fence(self.store, self.run, event, seq):  # a lost holder's
            return [refusal(event, current, by=HANDLER)]
        await self.refresh()
        return evaluator.decide(
            self.registry.state, self.matches.state, event, self.config,
            game=self.game, openings=self.openings,
        )


def build_evaluator(
    store: EventStore,
    run: str,
    config: PromotionConfig,
    game: str,
    openings: Sequence[Sequence[int]],
    *,
    paused: Callable[[], bool] = lambda: False,
    name: str = HANDLER,
) -> tuple[HandlerShell, Evaluator]:
    """The evaluator on ``run``'s EVENTS; ``shell.run_until(stop)`` runs it."""
    service = Evaluator(store, run, config, game, openings)
    shell = HandlerShell(
        store, run, name, names.EVENTS, names.run_filter(names.EVENTS, run), service.react,
        on_conflict=service.refresh, paused=paused,
    )
    return shell, service


async def serve(ctx, config: LoopConfig, *, promotion: PromotionConfig) -> None:
    """The evaluator service of the loop (``promotion``: the config in force); paused while halted."""
    game = get_game(config.game.name, **config.game.params)
    shell, _ = build_evaluator(ctx.store, ctx.run, promotion, game.name, openings_for(game),
                               paused=lambda: ctx.halted)
    await shell.run_until(ctx.stop)

"""The promoter service: judges a candidate when its last evaluation match completes.

A ``HandlerShell`` on the run's EVENTS reacts to ``match.completed``: it catches the registry
and the matches projections up to now and runs ``handlers.promotion.promoter.decide``, whose
``candidate.promoted`` / ``candidate.rejected`` / ``champion.rolled_back`` is appended under the
champion aggregate's expected last sequence. A promoter that loses a race (another decision
landed first) gets ``ConcurrencyConflict``; the shell then catches both projections up again
and decides anew, which for an already decided candidate is nothing: two promoters racing on
the same candidate make exactly one decision. Poison on the champion aggregate (bytes that do
not decode, a decision naming a model with no checkpoint) is recorded once and skipped by the
registry's runner, and still counts in the expected last sequence (``note_subject``): one bad
message cannot make every later append conflict.
"""

from __future__ import annotations

from collections.abc import Callable

from handlers.loop.config import LoopConfig
from handlers.promotion import promoter
from handlers.promotion.config import PromotionConfig
from handlers.runtime.shell import Emit, HandlerShell
from projections.matches import MatchesProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.envelope import Event
from streams.fencing import refusal, stale_fence
from streams.store import EventStore

__all__ = ["HANDLER", "Promoter", "build_promoter", "serve"]

HANDLER = "promoter"


class Promoter:
    def __init__(self, store: EventStore, run: str, config: PromotionConfig):
        self.store = store
        self.run = run
        self.config = config
        self.registry = ProjectionRunner(store, ModelRegistryProjection(), run)
        self.matches = ProjectionRunner(store, MatchesProjection(), run)

    async def refresh(self) -> None:
        """Catch both projections up to the end of the log (also the conflict recovery)."""
        await self.registry.catch_up()
        await self.matches.catch_up()

    async def react(self, event: Event, seq: int) -> list[Event | Emit]:
        if not isinstance(event, ev.MatchCompleted):
            return []
        if current := await stale_fence(self.store, self.run, event, seq):  # a lost evaluator's
            return [refusal(event, current, by=HANDLER)]
        await self.refresh()
        return promoter.decide(self.registry.state, self.matches.state, event, self.config)


def build_promoter(
    store: EventStore,
    run: str,
    config: PromotionConfig,
    *,
    paused: Callable[[], bool] = lambda: False,
    name: str = HANDLER,
) -> tuple[HandlerShell, Promoter]:
    """The promoter on ``run``'s EVENTS; ``shell.run_until(stop)`` runs it."""
    service = Promoter(store, run, config)
    shell = HandlerShell(
        store, run, name, names.EVENTS, names.run_filter(names.EVENTS, run), service.react,
        on_conflict=service.refresh, paused=paused,
    )
    return shell, service


async def serve(ctx, config: LoopConfig, *, promotion: PromotionConfig) -> None:
    """The promoter service of the loop (``promotion``: the config in force); paused while halted."""
    shell, _ = build_promoter(ctx.store, ctx.run, promotion, paused=lambda: ctx.halted)
    await shell.run_until(ctx.stop)

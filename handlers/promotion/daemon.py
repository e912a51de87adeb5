"""The promotion daemon: evaluate every new checkpoint until stopped, reporting each decision.

With the loop running it only reports the loop's decisions; otherwise it runs evaluator,
referee and promoter here (``handlers.promotion.judge.InProcessEvaluation``), and plays pairs
here too unless eval workers are alive (their heartbeats carry the role ``evalworker``) at
start — ``play="local"`` plays here regardless; local play and workers share one WORK
consumer, so they never play a unit twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from handlers.loop.config import LoopConfig
from handlers.loop.control import open_store
from handlers.loop.supervisor import supervisor_alive
from handlers.promotion.config import PromotionConfig
from handlers.promotion.evaluator_service import MATCH_PLAYERS
from handlers.promotion.history import HistoryEntry, history_entries
from handlers.promotion.judge import InProcessEvaluation
from handlers.promotion.models import IMPORTER
from projections.loop_status import LoopStatusProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams.kv import alive_nodes
from streams.store import EventStore

__all__ = ["match_players_alive", "run_daemon"]


async def match_players_alive(store: EventStore, run: str) -> bool:
    """Whether eval workers of the loop are alive (not the manager's own in-process ones)."""
    return any(MATCH_PLAYERS in hb.roles and not hb.node.startswith(IMPORTER)
               for hb in await alive_nodes(store.log, run))


async def run_daemon(
    config: LoopConfig, promotion: PromotionConfig, stop: asyncio.Event, *,
    play: str = "auto",
    on_note: Callable[[str], None] = lambda s: None,
    on_decision: Callable[[HistoryEntry], None] = lambda h: None,
) -> None:
    """Evaluate every new checkpoint until ``stop``; report each decision as it lands."""
    async with open_store(config.nats) as store:
        status = ProjectionRunner(store, LoopStatusProjection(), config.run)
        registry = ProjectionRunner(store, ModelRegistryProjection(), config.run)
        await status.follow()
        await registry.follow()
        reported = registry.position
        try:
            if await supervisor_alive(store, config.run):
                on_note(f"the loop of run {config.run} is running: reporting its decisions")
                pipeline = None
            else:
                workers = await match_players_alive(store, config.run)
                local = play == "local" or (play == "auto" and not workers)
                on_note("evaluating every new checkpoint; pairs played "
                        + ("in this process" if local else "by the eval workers"))
                pipeline = InProcessEvaluation(store, config, promotion, play=local,
                                               paused=lambda: status.state.halted)
                await pipeline.__aenter__()
            try:
                while not stop.is_set():
                    if pipeline is not None:
                        pipeline.check()
                    state = registry.state
                    for entry in await history_entries(store, state, since_seq=reported):
                        on_decision(entry)
                    reported = max(reported, state.last_seq)
                    try:
                        await asyncio.wait_for(stop.wait(), 0.5)
                    except TimeoutError:
                        pass
            finally:
                if pipeline is not None:
                    await pipeline.__aexit__(None, None, None)
        finally:
            await status.stop()
            await registry.stop()

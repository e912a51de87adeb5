"""Judging one candidate: import it, have its matches played, and return the verdict.

``judge_candidate`` imports the checkpoint (``handlers.promotion.models.import_model``), then
awaits the decision. Who plays (``play``): ``loop`` relies on the running loop's evaluator and
eval workers; ``local`` runs the evaluator, referee and promoter here (``InProcessEvaluation``,
under the loop's own handler names, so the loop later carries on where they stopped) and
plays the pairs in-process with an ``EvalWorker`` (the loop's own match player, on the shared
WORK consumer); ``auto`` is ``loop`` when the loop's supervisor is running, else ``local``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from engine.games import get_game
from engine.openings import openings_for
from handlers.loop.config import LoopConfig
from handlers.loop.control import loop_status, open_store
from handlers.loop.supervisor import supervisor_alive
from handlers.promotion.config import PromotionConfig
from handlers.promotion.eval_worker import EvalWorker
from handlers.promotion.evaluator_service import build_evaluator
from handlers.promotion.models import IMPORTER, fold, import_model
from handlers.promotion.promoter_service import build_promoter
from handlers.promotion.referee import build_referee
from projections.matches import Matches, MatchesProjection, MatchState, candidate_matches
from projections.models import ModelRegistry, ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams.errors import PromotionError
from streams.store import EventStore

__all__ = [
    "InProcessEvaluation",
    "MatchSummary",
    "Verdict",
    "await_verdict",
    "judge_candidate",
    "summarize",
    "verdict_of",
]


class MatchSummary(msgspec.Struct, frozen=True, kw_only=True):
    match_id: str
    purpose: str
    opponent: str
    pairs: int
    max_pairs: int
    pentanomial: tuple[int, ...]
    elo: float
    ci95: float
    los: float
    llr: float
    lower: float
    upper: float
    completed: bool
    verdict: str = ""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    decision: str  # promoted | rejected
    seq: int
    reason: str = ""
    previous_champion: str = ""
    champion: str = ""
    matches: list[MatchSummary] = []

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"


def summarize(m: MatchState) -> MatchSummary:
    return MatchSummary(
        match_id=m.match_id, purpose=m.purpose, opponent=m.opponent.label, pairs=m.pairs,
        max_pairs=m.scheduled.max_pairs, pentanomial=tuple(m.pentanomial), elo=m.elo, ci95=m.ci95,
        los=m.los, llr=m.llr, lower=m.lower, upper=m.upper, completed=m.completed, verdict=m.verdict,
    )


def verdict_of(registry: ModelRegistry, matches: Matches, model_id: str) -> Verdict | None:
    """The decision on ``model_id`` as the log has it, or None while it is undecided."""
    figures = [summarize(m) for m in sorted(candidate_matches(matches, model_id), key=lambda m: m.match_id)]
    champion = registry.champion.model_id if registry.champion else ""
    promotion = next((p for p in registry.promotions if p.model_id == model_id and not p.initial), None)
    if promotion is not None:
        return Verdict(model_id=model_id, decision="promoted", seq=promotion.seq,
                       previous_champion=promotion.previous_champion, champion=champion, matches=figures)
    rejection = next((r for r in registry.rejections if r.model_id == model_id), None)
    if rejection is not None:
        return Verdict(model_id=model_id, decision="rejected", seq=rejection.seq, reason=rejection.reason,
                       champion=champion, matches=figures)
    return None


class InProcessEvaluation:
    """The evaluator, referee and promoter (the loop's handler names) and, with ``play``, an
    eval worker (``handlers.promotion.eval_worker``, the loop's own match player) as tasks of this process.
    ``async with`` runs them; ``check()`` re-raises a crash."""

    def __init__(self, store: EventStore, config: LoopConfig, promotion: PromotionConfig, *,
                 play: bool, paused: Callable[[], bool] = lambda: False):
        game = get_game(config.game.name, **config.game.params)
        run = config.run
        self.stop = asyncio.Event()
        self.shells = [
            build_evaluator(store, run, promotion, game.name, openings_for(game), paused=paused)[0],
            build_referee(store, run, paused=paused)[0],
            build_promoter(store, run, promotion, paused=paused)[0],
        ]
        self.worker = EvalWorker(store, run, config, stop=self.stop, halted=paused,
                                 node=f"{IMPORTER}-{socket.gethostname()}-{os.getpid()}") if play else None
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> InProcessEvaluation:
        self.tasks = [asyncio.create_task(s.run_until(self.stop)) for s in self.shells]
        if self.worker is not None:
            self.tasks.append(asyncio.create_task(self.worker.run_until_stopped()))
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.stop.set()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        if exc_info[0] is None:
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    def check(self) -> None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def await_verdict(
    store: EventStore, run: str, model_id: str, *,
    on_progress: Callable[[MatchSummary], None] = lambda m: None,
    check: Callable[[], None] = lambda: None,
    timeout: float | None = None,
    poll: float = 0.5,
) -> Verdict:
    """Follow the log until ``model_id`` is decided, reporting each match's progress as it moves."""
    registry = ProjectionRunner(store, ModelRegistryProjection(), run)
    matches = ProjectionRunner(store, MatchesProjection(), run)
    await registry.follow()
    await matches.follow()
    deadline = None if timeout is None else time.monotonic() + timeout
    shown: dict[str, tuple[int, bool]] = {}
    try:
        while True:
            check()
            seen = matches.state
            for m in sorted(candidate_matches(seen, model_id), key=lambda m: m.match_id):
                if shown.get(m.match_id) != (m.pairs, m.completed):
                    shown[m.match_id] = (m.pairs, m.completed)
                    on_progress(summarize(m))
            if verdict_of(registry.state, seen, model_id) is not None:
                return await _final_verdict(registry, matches, model_id)
            if deadline is not None and time.monotonic() > deadline:
                raise PromotionError(f"no verdict on {model_id} within {timeout:.0f} s; its matches go on")
            await _changed(matches, seen, poll)
            matches.raise_if_failed()
            registry.raise_if_failed()
    finally:
        await registry.stop()
        await matches.stop()


async def _final_verdict(registry: ProjectionRunner, matches: ProjectionRunner, model_id: str) -> Verdict:
    """The verdict once the matches projection has reached the decision too (two subscriptions)."""
    last = registry.position
    final = await matches.wait_for(lambda s: matches.position >= last, timeout=10)
    verdict = verdict_of(registry.state, final, model_id)
    assert verdict is not None  # the registry had it
    return verdict


async def _changed(runner: ProjectionRunner, seen, timeout: float) -> None:
    """Wait until ``runner``'s state is no longer ``seen``, at most ``timeout`` seconds."""
    try:
        await runner.wait_for(lambda s: s is not seen, timeout=timeout)
    except TimeoutError:
        pass


async def judge_candidate(
    config: LoopConfig, promotion: PromotionConfig, path: Path, *,
    play: str = "auto",
    on_note: Callable[[str], None] = lambda s: None,
    on_progress: Callable[[MatchSummary], None] = lambda m: None,
    timeout: float | None = None,
) -> Verdict:
    """Import ``path`` into the run, have its matches played, and return the verdict."""
    async with open_store(config.nats) as store:
        status = await loop_status(store, config.run)
        if status.halted:
            raise PromotionError(f"run {config.run} is halted ({status.halt_reason or 'no reason'}): "
                                 f"resume it first")
        imported = await import_model(store, config, path)
        if imported.already_known:
            on_note(f"{imported.model_id} is already in run {config.run} (#{imported.seq})")
        else:
            on_note(f"imported {imported.model_id} as #{imported.seq} (digest {imported.digest[:12]})")
        registry = await fold(store, ModelRegistryProjection(), config.run)
        if registry.is_decided(imported.model_id):
            matches = await fold(store, MatchesProjection(), config.run)
            known = verdict_of(registry, matches, imported.model_id)
            if known is None:  # decided without a verdict: the run's first model
                raise PromotionError(f"{imported.model_id} is the first model of run {config.run}: "
                                     f"there is nothing to judge it against")
            return known
        running = await supervisor_alive(store, config.run)
        if play == "loop" or (play == "auto" and running):
            if not running:
                raise PromotionError(f"no loop of run {config.run} is running to play the matches "
                                     f"(use --play local)")
            on_note("the running loop's evaluator and eval workers play the matches "
                    "(under the loop's promotion config: flag overrides do not apply)")
            return await await_verdict(store, config.run, imported.model_id, on_progress=on_progress,
                                       timeout=timeout)
        on_note("playing the matches in this process")
        async with InProcessEvaluation(store, config, promotion, play=True) as pipeline:
            return await await_verdict(store, config.run, imported.model_id, on_progress=on_progress,
                                       check=pipeline.check, timeout=timeout)

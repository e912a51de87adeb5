"""The promotion manager's library: import and judge a candidate, evaluate as a daemon, roll back,
and read the promotion history and the ratings ladder (``jetzero promotion ...`` and
``scripts/model_promotion_manager.py`` call these and only format what they return).

- ``judge_candidate``: an external checkpoint is validated (weights-only load, same game and
  architecture as the run's champion; else the run's config), stored in OBJ_MODELS and recorded
  as ``checkpoint.saved`` (source ``import``); then its matches are played and the verdict
  awaited. Who plays (``play``): ``loop`` relies on the running loop's evaluator and eval
  workers; ``local`` runs the evaluator, referee and promoter here (under the loop's own handler
  names, so the loop later carries on where they stopped) and plays the pairs in-process with
  an ``EvalWorker`` (the loop's own match player, on the shared WORK consumer);
  ``auto`` is ``loop`` when the loop's supervisor is running, else ``local``.
- ``run_daemon``: evaluates every new checkpoint until stopped. With the loop running it only
  reports the loop's decisions; otherwise it runs evaluator, referee and promoter here, and
  plays pairs here too unless eval workers are alive (their heartbeats carry the role
  ``evalworker``) at start — ``play="local"`` plays here regardless; local play and workers
  share one WORK consumer, so they never play a unit twice.
- ``rollback_champion``: ``champion.rolled_back`` under the champion aggregate's expected last
  sequence (a race with another decision is refused, not retried on a changed line).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from engine.checkpoint import load_checkpoint, read_meta
from engine.errors import CheckpointError
from engine.games import get_game
from engine.games.base import Game
from engine.network import NetworkConfig
from engine.openings import openings_for
from handlers.loop.config import LoopConfig
from handlers.loop.control import loop_status, open_store, supervisor_holder
from handlers.loop.controller import plan_rollback
from handlers.loop.supervisor import who
from handlers.promotion.config import PromotionConfig
from handlers.promotion.eval_worker import EvalWorker
from handlers.promotion.evaluator_service import MATCH_PLAYERS, build_evaluator
from handlers.promotion.promoter_service import build_promoter
from handlers.promotion.referee import build_referee
from projections.loop_status import LoopStatusProjection
from projections.matches import Matches, MatchesProjection, MatchState, candidate_matches
from projections.models import ModelRegistry, ModelRegistryProjection
from projections.ratings import Ratings, RatingsProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.envelope import derived_id
from streams.errors import ConcurrencyConflict, EventNotFound, JetzeroError, StoreError
from streams.kv import alive_nodes
from streams.objects import get_object, put_object, sha256
from streams.store import EventStore

__all__ = [
    "HistoryEntry",
    "Imported",
    "InProcessEvaluation",
    "MatchSummary",
    "PromotionError",
    "Verdict",
    "import_candidate",
    "judge_candidate",
    "promotion_history",
    "ratings_ladder",
    "rollback_champion",
    "run_daemon",
    "verdict_of",
]

IMPORTER = "promotion-manager"


class PromotionError(JetzeroError):
    """A candidate refused (unreadable, another game or architecture), a rollback refused, or
    an evaluation that cannot go on; the message says which and why."""


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


class Imported(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    digest: str
    seq: int
    game: str
    already_known: bool = False


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time: float
    kind: str  # initial | promoted | rejected | rolled_back
    model_id: str
    detail: str = ""
    figures: dict[str, float] = {}
    effective: bool = True  # promotions: on the champion's line now
    to_seq: int = 0  # rollbacks: the promotion rolled back to
    reverted: list[str] = []
    automatic: bool = False


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


# -- import ---------------------------------------------------------------------------------


async def _fold(store: EventStore, projection, run: str):
    return await ProjectionRunner(store, projection, run, use_snapshots=False).catch_up()


async def _expected(
    store: EventStore, registry: ModelRegistry, config: LoopConfig
) -> tuple[Game, NetworkConfig, str]:
    """The game and architecture a candidate must have: the champion's, else the config's."""
    champion = registry.champion
    record = registry.models.get(champion.model_id) if champion else None
    if record is not None and record.object_name:
        try:
            data = await get_object(store.log, names.OBJ_MODELS, record.object_name, record.digest or None)
            meta = await asyncio.to_thread(read_meta, data)
            game = get_game(meta.game, **meta.game_params)
            return game, meta.architecture, f"the champion {record.model_id}"
        except (StoreError, CheckpointError):
            pass  # an unreadable champion: fall back to the run's config
    game = get_game(config.game.name, **config.game.params)
    return game, config.network, f"the config of run {config.run}"


async def import_candidate(store: EventStore, config: LoopConfig, path: Path) -> Imported:
    """Validate ``path`` and record it as ``checkpoint.saved`` (source ``import``).

    Refused with ``PromotionError`` (and nothing stored or recorded): an unreadable or corrupt
    file, another game, another architecture, a run with no champion, or a model id the run
    already has with other weights. The same file imported again is recognised, not repeated.
    """
    registry = await _fold(store, ModelRegistryProjection(), config.run)
    if registry.champion is None:
        raise PromotionError(f"run {config.run} has no champion yet: nothing to evaluate {path} against")
    try:
        data = await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        raise PromotionError(f"cannot read candidate {path}: {exc.strerror or exc}") from None
    game, arch, source = await _expected(store, registry, config)
    try:
        _, meta = await asyncio.to_thread(load_checkpoint, data, game, arch)
    except CheckpointError as exc:
        raise PromotionError(
            f"candidate {path} refused: {exc} (checked against {source}, {game.name})"
        ) from None
    object_name = names.model_object(meta.model_id)
    digest = sha256(data)
    known = registry.models.get(meta.model_id)
    if known is not None:
        if known.digest != digest:
            raise PromotionError(
                f"candidate {path} refused: run {config.run} already has a different model "
                f"named {meta.model_id} (digest {known.digest[:12]}, this file {digest[:12]})"
            )
        return Imported(model_id=meta.model_id, digest=digest, seq=known.saved_seq, game=game.name,
                        already_known=True)
    await put_object(store.log, names.OBJ_MODELS, object_name, data)
    generation = registry.champion.generation + 1
    seq = await store.append(ev.CheckpointSaved(
        id=derived_id(f"import:{digest}", IMPORTER), time=time.time(), run=config.run,
        model_id=meta.model_id, object_name=object_name, digest=digest,
        parent_model=meta.parent_id or "", generation=generation, step=meta.step, game=game.name,
        architecture=msgspec.to_builtins(meta.architecture), source="import",
    ))
    return Imported(model_id=meta.model_id, digest=digest, seq=seq, game=game.name)


# -- evaluation -----------------------------------------------------------------------------


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
        imported = await import_candidate(store, config, path)
        if imported.already_known:
            on_note(f"{imported.model_id} is already in run {config.run} (#{imported.seq})")
        else:
            on_note(f"imported {imported.model_id} as #{imported.seq} (digest {imported.digest[:12]})")
        registry = await _fold(store, ModelRegistryProjection(), config.run)
        if registry.is_decided(imported.model_id):
            matches = await _fold(store, MatchesProjection(), config.run)
            known = verdict_of(registry, matches, imported.model_id)
            if known is None:  # decided without a verdict: the run's first model
                raise PromotionError(f"{imported.model_id} is the first model of run {config.run}: "
                                     f"there is nothing to judge it against")
            return known
        running = await supervisor_holder(store, config.run) is not None
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
            if await supervisor_holder(store, config.run) is not None:
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
                    for entry in await _entries(store, state, since_seq=reported):
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


# -- rollback, history, ratings -------------------------------------------------------------

ROLLBACK_ATTEMPTS = 5  # plans of a targeted rollback, each on the state a conflict revealed


async def rollback_champion(store: EventStore, run: str, *, to_seq: int = 0, model_id: str = "",
                            reason: str = "", by: str = "") -> tuple[ev.ChampionRolledBack, int]:
    """Append ``champion.rolled_back`` (see ``handlers.loop.controller.plan_rollback`` for the target).

    A rollback to a named promotion or model still means the same after a concurrent champion
    decision (a promotion by the running loop), so it is planned again on the new state, a few
    times; "back one step" would name another target then, so it is refused instead.
    """
    attempts = ROLLBACK_ATTEMPTS if (to_seq or model_id) else 1
    by = by or who()
    for _ in range(attempts):
        registry = await _fold(store, ModelRegistryProjection(), run)
        plan = plan_rollback(registry, to_seq=to_seq, model_id=model_id)
        if isinstance(plan, str):
            raise PromotionError(f"rollback refused: {plan}")
        event = ev.ChampionRolledBack.new(
            run, to_promotion_seq=plan.target.seq, model_id=plan.target.model_id,
            reverted_models=plan.reverted, reason=reason or f"rolled back by hand by {by}",
        )
        try:
            seq = await store.append(event, expected_last_seq=registry.champion_last_seq)
        except ConcurrencyConflict:
            continue
        return event, seq
    raise PromotionError("rollback refused: the champion changed while it was planned; "
                         "check the history and try again")


def _gate_figures(gates: list[ev.GateResult]) -> dict[str, float]:
    sprt = next((g for g in gates if g.gate == "sprt"), None)
    return dict(sprt.figures) if sprt is not None else {}


async def _decision_event(store: EventStore, seq: int):
    try:
        return (await store.get(seq)).event
    except EventNotFound:
        return None


async def _entries(store: EventStore, registry: ModelRegistry, since_seq: int = 0) -> list[HistoryEntry]:
    out: list[HistoryEntry] = []
    for p in registry.promotions:
        if p.seq <= since_seq:
            continue
        if p.initial:
            out.append(HistoryEntry(seq=p.seq, time=p.time, kind="initial", model_id=p.model_id,
                                    detail="the first model", effective=not p.reverted))
            continue
        event = await _decision_event(store, p.seq)
        gates = event.gates if isinstance(event, ev.CandidatePromoted) else []
        detail = "; ".join(f"{g.gate}: {g.detail}" for g in gates)
        out.append(HistoryEntry(seq=p.seq, time=p.time, kind="promoted", model_id=p.model_id,
                                detail=detail, figures=_gate_figures(gates), effective=not p.reverted))
    for r in registry.rejections:
        if r.seq > since_seq:
            event = await _decision_event(store, r.seq)
            gates = event.gates if isinstance(event, ev.CandidateRejected) else []
            out.append(HistoryEntry(seq=r.seq, time=r.time, kind="rejected", model_id=r.model_id,
                                    detail=r.reason, figures=_gate_figures(gates)))
    for b in registry.rollbacks:
        if b.seq > since_seq:
            out.append(HistoryEntry(seq=b.seq, time=b.time, kind="rolled_back", model_id=b.model_id,
                                    detail=b.reason, figures=dict(b.evidence), to_seq=b.to_promotion_seq,
                                    reverted=list(b.reverted_models), automatic=b.automatic))
    return sorted(out, key=lambda e: e.seq)


async def promotion_history(store: EventStore, run: str) -> tuple[ModelRegistry, list[HistoryEntry]]:
    """The registry and every promotion, rejection and rollback of ``run``, oldest first."""
    registry = await _fold(store, ModelRegistryProjection(), run)
    return registry, await _entries(store, registry)


async def ratings_ladder(store: EventStore, run: str) -> Ratings:
    return await _fold(store, RatingsProjection(), run)

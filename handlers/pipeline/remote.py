"""The non-regression match over WORK: the pipeline's side.

``WorkMatch(nats, run)`` is what ``validate`` calls (``Hooks.work``) before playing the match
itself. It looks for live pipeline match players of the run (an eval agent runs one:
``handlers.pipeline.work_player``; their heartbeats, role ``names.PIPELINE_PLAYERS``, not
halted); with none, or no log reachable, it returns None and the match is played here. Else:

- it ships both sides — the code as a tar.gz of the files git sees in each checkout (the PR's
  working tree as it is, uncommitted changes included: the code the local match would play)
  and the models — into the object store under names made of their sha256
  (``handlers.pipeline.bundle``);
- it plans the match's pairs as the local match does (``match.plan_pairs``: openings and
  flips from the seed) and hands them out as ``work.pipeline_unit`` items of
  ``match.work.pairs_per_unit`` pairs, at most ``units_per_agent`` per live player at a time,
  none once the SPRT has decided;
- it follows the validation's ``pipeline.pair_played`` events and folds each pair once into
  the same pentanomial SPRT (``match.SprtFold``: in pair order, so the verdict is the one the
  local match reaches with the same seed when the engines are deterministic);
- a unit not fully reported within ``unit_timeout_s`` of its hand-out, or reported as an
  ``error``, is played here with the local engines (the same pair code), its results appended
  under the same ids (``work_player.pair_event_id``), so a pair played both here and by an
  agent is stored and counted once; an ``illegal`` report ends the match as locally;
- once decided it records ``pipeline.match_decided`` (agents skip the units still queued).

``WorkResult`` has the outcome and who played the counted pairs (agents by name,
``local:<host>``).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from engine.games.base import Game
from handlers.loop.control import open_store
from handlers.pipeline.bundle import pack_tree
from handlers.pipeline.config import MatchGate
from handlers.pipeline.engines import EngineProcess
from handlers.pipeline.match import (
    IllegalMovePlayed,
    MatchOutcome,
    PairPlan,
    PairPlayed,
    Progress,
    SprtFold,
    plan_pairs,
    play_pairs,
)
from handlers.pipeline.work_player import PLAYER, pair_event
from streams import names
from streams.config import NatsSettings
from streams.envelope import derived_id
from streams.errors import JetzeroError
from streams.kv import alive_nodes
from streams.objects import put_object
from streams.pipeline_events import (
    CodeVersion,
    PipelineMatchDecided,
    PipelineMatchUnit,
    PipelinePairPlayed,
    UnitPair,
)
from streams.store import EventStore

__all__ = ["SideToShip", "WorkMatch", "WorkPlan", "WorkResult", "live_players"]

POLL_S = 0.2


@dataclass(frozen=True)
class SideToShip:
    label: str  # candidate | base
    root: str  # its checkout
    model: str  # its checkpoint file
    commit: str = ""


@dataclass
class WorkPlan:
    """One validation's match, as ``validate`` hands it over."""

    validation_id: str
    game: Game
    game_line_params: dict[str, int]
    gate: MatchGate
    seed: int
    threads: int
    candidate: SideToShip
    base: SideToShip
    engines: tuple[EngineProcess, EngineProcess]  # candidate, base: for the units played here
    progress: Progress = lambda m: None


@dataclass
class WorkResult:
    outcome: MatchOutcome
    played_by: dict[str, int]  # counted pairs by who played them
    players: list[str]  # the live players seen at the start
    units: int = 0  # handed out
    units_here: int = 0  # played here (timed out or failed remotely)

    @property
    def pairs_remote(self) -> int:
        return sum(n for who, n in self.played_by.items() if not who.startswith("local:"))

    def where(self) -> str:
        by = ", ".join(f"{who} {n}" for who, n in sorted(self.played_by.items())) or "none"
        return (f"played over WORK ({len(self.players)} agent(s) live, {self.units} units, "
                f"{self.units_here} played here): pairs by {by}")


async def live_players(store: EventStore, run: str) -> list[str]:
    """The pipeline match players of ``run`` whose heartbeat is live and not halted."""
    beats = await alive_nodes(store.log, run)
    return sorted(b.node for b in beats if PLAYER in b.roles and not b.detail.get("halted"))


@dataclass
class _Unit:
    unit: PipelineMatchUnit
    handed_at: float
    here: bool = False  # given to the local engines

    def indices(self) -> list[int]:
        return [p.pair_index for p in self.unit.pairs]


@dataclass
class _Match:
    """The state of one match over WORK while it is played."""

    plan: WorkPlan
    store: EventStore
    run: str
    local: str
    fold: SprtFold
    units: list[PipelineMatchUnit]
    handed: list[_Unit] = field(default_factory=list)
    who: dict[int, str] = field(default_factory=dict)  # first report per pair index
    illegal: str = ""
    local_task: asyncio.Task | None = None
    local_queue: list[_Unit] = field(default_factory=list)


class WorkMatch:
    """Plays a validation's match over WORK when players are live (see the module docstring)."""

    def __init__(self, nats: NatsSettings, run: str, *, note: Callable[[str], None] = lambda text: None):
        self.nats = nats
        self.run = run
        self.note = note
        self.local = f"local:{socket.gethostname()}"

    def __call__(self, plan: WorkPlan) -> WorkResult | None:
        try:
            return asyncio.run(self._play(plan))
        except (OSError, TimeoutError) as exc:
            self.note(f"match over WORK not possible ({exc or type(exc).__name__}): played here")
            return None

    async def _play(self, plan: WorkPlan) -> WorkResult | None:
        async with AsyncExitStack() as stack:
            try:
                store = await stack.enter_async_context(open_store(self.nats))
                players = await live_players(store, self.run)
            except (JetzeroError, OSError, TimeoutError) as exc:
                self.note(f"no log reachable for a match over WORK ({exc or type(exc).__name__}): "
                          "played here")
                return None
            if not players:
                self.note(f"no eval agent of run {self.run} connected: the match is played here")
                return None
            self.note(f"match over WORK: {len(players)} agent(s) live ({', '.join(players)})")
            return await self._over_work(store, plan, players)
        return None

    async def _over_work(self, store: EventStore, plan: WorkPlan, players: list[str]) -> WorkResult:
        sides = [await self._ship(store, side) for side in (plan.candidate, plan.base)]
        units = _units(self.run, plan, sides[0], sides[1])
        match = _Match(plan, store, self.run, self.local, SprtFold(plan.gate, plan.progress), units)
        aggregate = names.pipeline_validation_aggregate(plan.validation_id)
        reports: asyncio.Queue[PipelinePairPlayed] = asyncio.Queue()
        follower = asyncio.create_task(_follow(store, self.run, aggregate, reports))
        try:
            await _run(match, reports, plan.gate.work.units_per_agent * len(players))
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        outcome = match.fold.outcome
        if match.illegal:
            outcome = _with_illegal(match.fold, match.illegal)
        await store.append(PipelineMatchDecided(
            id=derived_id(plan.validation_id, "pipeline-match-decided"), time=time.time(), run=self.run,
            correlation_id=plan.validation_id, validation_id=plan.validation_id,
            verdict="illegal" if match.illegal else outcome.verdict, pairs=outcome.pairs,
            pentanomial=list(outcome.pentanomial)))
        counted = Counter(match.who[i] for i in range(outcome.pairs) if i in match.who)
        return WorkResult(outcome=outcome, played_by=dict(counted), players=players, units=len(match.handed),
                          units_here=sum(u.here for u in match.handed))

    async def _ship(self, store: EventStore, side: SideToShip) -> CodeVersion:
        code, code_digest = await asyncio.to_thread(pack_tree, side.root)
        model = await asyncio.to_thread(Path(side.model).read_bytes)
        model_digest = hashlib.sha256(model).hexdigest()
        code_object = names.pipeline_code_object(code_digest)
        model_object = names.pipeline_model_object(model_digest)
        await put_object(store.log, names.OBJ_MODELS, code_object, code)
        await put_object(store.log, names.OBJ_MODELS, model_object, model)
        self.note(f"{side.label}: code {code_digest[:12]} ({len(code) / 1e6:.1f} MB, "
                  f"{side.commit[:19] or '?'}), model {model_digest[:12]} shipped")
        return CodeVersion(label=side.label, commit=side.commit, code_object=code_object,
                           code_digest=code_digest, model_object=model_object, model_digest=model_digest)


def _units(run: str, plan: WorkPlan, candidate: CodeVersion, base: CodeVersion) -> list[PipelineMatchUnit]:
    gate = plan.gate
    pairs = plan_pairs(plan.game, gate.max_pairs, plan.seed)
    size = gate.work.pairs_per_unit
    return [PipelineMatchUnit(
        id=derived_id(plan.validation_id, "pipeline-unit", k), time=0.0, run=run,
        correlation_id=plan.validation_id, validation_id=plan.validation_id, unit_id=k,
        game=plan.game.name, game_params=dict(plan.game_line_params), candidate=candidate, base=base,
        simulations=gate.simulations, threads=plan.threads, seed=plan.seed,
        move_timeout_s=gate.move_timeout_s,
        pairs=[UnitPair(pair_index=p.index, opening=list(p.opening), flip=p.flip) for p in pairs[i:i + size]])
        for k, i in enumerate(range(0, len(pairs), size))]


async def _follow(store: EventStore, run: str, aggregate: str, reports: asyncio.Queue) -> None:
    subjects = names.aggregate_filter(names.EVENTS, run, aggregate)
    async for stored in store.read(names.EVENTS, subject_filter=subjects, follow=True):
        if isinstance(stored.event, PipelinePairPlayed):
            await reports.put(stored.event)


async def _run(match: _Match, reports: asyncio.Queue[PipelinePairPlayed], in_flight: int) -> None:
    """Hand units out, fold reports, play timed-out or failed units here, until decided."""
    fold = match.fold
    while not fold.decided and not match.illegal:
        await _hand_out(match, in_flight)
        try:
            report = await asyncio.wait_for(reports.get(), POLL_S)
        except TimeoutError:
            report = None
        while report is not None:
            _take(match, report)
            report = reports.get_nowait() if not reports.empty() else None
        _fall_back(match)
        _start_local(match)
        if match.local_task is not None and match.local_task.done():
            task, match.local_task = match.local_task, None
            if (exc := task.exception()) is not None:
                if isinstance(exc, IllegalMovePlayed):
                    match.illegal = str(exc)
                else:
                    raise exc
    if match.local_task is not None:  # it stops at its next finished pair (fold decided)
        await asyncio.gather(match.local_task, return_exceptions=True)


async def _hand_out(match: _Match, in_flight: int) -> None:
    outstanding = sum(1 for u in match.handed if not u.here and not _done(match, u))
    while not match.fold.decided and len(match.handed) < len(match.units) and outstanding < in_flight:
        unit = msgspec.structs.replace(match.units[len(match.handed)], time=time.time())
        await match.store.append(unit)
        match.handed.append(_Unit(unit, time.monotonic()))
        outstanding += 1


def _done(match: _Match, unit: _Unit) -> bool:
    return all(i in match.who or i < match.fold.next_index for i in unit.indices())


def _take(match: _Match, report: PipelinePairPlayed) -> None:
    if report.illegal:
        match.illegal = match.illegal or report.illegal
    elif report.error:
        for unit in match.handed:
            if unit.unit.unit_id == report.unit_id and not unit.here:
                unit.here = True
                match.local_queue.append(unit)
    elif 0 <= report.pentanomial <= 4 and report.pair_index not in match.who:
        match.who[report.pair_index] = report.worker
        match.fold.add(report.pair_index, report.pentanomial)


def _fall_back(match: _Match) -> None:
    """Units handed out longer than the timeout ago and not fully reported: played here."""
    limit = match.plan.gate.work.unit_timeout_s
    now = time.monotonic()
    for unit in match.handed:
        if not unit.here and now - unit.handed_at > limit and not _done(match, unit):
            unit.here = True
            match.local_queue.append(unit)


def _start_local(match: _Match) -> None:
    if match.local_task is not None or not match.local_queue or match.fold.decided:
        return
    units, match.local_queue = match.local_queue, []
    pairs = [PairPlan(index=p.pair_index, opening=tuple(p.opening), flip=p.flip)
             for u in units for p in u.unit.pairs if p.pair_index not in match.who]
    if not pairs:
        return
    by_index = {p.pair_index: u.unit for u in units for p in u.unit.pairs}
    loop = asyncio.get_running_loop()

    def publish(played: PairPlayed) -> bool:
        event = pair_event(match.run, by_index[played.index], played.index, match.local, played=played)
        asyncio.run_coroutine_threadsafe(match.store.append(event), loop).result(60)
        return not match.fold.decided

    candidate, base = match.plan.engines
    gate = match.plan.gate
    match.local_task = asyncio.create_task(asyncio.to_thread(
        play_pairs, match.plan.game, candidate, base, pairs, simulations=gate.simulations,
        in_flight=gate.pairs_in_flight, on_pair=publish))


def _with_illegal(fold: SprtFold, illegal: str) -> MatchOutcome:
    return msgspec.structs.replace(fold.outcome, illegal=illegal)

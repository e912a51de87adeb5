"""The evaluation worker: plays match units from WORK and reports each pair as ``match.pair_played``.

Any number of workers, in any process on any machine, share the run's one durable pull
consumer of match units (``match_work_consumer``; the WORK stream's work-queue retention
gives each unit to one worker). A worker fetches up to ``evaluation.units_per_batch`` units
at a time and:

- acknowledges a unit without play when its match is already completed (matches projection);
- plays the pairs not yet counted of all its units together (``engine.batched_arena``: one
  move in every game per step, in a thread; the searches of one model are batched across
  games, about 4x the match throughput of one game at a time), players from ``PlayersCache``
  (fresh, seeded by the pair, per game), the pair's opening or seeded random plies;
- appends one ``match.pair_played`` per pair as soon as its two games end, with an id derived
  from the match and the pair index (``match_play.pair_event_id``, the one the in-process
  match player uses too), so a pair played again, by a second worker after a crash or by the
  same one, lands once; the projection counts a pair index once anyway;
- drops the games of a match that completed meanwhile (its SPRT decided), and acks a unit
  once its pairs are reported or its match is complete;
- signals ``in_progress`` after every pair and every ``ack_wait / 3``, so a live worker keeps
  its units while a dead worker's units go to another after ``ack_wait``;
- between steps, on stop or halt, gives its unfinished units back (nak: at once
  redeliverable, and the pairs it already reported are skipped by whoever takes them).
  While the loop is halted it takes no unit, so no match game starts.

A unit that does not decode, or that cannot be played (unknown player kind, a model whose
checkpoint is missing or corrupt, an illegal opening, another game) is recorded as
``event.rejected`` and acknowledged. A heartbeat carries ``pairs_played`` and
``games_per_minute`` (games finished in the last minute).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.arena import PairResult, random_opening
from engine.batched_arena import BatchedGames, GameJob, pair_jobs, pair_result
from engine.devices import resolve_device
from engine.errors import IllegalMove
from engine.games import get_game
from engine.games.base import Game
from engine.network import set_process_device, set_torch_threads
from handlers.loop.config import LoopConfig
from handlers.promotion.config import PromotionConfig
from handlers.promotion.evaluator_service import MATCH_PLAYERS, match_work_consumer
from handlers.promotion.match_play import pair_event_id
from handlers.promotion.players_cache import PlayersCache, PlayerUnavailable
from projections.matches import MatchesProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import codec, names
from streams import events as ev
from streams.consumer import Delivery
from streams.errors import DecodeError
from streams.kv import Heartbeat, beat
from streams.rejections import reject_delivery
from streams.store import EventStore
from streams.work import MatchUnit, PairSpec

__all__ = [
    "ACK_WAIT_S",
    "HANDLER",
    "RANDOM_PLIES",
    "EvalWorker",
    "WorkerStats",
    "pair_opening",
    "pair_played",
    "player_seeds",
    "serve",
]

HANDLER = MATCH_PLAYERS  # "evalworker": heartbeat role, rejection handler name
ACK_WAIT_S = 30.0  # a dead worker's unit goes to another after this long
RANDOM_PLIES = 2  # random first moves of a pair with no opening (seeded by the pair)
RETRY_DELAY_S = 5.0  # a unit naming a model not registered yet comes back after this long
UNKNOWN_DELAY_S = 30.0  # a work item of a newer build is left for a newer worker
RATE_WINDOW_S = 60.0

log = logging.getLogger(__name__)


# -- the pure part --------------------------------------------------------------------------


def player_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the candidate and the opponent of the pair seeded ``seed``."""
    a, b = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    return int(a) >> 1, int(b) >> 1


def pair_opening(game: Game, pair: PairSpec, random_plies: int = RANDOM_PLIES) -> tuple[int, ...]:
    """The pair's opening, or ``random_plies`` random moves drawn by the pair's seed."""
    if pair.opening:
        return tuple(int(m) for m in pair.opening)
    return random_opening(game, random_plies, np.random.default_rng(pair.seed))


def pair_played(
    run: str, unit: MatchUnit, pair: PairSpec, result: PairResult, worker: str
) -> ev.MatchPairPlayed:
    """The ``match.pair_played`` of ``pair`` of ``unit`` (id fixed by match and pair index)."""
    first = result.games[0]
    return ev.MatchPairPlayed(
        id=pair_event_id(unit.match_id, pair.pair_index),
        time=time.time(),
        run=run,
        causation_id=unit.id,
        correlation_id=unit.correlation_id or unit.id,
        match_id=unit.match_id,
        unit_id=unit.unit_id,
        pair_index=pair.pair_index,
        opening=list(first.moves[: first.opening_plies]),
        pentanomial=result.pentanomial_index,
        games=[list(g.moves) for g in result.games],
        outcomes=[g.outcome for g in result.games],
        worker=worker,
    )


@dataclass
class _UnitPlay:
    """A unit being played: its pairs still to report, each with its two game indices."""

    unit: MatchUnit
    delivery: Delivery
    pending: dict[int, tuple[PairSpec, int, int]] = field(default_factory=dict)
    settled: bool = False  # acked, given back or rejected


@dataclass
class WorkerStats:
    pairs_played: int = 0
    units_done: int = 0
    units_skipped: int = 0  # their match was already completed
    units_rejected: int = 0
    units_abandoned: int = 0  # given back on stop or halt
    recent_games: deque[float] = field(default_factory=deque)  # monotonic end times

    def played(self, now: float, games: int = 2) -> None:
        self.pairs_played += 1
        self.recent_games.extend([now] * games)

    def games_per_minute(self, now: float) -> float:
        while self.recent_games and self.recent_games[0] < now - RATE_WINDOW_S:
            self.recent_games.popleft()
        return len(self.recent_games) * 60.0 / RATE_WINDOW_S


# -- the worker -----------------------------------------------------------------------------


class EvalWorker:
    """One match player on the shared consumer of ``run``'s match units.

    ``ack_wait`` is what the consumer gets if this worker creates it; a worker binding to an
    existing one keeps in step with the ack wait the server has (``self.ack_wait`` after start).
    """

    def __init__(
        self,
        store: EventStore,
        run: str,
        config: LoopConfig,
        *,
        stop: asyncio.Event,
        halted: Callable[[], bool] = lambda: False,
        node: str = "",
        ack_wait: float = ACK_WAIT_S,
        poll_s: float = 0.5,
        simulations: int = PromotionConfig().simulations,
    ):
        self.store = store
        self.run = run
        self.config = config
        self.stop = stop
        self.halted = halted
        self.node = node or f"{socket.gethostname()}-{HANDLER}"
        self.ack_wait = ack_wait
        self.poll_s = poll_s
        self.beat_every = config.health.interval_s
        self.game = get_game(config.game.name, **config.game.params)
        self.consumer = match_work_consumer(store.log, run)
        self.registry = ProjectionRunner(store, ModelRegistryProjection(), run)
        self.matches = ProjectionRunner(store, MatchesProjection(), run)
        self.players = PlayersCache(
            store.log, self.game, self.registry, default_simulations=simulations
        )
        self.stats = WorkerStats()
        self.units_per_batch = config.evaluation.units_per_batch
        self._current: list[Delivery] = []  # the units being played
        self._touched = 0.0  # when it was last marked in progress

    async def run_until_stopped(self) -> None:
        await self.registry.follow()
        await self.matches.follow()
        await self.consumer.open(ack_wait=self.ack_wait)
        self.ack_wait = await self._bound_ack_wait()
        pulse = asyncio.create_task(self._pulse())
        try:
            while not self.stop.is_set():
                self.registry.raise_if_failed()  # a fold error is a bug: crash loudly
                self.matches.raise_if_failed()
                if self.halted():
                    await self._sleep(self.poll_s)
                    continue
                deliveries = await self.consumer.fetch(self.units_per_batch, timeout=self.poll_s)
                if deliveries:
                    await self.take(deliveries)
        finally:
            pulse.cancel()
            await asyncio.gather(pulse, return_exceptions=True)
            await self.consumer.close()
            await self.registry.stop()
            await self.matches.stop()

    async def take(self, deliveries: list[Delivery]) -> None:
        """Decode the fetched work items and play the playable units together."""
        units = []
        for delivery in deliveries:
            unit = await self._accept(delivery)
            if unit is not None:
                units.append(_UnitPlay(unit, delivery))
        if units:
            await self.play_units(units)

    async def _accept(self, delivery: Delivery) -> MatchUnit | None:
        """The unit in ``delivery`` if it is to be played; otherwise settle it and say why."""
        try:
            item = codec.decode(delivery.data)
        except DecodeError as exc:
            await self._reject(delivery, str(exc))
            return None
        if isinstance(item, codec.UnknownEvent):
            log.warning("%s: work item %r of a newer build left for a newer worker", self.node, item.type)
            await delivery.nak(delay=UNKNOWN_DELAY_S)
            return None
        if not isinstance(item, MatchUnit):
            await self._reject(delivery, f"not a match unit: {item.tag}")
            return None
        if item.game != self.game.name:
            reason = f"unit {item.unit_id} is for {item.game}; this run plays {self.game.name}"
            await self._reject(delivery, reason)
            return None
        if self._completed(item.match_id):
            self.stats.units_skipped += 1
            log.info("%s: unit %s skipped: match %s is completed", self.node, item.unit_id, item.match_id)
            await delivery.ack()
            return None
        if delivery.delivered > 1:
            log.info("%s: unit %s redelivered (delivery %d)", self.node, item.unit_id, delivery.delivered)
        return item

    def _completed(self, match_id: str) -> bool:
        match = self.matches.state.get(match_id)
        return match is not None and match.completed

    async def play_units(self, plays: list[_UnitPlay]) -> None:
        """Play the uncounted pairs of every unit in one batch; ack, give back or reject each."""
        jobs: list[GameJob] = []
        for play in plays:
            problem = await self._prepare(play, jobs)
            if problem is not None:
                await self._settle_unplayable(play, problem)
        live = [p for p in plays if not p.settled]
        if not live:
            return
        games = BatchedGames(self.game, jobs)
        self._current, self._touched = [p.delivery for p in live], time.monotonic()
        try:
            while True:
                await self._report(live, games)
                if all(p.settled for p in live):
                    return
                if self.stop.is_set() or self.halted():
                    for play in live:
                        if not play.settled:
                            play.settled = True
                            self.stats.units_abandoned += 1
                            log.info("%s: unit %s given back (stop or halt)", self.node, play.unit.unit_id)
                            await play.delivery.nak()
                    return
                try:
                    await asyncio.to_thread(games.step)
                except IllegalMove as exc:
                    for play in live:
                        if not play.settled:
                            await self._settle_unplayable(play, f"unit {play.unit.unit_id}: {exc}")
                    return
        finally:
            self._current = []

    async def _prepare(self, play: _UnitPlay, jobs: list[GameJob]) -> str | None:
        """Add the games of ``play``'s uncounted pairs to ``jobs``; None, ``retry`` or why not."""
        unit = play.unit
        match = self.matches.state.get(unit.match_id)
        for pair in unit.pairs:
            if match is not None and pair.pair_index in match.pairs_counted:
                continue
            candidate_seed, opponent_seed = player_seeds(pair.seed)
            try:
                sides = [
                    await self.players.player(unit.candidate, candidate_seed),
                    await self.players.player(unit.opponent, opponent_seed),
                    await self.players.player(unit.opponent, opponent_seed),
                    await self.players.player(unit.candidate, candidate_seed),
                ]
                opening = pair_opening(self.game, pair)
                self.game.from_moves(opening)
            except PlayerUnavailable as exc:
                if exc.retry:
                    log.warning("%s: unit %s put back: %s", self.node, unit.unit_id, exc)
                    return "retry"
                return f"unit {unit.unit_id}: {exc}"
            except IllegalMove as exc:
                return f"unit {unit.unit_id} pair {pair.pair_index}: illegal opening: {exc}"
            first, second = pair_jobs((sides[0], sides[1]), (sides[2], sides[3]), opening)
            play.pending[pair.pair_index] = (pair, len(jobs), len(jobs) + 1)
            jobs.extend((first, second))
        return None

    async def _settle_unplayable(self, play: _UnitPlay, problem: str) -> None:
        play.settled = True
        if problem == "retry":
            await play.delivery.nak(delay=RETRY_DELAY_S)
        else:
            await self._reject(play.delivery, problem)

    async def _report(self, plays: list[_UnitPlay], games: BatchedGames) -> None:
        """Append every newly finished pair; settle units whose match completed or that are done."""
        for play in plays:
            if play.settled:
                continue
            if self._completed(play.unit.match_id):  # decided meanwhile: the rest is not needed
                for _, first, second in play.pending.values():
                    games.cancel(first)
                    games.cancel(second)
                play.pending.clear()
            for index, (pair, first, second) in list(play.pending.items()):
                a_first, b_first = games.results[first], games.results[second]
                if a_first is None or b_first is None:
                    continue
                result = pair_result(a_first, b_first)
                await self.store.append(pair_played(self.run, play.unit, pair, result, self.node))
                self.stats.played(time.monotonic())
                del play.pending[index]
                await play.delivery.in_progress()
            if not play.pending:
                play.settled = True
                self.stats.units_done += 1
                await play.delivery.ack()

    async def _reject(self, delivery: Delivery, reason: str) -> None:
        """Record an unplayable work item once as ``event.rejected`` (``streams.rejections``), ack it."""
        self.stats.units_rejected += 1
        await reject_delivery(self.store, self.run, names.WORK, delivery, reason, HANDLER)

    # -- liveness ---------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        s = self.stats
        await beat(
            self.store.log,
            self.run,
            Heartbeat(
                node=self.node,
                host="",
                roles=[HANDLER],
                detail={
                    "pairs_played": float(s.pairs_played),
                    "games_per_minute": s.games_per_minute(time.monotonic()),
                    "units_done": float(s.units_done),
                    "units_skipped": float(s.units_skipped),
                    "units_rejected": float(s.units_rejected),
                    "units_abandoned": float(s.units_abandoned),
                    "busy": float(len(self._current)),
                    "halted": 1.0 if self.halted() else 0.0,
                },
            ),
        )

    async def _pulse(self) -> None:
        """Keep the unit being played from redelivery; heartbeat every ``beat_every``."""
        touch_every = self.ack_wait / 3
        last_beat = -float("inf")
        while True:
            now = time.monotonic()
            current = list(self._current)
            if current and now - self._touched >= touch_every:
                try:
                    for delivery in current:
                        await delivery.in_progress()
                    self._touched = now
                except Exception as exc:  # noqa: BLE001 - retried on the next tick
                    log.warning("%s: in-progress signal failed: %s", self.node, exc)
            if now - last_beat >= self.beat_every:
                try:
                    await self.heartbeat()
                    last_beat = now
                except Exception as exc:  # noqa: BLE001 - a lost beat is retried on the next tick
                    log.warning("%s: heartbeat failed: %s", self.node, exc)
            await asyncio.sleep(min(self.beat_every, touch_every))  # a timer, not synchronisation

    async def _bound_ack_wait(self) -> float:
        """The ack wait of the consumer as it is on the server (whoever made it first set it)."""
        try:
            bound = await self.consumer.ack_wait() or self.ack_wait
        except Exception as exc:  # noqa: BLE001 - unknown: keep ours, and say so
            log.warning(
                "%s: cannot read the consumer's ack wait (%s); assuming %.0f s", self.node, exc, self.ack_wait
            )
            return self.ack_wait
        if bound != self.ack_wait:
            log.info("%s: the shared consumer's ack wait is %.1f s", self.node, bound)
        return bound

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass


async def serve(ctx, config: LoopConfig, *, promotion: PromotionConfig) -> None:
    """The evaluation worker service: plays match units until stopped; idle while halted.
    ``promotion`` is the config in force (``simulations``: a model player's default search)."""
    set_torch_threads(config.evaluation.torch_threads)
    device = resolve_device(config.evaluation.device)
    set_process_device(device, half=config.evaluation.half_precision)  # the players' nets
    log.info("evaluation worker: device %s, %d torch thread(s)", device, config.evaluation.torch_threads)
    index = int(ctx.extra.get("index", 0))
    node = ctx.extra.get("node") or f"{socket.gethostname()}-{HANDLER}-{index}"
    worker = EvalWorker(ctx.store, ctx.run, config, stop=ctx.stop, halted=lambda: ctx.halted, node=node,
                        simulations=promotion.simulations)
    await worker.run_until_stopped()

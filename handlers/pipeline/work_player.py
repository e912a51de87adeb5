"""The pipeline match player: plays a validation's match units from WORK on an eval agent.

An eval agent (``jetzero agent --roles eval``) runs one ``PipelinePlayer`` beside its
evaluation worker (``handlers.cluster.agent`` names this module by string: the cluster and the
pipeline are peer surfaces). Every player of a run shares one durable pull consumer of
``work.pipeline_unit`` items (``pipeline_work_consumer``; WORK's work-queue retention gives
each unit to one player) and, for a unit:

- skips it (acknowledged, not played) when its validation's match is already decided
  (``pipeline.match_decided`` on the validation's aggregate);
- fetches both sides' code and model from the object store, each verified against the digest
  the unit names, unpacks each code version once into its cache folder keyed by the digest
  (``handlers.pipeline.bundle``) and starts the two engine processes from there
  (``handlers.pipeline.engines``), kept for the next unit of the same validation;
- plays the unit's pairs with the local match's own pair code (``match.play_pairs``: lockstep,
  both engines searching at once), and appends one ``pipeline.pair_played`` per finished pair
  with an id fixed by the validation and the pair index (``pair_event_id``: the pipeline's own
  fallback play uses it too), so a unit played twice — redelivered after a crash, or played
  by the pipeline meanwhile — is stored once;
- reports a move the rules refuse as ``illegal`` and a unit it cannot play (objects missing or
  corrupt, an engine that fails) as ``error`` on each pair left, so the pipeline acts at once
  (the match fails; the pipeline plays those pairs itself), and acknowledges the unit.

While a unit is played it is marked in progress every ``ack_wait / 3``; a player that dies
leaves it to another after ``ack_wait``. It heartbeats (role ``names.PIPELINE_PLAYERS``, with
``halted``) into the heartbeats bucket: that is how the pipeline sees that a player is there.
While the loop is halted it takes no unit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.games import get_game
from handlers.pipeline.bundle import prune_cache, unpack_cached
from handlers.pipeline.engines import EngineProcess, EngineSide
from handlers.pipeline.match import IllegalMovePlayed, PairPlan, PairPlayed, play_pairs
from streams import codec, names
from streams.connection import Log
from streams.consumer import Delivery, DurableConsumer
from streams.envelope import derived_id, tag_of
from streams.errors import DecodeError, JetzeroError
from streams.kv import Heartbeat, beat
from streams.objects import get_object
from streams.pipeline_events import CodeVersion, PipelineMatchDecided, PipelineMatchUnit, PipelinePairPlayed
from streams.rejections import reject_delivery
from streams.store import EventStore

__all__ = [
    "ACK_WAIT_S",
    "PLAYER",
    "PipelinePlayer",
    "PlayerStats",
    "default_cache",
    "pair_event",
    "pair_event_id",
    "pipeline_work_consumer",
    "serve",
]

PLAYER = names.PIPELINE_PLAYERS  # durable consumer, heartbeat role, rejection handler name
ACK_WAIT_S = 60.0  # a dead player's unit goes to another after this long
UNKNOWN_DELAY_S = 30.0  # a work item of a newer build is left for a newer player
PUBLISH_TIMEOUT_S = 60.0

log = logging.getLogger(__name__)


def pipeline_work_consumer(log: Log, run: str) -> DurableConsumer:
    """The one consumer of ``run``'s pipeline match units that every player shares."""
    return DurableConsumer(log, names.WORK, names.aggregate_filter(names.WORK, run, names.AGG_PIPELINE),
                           names.durable(run, PLAYER))


def pair_event_id(validation_id: str, pair_index: int) -> str:
    """The id of pair ``pair_index``'s result in validation ``validation_id``, whoever plays it."""
    return derived_id(validation_id, "pipeline-pair", pair_index)


def pair_event(run: str, unit: PipelineMatchUnit, pair_index: int, worker: str, *,
               played: PairPlayed | None = None, illegal: str = "", error: str = "") -> PipelinePairPlayed:
    """The ``pipeline.pair_played`` of one pair; an ``error`` gets an id of its own (the pair's
    result, by whoever plays it then, still lands)."""
    event_id = (derived_id(unit.validation_id, f"pipeline-pair-error-{worker}", pair_index) if error
                else pair_event_id(unit.validation_id, pair_index))
    return PipelinePairPlayed(
        id=event_id, time=time.time(), run=run, causation_id=unit.id, correlation_id=unit.validation_id,
        validation_id=unit.validation_id, unit_id=unit.unit_id, pair_index=pair_index,
        pentanomial=played.pentanomial if played else -1,
        games=[list(g) for g in played.games] if played else [],
        outcomes=list(played.outcomes) if played else [], worker=worker, illegal=illegal, error=error)


def default_cache() -> Path:
    """Where code versions are unpacked: ``$JETZERO_PIPELINE_CACHE``, else the temp folder's."""
    return Path(os.environ.get("JETZERO_PIPELINE_CACHE") or Path(tempfile.gettempdir()) / "jetzero-pipeline")


@dataclass
class PlayerStats:
    pairs_played: int = 0
    units_done: int = 0
    units_skipped: int = 0  # their match was decided already
    units_redelivered: int = 0  # delivered more than once (their pairs dedupe by id)
    units_failed: int = 0  # reported as errors
    units_rejected: int = 0


class _Engines:
    """The two engine processes of one validation's sides, kept between its units."""

    def __init__(self, key: tuple, candidate: EngineProcess, base: EngineProcess):
        self.key = key
        self.candidate = candidate
        self.base = base

    def close(self) -> None:
        self.candidate.close()
        self.base.close()


class PipelinePlayer:
    """One pipeline match player on the shared consumer of ``run``'s pipeline units."""

    def __init__(self, store: EventStore, run: str, *, stop: asyncio.Event, cache: str | Path | None = None,
                 node: str = "", halted: Callable[[], bool] = lambda: False, ack_wait: float = ACK_WAIT_S,
                 beat_s: float = 1.0, poll_s: float = 0.5, python: str = sys.executable):
        self.store = store
        self.run = run
        self.stop = stop
        self.cache = Path(cache or default_cache())
        self.node = node or f"{socket.gethostname()}-{PLAYER}"
        self.halted = halted
        self.ack_wait = ack_wait
        self.beat_s = beat_s
        self.poll_s = poll_s
        self.python = python
        self.consumer = pipeline_work_consumer(store.log, run)
        self.stats = PlayerStats()
        self._engines: _Engines | None = None
        self._current: Delivery | None = None
        self._touched = 0.0

    async def run_until_stopped(self) -> None:
        await self.consumer.open(ack_wait=self.ack_wait)
        self.ack_wait = await self.consumer.ack_wait() or self.ack_wait
        pulse = asyncio.create_task(self._pulse())
        try:
            while not self.stop.is_set():
                if self.halted():
                    await self._sleep(self.poll_s)
                    continue
                for delivery in await self.consumer.fetch(1, timeout=self.poll_s):
                    await self.take(delivery)
        finally:
            pulse.cancel()
            await asyncio.gather(pulse, return_exceptions=True)
            await self.consumer.close()
            await self.close_engines()

    async def take(self, delivery: Delivery) -> None:
        """Play (or skip, or reject) one delivered work item, and settle it."""
        unit = await self._accept(delivery)
        if unit is None:
            return
        if delivery.delivered > 1:
            self.stats.units_redelivered += 1
            log.info("%s: unit %d of validation %s redelivered (delivery %d)", self.node, unit.unit_id,
                     unit.validation_id, delivery.delivered)
        self._current, self._touched = delivery, time.monotonic()
        try:
            await self.play(unit)
        finally:
            self._current = None
        await delivery.ack()

    async def _accept(self, delivery: Delivery) -> PipelineMatchUnit | None:
        try:
            item = codec.decode(delivery.data)
        except DecodeError as exc:
            await self._reject(delivery, str(exc))
            return None
        if isinstance(item, codec.UnknownEvent):
            await delivery.nak(delay=UNKNOWN_DELAY_S)
            return None
        if not isinstance(item, PipelineMatchUnit):
            await self._reject(delivery, f"not a pipeline match unit: {item.tag}")
            return None
        if await self.decided(item.validation_id):
            self.stats.units_skipped += 1
            await delivery.ack()
            return None
        return item

    async def decided(self, validation_id: str) -> bool:
        subject = names.subject(names.EVENTS, self.run, names.pipeline_validation_aggregate(validation_id),
                                tag_of(PipelineMatchDecided))
        return await self.store.last(names.EVENTS, subject) is not None

    async def play(self, unit: PipelineMatchUnit) -> None:
        """Play ``unit``'s pairs and append each result (or why it could not be played)."""
        reported: set[int] = set()
        try:
            engines = await self._ready(unit)
            await asyncio.to_thread(self._play_pairs, unit, engines, reported, asyncio.get_running_loop())
            self.stats.units_done += 1
        except IllegalMovePlayed as exc:
            await self._report_left(unit, reported, illegal=str(exc))
            self.stats.units_done += 1
        except (JetzeroError, OSError) as exc:  # objects, bundle, engines: the pipeline plays it
            log.warning("%s: unit %d of validation %s not played: %s", self.node, unit.unit_id,
                        unit.validation_id, exc)
            await self.close_engines()
            await self._report_left(unit, reported, error=f"{self.node}: {exc}"[:1000])
            self.stats.units_failed += 1

    def _play_pairs(self, unit: PipelineMatchUnit, engines: _Engines, reported: set[int],
                    loop: asyncio.AbstractEventLoop) -> None:
        def publish(played: PairPlayed) -> bool:
            event = pair_event(self.run, unit, played.index, self.node, played=played)
            asyncio.run_coroutine_threadsafe(self._append(event), loop).result(PUBLISH_TIMEOUT_S)
            reported.add(played.index)
            self.stats.pairs_played += 1
            return not self.stop.is_set()

        game = get_game(unit.game, **unit.game_params)
        plans = [PairPlan(index=p.pair_index, opening=tuple(p.opening), flip=p.flip) for p in unit.pairs]
        play_pairs(game, engines.candidate, engines.base, plans, simulations=unit.simulations,
                   in_flight=len(plans), on_pair=publish)

    async def _append(self, event: PipelinePairPlayed) -> None:
        await self.store.append(event)
        if self._current is not None:
            await self._current.in_progress()
            self._touched = time.monotonic()

    async def _report_left(self, unit: PipelineMatchUnit, reported: set[int], *, illegal: str = "",
                           error: str = "") -> None:
        for pair in unit.pairs:
            if pair.pair_index not in reported:
                await self.store.append(pair_event(self.run, unit, pair.pair_index, self.node,
                                                   illegal=illegal, error=error))

    # -- the two sides: objects, cache, engines ---------------------------------------------

    async def _ready(self, unit: PipelineMatchUnit) -> _Engines:
        key = (unit.validation_id, unit.game, tuple(sorted(unit.game_params.items())), unit.candidate,
               unit.base, unit.threads, unit.seed, unit.move_timeout_s)
        if self._engines is not None and self._engines.key == key:
            return self._engines
        await self.close_engines()
        sides = [await self._side(version) for version in (unit.candidate, unit.base)]
        game_line = " ".join(["game", unit.game, *(f"{k}={v}" for k, v in unit.game_params.items())])

        def start() -> _Engines:
            candidate = self._engine(sides[0], game_line, unit)
            try:
                return _Engines(key, candidate, self._engine(sides[1], game_line, unit))
            except BaseException:
                candidate.close()
                raise

        self._engines = await asyncio.to_thread(start)
        prune_cache(self.cache / "code", spare=(unit.candidate.code_digest, unit.base.code_digest))
        return self._engines

    def _engine(self, side: EngineSide, game_line: str, unit: PipelineMatchUnit) -> EngineProcess:
        return EngineProcess(side, game_line, threads=unit.threads, seed=unit.seed,
                             timeout=unit.move_timeout_s, python=self.python)

    async def _side(self, version: CodeVersion) -> EngineSide:
        """``version``'s code unpacked and model written in the cache (each verified, once)."""
        code = self.cache / "code" / version.code_digest
        if not code.is_dir():
            data = await get_object(self.store.log, names.OBJ_MODELS, version.code_object,
                                    version.code_digest)
            code = await asyncio.to_thread(unpack_cached, data, version.code_digest, self.cache / "code")
        model = self.cache / "models" / f"{version.model_digest}.pt"
        if not model.is_file():
            data = await get_object(self.store.log, names.OBJ_MODELS, version.model_object,
                                    version.model_digest)
            await asyncio.to_thread(_write_once, model, data)
        return EngineSide(label=version.label, root=str(code.resolve()), model=str(model.resolve()))

    async def close_engines(self) -> None:
        """End the engine processes kept for the next unit (they are started again when needed)."""
        if self._engines is not None:
            engines, self._engines = self._engines, None
            await asyncio.to_thread(engines.close)

    # -- settling, liveness -----------------------------------------------------------------

    async def _reject(self, delivery: Delivery, reason: str) -> None:
        self.stats.units_rejected += 1
        await reject_delivery(self.store, self.run, names.WORK, delivery, reason, PLAYER)

    async def heartbeat(self) -> None:
        s = self.stats
        await beat(self.store.log, self.run, Heartbeat(node=self.node, host="", roles=[PLAYER], detail={
            "pairs_played": float(s.pairs_played), "units_done": float(s.units_done),
            "units_skipped": float(s.units_skipped), "units_redelivered": float(s.units_redelivered),
            "units_failed": float(s.units_failed), "busy": 1.0 if self._current else 0.0,
            "halted": 1.0 if self.halted() else 0.0}))

    async def _pulse(self) -> None:
        """Keep the unit being played from redelivery; heartbeat every ``beat_s``."""
        touch_every = self.ack_wait / 3
        last_beat = -float("inf")
        while True:
            now = time.monotonic()
            current = self._current
            try:
                if current is not None and now - self._touched >= touch_every:
                    await current.in_progress()
                    self._touched = now
                if now - last_beat >= self.beat_s:
                    await self.heartbeat()
                    last_beat = now
            except Exception as exc:  # noqa: BLE001 - retried on the next tick
                log.warning("%s: heartbeat or in-progress signal failed: %s", self.node, exc)
            await asyncio.sleep(min(self.beat_s, touch_every))  # a timer, not synchronisation

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            pass


def _write_once(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_bytes(data)
    staging.replace(path)


async def serve(ctx, *, node: str = "", cache: str | Path | None = None, beat_s: float = 1.0) -> None:
    """The pipeline match player of an agent (``ctx``: a ``ServiceContext``) until stopped."""
    player = PipelinePlayer(ctx.store, ctx.run, stop=ctx.stop, cache=cache, node=node,
                            halted=lambda: ctx.halted, beat_s=beat_s)
    await player.run_until_stopped()


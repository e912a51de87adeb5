"""The AI players of the matchmaking server: moves chosen in worker processes, batched.

``AiPlayers.open(settings, nats, run)`` follows the run's model registry; ``choose_move(game,
moves, level)`` answers one position (the moves from the start) with an ``AiMove``. Nothing
runs on the caller's event loop but bookkeeping: each request joins the queue of its game
and lane (``raw_policy`` levels in one lane, ``search`` levels in the other, so a cheap move
never waits behind a search); a lane sends everything pending as one batch to a worker
process as soon as it has a free one (after ``batch_wait_ms``, for searches
``search_batch_wait_ms``, to let concurrent requests join; a search's wait is taken off its
thinking time), so concurrent games' searches of one model are one ``BatchedSearch`` and
share every network call. Each lane has at most ``workers`` batches in flight.

The net: the run's champion for its game (bytes fetched from ``OBJ_MODELS`` and checked
against the registry's digest by ``streams.objects.get_object``, the same path as
``handlers.promotion.players_cache``; the worker's ``load_checkpoint`` checks meta and game),
followed as it changes: the next move after a promotion or rollback is the new champion's.
A game with no champion in the run (no loop started yet, or a champion of another game) is
played by the untrained initial network of that game (engine defaults, seed 0), model id
``initial-<game>``; nothing is published for it. ``choose_move(..., model_id=...)`` plays a
named model of the registry instead (an exhibition between models), in lanes of its own;
``model_problem`` says why a model id cannot play a game.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import msgspec

from engine.games import get_game
from handlers.matchmaking.ai_worker import BatchJob, NetSource, answer, initialise
from handlers.matchmaking.levels import (
    DEFAULT_LEVELS,
    Batch,
    LevelSettings,
    MoveRequest,
    levels_by_number,
    move_seed,
)
from projections.models import ModelRegistry, ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import names
from streams.config import NatsSettings
from streams.connection import Log, connect
from streams.errors import JetzeroError, StoreError
from streams.objects import get_object
from streams.store import EventStore

__all__ = ["AiMove", "AiPlayers", "AiSettings", "AiStats", "LaneStats", "initial_model_id"]

log = logging.getLogger(__name__)


class AiSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``ai:`` section of config/p2p.yaml."""

    workers: int = 1  # worker processes (and batches in flight) per lane
    threads: int = 1  # torch threads per worker process
    max_think_ms: int = 2000  # no level's search runs longer than this
    batch_wait_ms: float = 2.0  # how long the raw-policy lane waits for more requests before sending
    # ... and the search lane: longer, so that games whose moves come back at about the same
    # time share one batch rather than alternating big and small ones; the wait is taken off
    # the level's thinking time, so a move's answer time stays bounded by it
    search_batch_wait_ms: float = 300.0
    max_batch: int = 512  # requests per batch at most
    search_nice: int = 10  # the search workers' niceness: the server (and raw-policy moves) first

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be 1-64, got {self.workers}")
        if not 1 <= self.threads <= 64:
            raise ValueError(f"threads must be 1-64, got {self.threads}")
        if not 1 <= self.max_think_ms <= 60_000:
            raise ValueError(f"max_think_ms must be 1-60000, got {self.max_think_ms}")
        if not (0 <= self.batch_wait_ms <= 1000 and 0 <= self.search_batch_wait_ms <= 10_000):
            raise ValueError(f"batch_wait_ms must be 0-1000 and search_batch_wait_ms 0-10000, got "
                             f"{self.batch_wait_ms}, {self.search_batch_wait_ms}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 0 <= self.search_nice <= 19:
            raise ValueError(f"search_nice must be 0-19, got {self.search_nice}")


class AiMove(msgspec.Struct, frozen=True, kw_only=True):
    move: int
    think_ms: float  # from the request to the answer (queueing and batching included)
    model_id: str


class LaneStats(msgspec.Struct, kw_only=True):
    """What one lane has done: moves answered, batches sent, the network's calls."""

    moves: int = 0
    batches: int = 0
    network_calls: int = 0
    evaluations: int = 0  # positions the network evaluated
    busy_s: float = 0.0  # wall time with at least one batch in flight

    @property
    def mean_batch(self) -> float:
        """Positions per network call."""
        return self.evaluations / self.network_calls if self.network_calls else 0.0


class AiStats(msgspec.Struct, kw_only=True):
    raw_policy: LaneStats = msgspec.field(default_factory=LaneStats)
    search: LaneStats = msgspec.field(default_factory=LaneStats)

    @property
    def network_calls(self) -> int:
        return self.raw_policy.network_calls + self.search.network_calls


def initial_model_id(game: str) -> str:
    return f"initial-{game}"


class _Pending(msgspec.Struct, kw_only=True):
    request: MoveRequest
    future: asyncio.Future[tuple[int, str]]
    since: float  # time.monotonic() of the request


class _Lane:
    """The queue of one (game, kind, model); sends batches to its pool. ``model_id`` empty: the
    champion, followed as it changes."""

    def __init__(self, owner: AiPlayers, game: str, pool: ProcessPoolExecutor, stats: LaneStats,
                 wait_ms: float, model_id: str = ""):
        self.owner = owner
        self.wait_s = wait_ms / 1000.0
        self.game = game
        self.model_id = model_id
        self.pool = pool
        self.stats = stats
        self.pending: list[_Pending] = []
        self.in_flight = 0
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"ai-lane-{game}")
        self._busy_since = 0.0

    async def _run(self) -> None:
        settings = self.owner.settings
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending and self.in_flight < settings.workers:
                if self.wait_s:
                    await asyncio.sleep(self.wait_s)  # let concurrent requests join
                batch, self.pending = self.pending[: settings.max_batch], self.pending[settings.max_batch :]
                self.in_flight += 1
                if self.in_flight == 1:
                    self._busy_since = time.monotonic()
                asyncio.create_task(self._send(batch))

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            source = await self.owner.net_source(self.game, self.model_id)
            now = time.monotonic()
            requests = [msgspec.structs.replace(p.request, waited_ms=1000.0 * (now - p.since)) for p in batch]
            job = BatchJob(net=source, requests=requests,
                           max_think_ms=self.owner.settings.max_think_ms)
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(self.pool, answer, msgspec.msgpack.encode(job))
            result = msgspec.msgpack.decode(data, type=Batch)
            self.stats.moves += len(batch)
            self.stats.batches += 1
            self.stats.network_calls += result.evaluator_calls
            self.stats.evaluations += result.evaluations
            for pending, choice in zip(batch, result.choices, strict=True):
                if not pending.future.done():
                    pending.future.set_result((choice.move, source.model_id))
        except Exception as exc:  # a worker crash or a bad net: every waiting move hears it
            log.exception("AI batch of %d moves (%s) failed", len(batch), self.game)
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(AiUnavailable(f"the AI could not move: {exc}"))
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.stats.busy_s += time.monotonic() - self._busy_since
            self.wake.set()


class AiUnavailable(JetzeroError):
    """The AI could not choose a move (its worker failed, or its net could not be loaded)."""


class AiPlayers:
    """The AI levels of one run, playing through worker processes (see the module doc)."""

    def __init__(
        self,
        settings: AiSettings,
        registry: ProjectionRunner[ModelRegistry] | None,
        log_conn: Log | None,
        levels: Sequence[LevelSettings],
        workdir: Path,
    ):
        self.settings = settings
        self.registry = registry
        self.log = log_conn
        self.levels = levels_by_number(levels)
        self.stats = AiStats()
        self._workdir = workdir
        context = multiprocessing.get_context("spawn")
        nice = {"raw_policy": 0, "search": settings.search_nice}
        self._pools = {
            kind: ProcessPoolExecutor(settings.workers, mp_context=context, initializer=initialise,
                                      initargs=(settings.threads, nice[kind]))
            for kind in ("raw_policy", "search")
        }
        self._lanes: dict[tuple[str, str, str], _Lane] = {}
        self._sources: dict[str, NetSource] = {}
        self._named: dict[str, NetSource] = {}  # model id -> its net (exhibitions between models)
        self._loading = asyncio.Lock()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: AiSettings,
        nats: NatsSettings | None,
        run: str,
        *,
        levels: Sequence[LevelSettings] = DEFAULT_LEVELS,
    ) -> AsyncIterator[AiPlayers]:
        """The AI players of ``run`` (``nats`` None: no log, every game plays its initial
        network — for benchmarks and calibration without a run)."""
        conn = registry = None
        if nats is not None:
            conn = await connect(nats, name="jetzero-matchmaking-ai")
            registry = ProjectionRunner(EventStore(conn), ModelRegistryProjection(), run)
            await registry.follow()
        with tempfile.TemporaryDirectory(prefix="jetzero-ai-") as workdir:
            ai = cls(settings, registry, conn, levels, Path(workdir))
            try:
                yield ai
            finally:
                await ai._close()
                if registry is not None:
                    await registry.stop()
                if conn is not None:
                    await conn.close()

    async def _close(self) -> None:
        for lane in self._lanes.values():
            lane.task.cancel()
        for lane in self._lanes.values():
            with contextlib.suppress(asyncio.CancelledError):
                await lane.task
        for pool in self._pools.values():
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def level(self, number: int) -> LevelSettings:
        try:
            return self.levels[number]
        except KeyError:
            raise ValueError(f"no AI level {number} (levels are 1-8)") from None

    async def warm_up(self, game: str) -> None:
        """Start every worker and load ``game``'s net in it (the first moves then need no
        process start), by one raw-policy and one search move from the initial position."""
        await asyncio.gather(
            self.choose_move(game, [], min(self.levels), game_id="warm-up"),
            self.choose_move(game, [], max(self.levels), game_id="warm-up"),
        )

    async def choose_move(self, game: str, moves: list[int], level: int, *, game_id: str = "",
                          model_id: str = "", budget_ms: int | None = None) -> AiMove:
        """The move of ``level`` in ``game`` after ``moves`` (legal, not over). ``game`` is a
        game name (connect4, tictactoe); ``game_id`` seeds the move (a game replays);
        ``model_id`` a registry model to play with instead of the champion; ``budget_ms`` caps
        a search level's thinking time (a game with clocks: what its clock can spare)."""
        settings = self.level(level)
        if budget_ms is not None and settings.kind == "search":
            think = min(settings.think_ms or self.settings.max_think_ms, max(1, budget_ms))
            settings = msgspec.structs.replace(settings, think_ms=think)
        started = time.monotonic()
        key = (game, settings.kind, model_id)
        lane = self._lanes.get(key)
        if lane is None:
            get_game(game)  # an unknown game name fails here, not in a worker
            stats = getattr(self.stats, settings.kind)
            ai = self.settings
            wait = ai.search_batch_wait_ms if settings.kind == "search" else ai.batch_wait_ms
            lane = self._lanes[key] = _Lane(self, game, self._pools[settings.kind], stats, wait, model_id)
        request = MoveRequest(moves=tuple(moves), level=settings, seed=move_seed(game_id or game, len(moves)))
        future: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        lane.pending.append(_Pending(request=request, future=future, since=started))
        lane.wake.set()
        move, model_id = await future
        return AiMove(move=move, think_ms=1000.0 * (time.monotonic() - started), model_id=model_id)

    def model_problem(self, game: str, model_id: str) -> str | None:
        """Why ``model_id`` cannot play ``game`` (one line), or None: it can."""
        if model_id == initial_model_id(game):
            return None
        state = self.registry.state if self.registry is not None else None
        record = state.model(model_id) if state is not None else None
        if record is None:
            return f"no model {model_id!r} in this run's registry"
        if record.game and record.game != game:
            return f"model {model_id!r} plays {record.game}, not {game}"
        if not record.object_name:
            return f"model {model_id!r} has no published weights"
        return None

    async def net_source(self, game: str, model_id: str = "") -> NetSource:
        """The net ``game`` is played by now: ``model_id`` when named, else the champion when it
        is of this game, else the initial network. A model's bytes are fetched once, verified,
        written for the workers."""
        if model_id:
            return await self._named_source(game, model_id)
        state = self.registry.state if self.registry is not None else None
        champion = state.champion if state is not None else None
        record = state.model(champion.model_id) if state is not None and champion is not None else None
        if record is None or (record.game and record.game != game):
            return NetSource(game=game, model_id=initial_model_id(game))
        current = self._sources.get(game)
        if current is not None and current.model_id == record.model_id:
            return current
        async with self._loading:
            current = self._sources.get(game)
            if current is not None and current.model_id == record.model_id:
                return current
            assert self.log is not None  # a registry implies a connection
            try:
                data = await get_object(self.log, names.OBJ_MODELS, record.object_name, record.digest)
            except StoreError as exc:
                if current is None:
                    raise AiUnavailable(f"champion {record.model_id!r}: {exc}") from None
                log.warning("champion %s not loaded (%s); %s plays on",
                            record.model_id, exc, current.model_id)
                return current
            path = self._workdir / f"{record.model_id}.ckpt"
            await asyncio.to_thread(path.write_bytes, data)
            source = self._sources[game] = NetSource(game=game, model_id=record.model_id, path=str(path))
            log.info("AI levels of %s now play %s", game, record.model_id)
            return source

    async def _named_source(self, game: str, model_id: str) -> NetSource:
        if model_id == initial_model_id(game):
            return NetSource(game=game, model_id=model_id)
        if (known := self._named.get(model_id)) is not None:
            return known
        if (problem := self.model_problem(game, model_id)) is not None:
            raise AiUnavailable(problem)
        async with self._loading:
            if (known := self._named.get(model_id)) is not None:
                return known
            assert self.registry is not None and self.log is not None  # model_problem passed
            record = self.registry.state.model(model_id)
            assert record is not None
            try:
                data = await get_object(self.log, names.OBJ_MODELS, record.object_name, record.digest)
            except StoreError as exc:
                raise AiUnavailable(f"model {model_id!r}: {exc}") from None
            path = self._workdir / f"{model_id}.ckpt"
            await asyncio.to_thread(path.write_bytes, data)
            source = self._named[model_id] = NetSource(game=game, model_id=model_id, path=str(path))
            return source

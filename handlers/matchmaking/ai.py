"""The AI players of the matchmaking server: moves chosen in worker processes, batched.

``AiPlayers.open(settings, nats, run)`` follows the run's model registry; ``choose_move(game,
moves, level)`` answers one position (the moves from the start) with an ``AiMove``. Nothing
runs on the caller's event loop but bookkeeping: each request joins the queue of its game
and lane (``raw_policy`` levels in one lane, ``search`` levels in the other, so a cheap move
never waits behind a search).

The raw-policy lane sends everything pending as one batch to a ``ProcessPoolExecutor``
worker as soon as it has a free one (after ``batch_wait_ms``, to let concurrent requests
join; at most ``workers`` batches in flight). The search lane sends its requests, gathered
for ``search_batch_wait_ms`` (taken off their thinking time), to ``workers`` persistent
search processes (``search_worker``; each request to the one with the fewest outstanding)
that search continuously: a search joins the running ``BatchedSearch`` of its net at the
next chunk's end (every ~40 ms), shares every network call with the searches running, and
leaves it, answered, as soon as it has its simulations or its deadline — it waits for no
other search. A reader thread per process resolves the waiting moves on the event loop. A
search process that dies fails the moves waiting on it (``AiUnavailable``) at once; the
next request starts a new one.

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
import itertools
import logging
import multiprocessing
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
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
from handlers.matchmaking.search_worker import SearchJob, SearchProcess, SearchResults, WorkerSettings
from projections.models import ModelRegistry, ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import names
from streams.config import NatsSettings
from streams.connection import Log, connect
from streams.errors import JetzeroError, StoreError
from streams.objects import get_object
from streams.store import EventStore

__all__ = ["AiMove", "AiPlayers", "AiSettings", "AiStats", "AiUnavailable", "LaneStats", "initial_model_id"]

log = logging.getLogger(__name__)


class AiSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``ai:`` section of config/p2p.yaml."""

    workers: int = 1  # raw-policy worker processes (batches in flight), and search processes
    threads: int = 1  # torch threads per worker process
    max_think_ms: int = 2000  # no level's search runs longer than this
    batch_wait_ms: float = 2.0  # how long the raw-policy lane waits for more requests before sending
    # how long new search requests wait to be sent to the search process together (one message,
    # one join); a search joins the running batch at its next chunk's end whenever it comes,
    # so this only saves messages. The wait is taken off the level's thinking time.
    search_batch_wait_ms: float = 5.0
    max_batch: int = 512  # raw-policy requests per batch; searches of one net running together
    search_nice: int = 10  # the search processes' niceness: the server (and raw-policy moves) first
    # ... and more: the search processes run only on CPU time nothing else wants (Linux
    # SCHED_IDLE), so a move never waits for a search's time slice to end. On a machine busy
    # with other work (training beside the server) searches then get little CPU and answer at
    # their deadline with fewer simulations: set it false there, and search_nice alone counts
    search_idle: bool = True

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
    """What one lane has done: moves answered, batches, the network's calls. A batch is, in
    the raw-policy lane, one batch sent to a worker and answered; in the search lane, one
    result message of a search process (the searches that finished at one chunk's end)."""

    moves: int = 0
    batches: int = 0
    network_calls: int = 0
    evaluations: int = 0  # positions the network evaluated
    busy_s: float = 0.0  # wall time with at least one batch in flight (search: one search outstanding)

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
    """The raw-policy queue of one (game, model); sends batches to its pool. ``model_id``
    empty: the champion, followed as it changes."""

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


class _SearchLane:
    """The search queue of one (game, model): what arrives within ``search_batch_wait_ms`` is
    sent to the search processes together. ``model_id`` empty: the champion."""

    def __init__(self, owner: AiPlayers, game: str, model_id: str = ""):
        self.owner = owner
        self.wait_s = owner.settings.search_batch_wait_ms / 1000.0
        self.game = game
        self.model_id = model_id
        self.pending: list[_Pending] = []
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"ai-search-lane-{game}")

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            if self.wait_s:
                await asyncio.sleep(self.wait_s)  # let concurrent requests join
            self.wake.clear()
            batch, self.pending = self.pending, []
            try:
                source = await self.owner.net_source(self.game, self.model_id)
            except Exception as exc:  # a net that cannot be fetched: every waiting move hears it
                log.exception("AI searches of %d moves (%s) failed", len(batch), self.game)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(AiUnavailable(f"the AI could not move: {exc}"))
                continue
            self.owner._searchers.send(source, batch)


class _Searching(msgspec.Struct, kw_only=True):
    """A move being searched in search process ``worker``."""

    future: asyncio.Future[tuple[int, str]]
    model_id: str
    worker: int


class _Searchers:
    """The search processes (``workers`` of them, each started by the first request sent its
    way, and again after it died) and the moves waiting on them. Everything but the
    processes' reader threads runs on the event loop."""

    def __init__(self, settings: AiSettings, stats: LaneStats):
        self.settings = WorkerSettings(threads=settings.threads, nice=settings.search_nice,
                                       idle=settings.search_idle,
                                       slots=settings.max_batch, max_think_ms=settings.max_think_ms)
        self.stats = stats
        self.processes: list[SearchProcess | None] = [None] * settings.workers
        self.outstanding = [0] * settings.workers
        self.waiting: dict[int, _Searching] = {}  # by request id
        self._ids = itertools.count()
        self._busy_mark = 0.0
        self._closing = False
        self._reaping: set[asyncio.Task[None]] = set()

    def send(self, source: NetSource, batch: list[_Pending]) -> None:
        """Send ``batch`` to be searched with ``source``, each request to the process with the
        fewest outstanding; its time waiting so far is taken off its thinking time."""
        now = time.monotonic()
        self._account_busy(now)
        jobs: dict[int, list[SearchJob]] = {}
        for pending in batch:
            if pending.future.done():  # given up while it waited
                continue
            index = min(range(len(self.outstanding)), key=self.outstanding.__getitem__)
            try:
                self._process(index)
            except OSError as exc:
                log.exception("search process did not start")
                pending.future.set_exception(AiUnavailable(f"the AI could not move: {exc}"))
                continue
            request_id = next(self._ids)
            request = msgspec.structs.replace(pending.request, waited_ms=1000.0 * (now - pending.since))
            self.waiting[request_id] = _Searching(future=pending.future, model_id=source.model_id,
                                                  worker=index)
            self.outstanding[index] += 1
            jobs.setdefault(index, []).append(SearchJob(id=request_id, net=source, request=request,
                                                        sent=now))
        for index, some in jobs.items():
            self._process(index).submit(some)

    def _process(self, index: int) -> SearchProcess:
        process = self.processes[index]
        if process is None:
            loop = asyncio.get_running_loop()
            process = self.processes[index] = SearchProcess(
                self.settings,
                on_results=lambda p, results: _post(loop, self._on_results, results),
                on_exit=lambda p: _post(loop, self._on_exit, p),
            )
            log.info("search process %s started (niceness %d%s)", process.pid, self.settings.nice,
                     "; SCHED_IDLE: it searches on CPU nothing else wants (ai.search_idle)"
                     if self.settings.idle else "")
        return process

    def _on_results(self, results: SearchResults) -> None:
        self._account_busy(time.monotonic())
        for found in results.answers:
            waiting = self._done(found.id)
            if waiting is not None and not waiting.future.done():
                waiting.future.set_result((found.move, waiting.model_id))
        for failure in results.failures:
            waiting = self._done(failure.id)
            if waiting is not None and not waiting.future.done():
                waiting.future.set_exception(AiUnavailable(f"the AI could not move: {failure.message}"))
        self.stats.moves += len(results.answers)
        self.stats.batches += 1
        self.stats.network_calls += results.evaluator_calls
        self.stats.evaluations += results.evaluations

    def _on_exit(self, process: SearchProcess) -> None:
        """``process`` ended: every move waiting on it fails now; the next request starts another."""
        if process not in self.processes:
            return
        index = self.processes.index(process)
        self.processes[index] = None
        self._account_busy(time.monotonic())
        lost = [request_id for request_id, waiting in self.waiting.items() if waiting.worker == index]
        if not self._closing:
            log.error("search process %s ended (exit code %s) with %d moves waiting",
                      process.pid, process.exitcode, len(lost))
            task = asyncio.create_task(asyncio.to_thread(process.close))  # its threads and pipes
            self._reaping.add(task)
            task.add_done_callback(self._reaping.discard)
        for request_id in lost:
            waiting = self._done(request_id)
            if waiting is not None and not waiting.future.done():
                waiting.future.set_exception(AiUnavailable(
                    f"the AI's search process stopped (exit code {process.exitcode})"))

    def _done(self, request_id: int) -> _Searching | None:
        waiting = self.waiting.pop(request_id, None)
        if waiting is not None:
            self.outstanding[waiting.worker] -= 1
        return waiting

    def _account_busy(self, now: float) -> None:
        """Called before ``waiting`` changes: adds the time since the last change to
        ``busy_s`` when a search was outstanding (so it counts during a long busy stretch too)."""
        if self.waiting:
            self.stats.busy_s += now - self._busy_mark
        self._busy_mark = now

    async def close(self) -> None:
        self._closing = True
        running = [p for p in self.processes if p is not None]
        await asyncio.gather(*(asyncio.to_thread(p.close) for p in running), *self._reaping)
        self.processes = [None] * len(self.processes)
        for request_id in list(self.waiting):
            waiting = self._done(request_id)
            if waiting is not None and not waiting.future.done():
                waiting.future.set_exception(AiUnavailable("the AI is closing"))


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object) -> None:
    """Run ``callback(*args)`` on ``loop`` (from another thread); nothing once it is closed."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(callback, *args)


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
        self._pool = ProcessPoolExecutor(settings.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=initialise, initargs=(settings.threads, 0))
        self._searchers = _Searchers(settings, self.stats.search)
        self._lanes: dict[tuple[str, str, str], _Lane | _SearchLane] = {}
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
            # folded_only: not every move of every game played here comes back to this runner
            registry = ProjectionRunner(EventStore(conn), ModelRegistryProjection(), run,
                                        folded_only=True)
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
        await self._searchers.close()
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    @property
    def searching(self) -> int:
        """Search moves sent to the search processes and not answered yet."""
        return len(self._searchers.waiting)

    def search_pids(self) -> list[int]:
        """The process ids of the search processes running now."""
        return [p.pid for p in self._searchers.processes if p is not None and p.pid is not None]

    def level(self, number: int) -> LevelSettings:
        try:
            return self.levels[number]
        except KeyError:
            raise ValueError(f"no AI level {number} (levels are 1-8)") from None

    async def warm_up(self, game: str) -> None:
        """Start a raw-policy worker and every search process and load ``game``'s net in them
        (the first moves then need no process start), by a raw-policy move and one search
        move per search process from the initial position."""
        await asyncio.gather(
            self.choose_move(game, [], min(self.levels), game_id="warm-up"),
            *(self.choose_move(game, [], max(self.levels), game_id=f"warm-up-{i}")
              for i in range(self.settings.workers)),
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
            if settings.kind == "search":
                lane = self._lanes[key] = _SearchLane(self, game, model_id)
            else:
                lane = self._lanes[key] = _Lane(self, game, self._pool, self.stats.raw_policy,
                                                self.settings.batch_wait_ms, model_id)
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

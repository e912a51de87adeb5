"""The search worker: a process that searches continuously, its searches joining and leaving one
running batch one by one (continuous batching, as LLM servers do with their requests).

``ContinuousSearch`` holds the running searches: one ``BatchedSearch`` per net with ``slots``
fixed slots. ``submit`` a request at any time (a blunder is answered without searching, a
request beyond the free slots waits for one); each ``step`` puts the waiting requests into
free slots, runs one chunk of simulations over every live slot of each net (one evaluator
call per simulation step for all of them), then answers every search that has its level's
simulations or reached its deadline, and frees its slot. A chunk is sized from the last
one's time per step to take about ``CHUNK_S``, so answers leave, and new requests join,
within about that; the moves are ``levels.choose_moves``'s (the same ``start_move``,
``think_limit_s`` and ``searched_choice``).

``serve`` is the process, a thin shell around it: ``SearchJobs`` in, ``SearchResults`` out
(msgspec msgpack over two one-way pipes); it blocks while nothing is searching, takes what
has arrived at each chunk's end and ends when its job pipe closes (the parent closed it, or
died). ``SearchProcess`` is its handle in the parent: it spawns the process, writes through a
writer thread and hands each result message, and the process's end, to callbacks from a
reader thread.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import signal
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from multiprocessing.connection import Connection

import msgspec
import numpy as np

from engine.errors import EngineError
from engine.games import get_game
from engine.games.base import Game, State
from engine.mcts import Evaluator
from handlers.matchmaking.ai_worker import NetSource, evaluator, initialise
from handlers.matchmaking.levels import (
    SEARCH_CHUNK,
    LevelSettings,
    MoveRequest,
    level_search,
    searched_choice,
    start_move,
    think_limit_s,
)

__all__ = [
    "CHUNK_S",
    "ContinuousSearch",
    "SearchAnswer",
    "SearchFailure",
    "SearchJob",
    "SearchJobs",
    "SearchProcess",
    "SearchResults",
    "WorkerSettings",
    "serve",
]

CHUNK_S = 0.04  # the wall time a chunk aims at: how often answers leave and requests join
INITIAL_NODES = 4096  # a net's first node pool (it grows as the trees do)
KEEP_IDLE_NETS = 2  # nets kept (with their node pools) while none of their searches runs

EvaluatorFor = Callable[[NetSource], Evaluator]


# -- the messages ----------------------------------------------------------------------------


class SearchJob(msgspec.Struct, frozen=True, kw_only=True):
    """One move to search: ``id`` names it in its answer. ``sent``: the parent's
    ``time.monotonic()`` when it sent it (one system-wide clock on Linux and macOS), so the
    time on the way here, up to a chunk, counts as thinking time too (0: from its arrival)."""

    id: int
    net: NetSource
    request: MoveRequest
    sent: float = 0.0


class SearchJobs(msgspec.Struct, frozen=True, kw_only=True):
    """Parent → worker: moves to start searching now."""

    jobs: list[SearchJob]


class SearchAnswer(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    move: int
    simulations: int = 0  # the search's simulations (0: a blunder, not searched)


class SearchFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A move that cannot be searched (its net does not load, its position is not playable)."""

    id: int
    message: str


class SearchResults(msgspec.Struct, kw_only=True):
    """Worker → parent: the moves finished at one chunk's end, and the network's work since
    the previous message."""

    answers: list[SearchAnswer] = msgspec.field(default_factory=list)
    failures: list[SearchFailure] = msgspec.field(default_factory=list)
    evaluator_calls: int = 0
    evaluations: int = 0


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    threads: int = 1  # torch threads
    nice: int = 0
    idle: bool = False  # SCHED_IDLE where the system has it (``ai_worker.initialise``)
    slots: int = 512  # searches of one net running together at most
    max_think_ms: int = 2000


# -- the continuous search -------------------------------------------------------------------


class _Search(msgspec.Struct, kw_only=True):
    """One move being searched (or waiting for a slot)."""

    id: int
    state: State
    level: LevelSettings
    rng: np.random.Generator
    deadline: float  # time.monotonic() after which it stops (after one simulation at least)
    done: int = 0  # simulations run


class _NetSearches:
    """The searches of one net: a ``BatchedSearch`` of fixed slots and the requests waiting."""

    def __init__(self, game: Game, net_evaluator: Evaluator, slots: int):
        self.search = level_search(game, net_evaluator, slots, SEARCH_CHUNK, capacity=INITIAL_NODES)
        self.game = game
        idle = np.random.default_rng(0)  # a free slot's rng: never drawn from (no root noise)
        self.rngs = [idle] * slots
        self.live: dict[int, _Search] = {}  # by slot
        self.free = list(range(slots - 1, -1, -1))  # pop() takes the lowest
        self.waiting: deque[_Search] = deque()
        self.step_s = 0.0  # wall time of one simulation step in the last chunk (0: none yet)

    def admit(self) -> None:
        while self.waiting and self.free:
            search, slot = self.waiting.popleft(), self.free.pop()
            self.search.reset(slot, search.state)
            self.rngs[slot] = search.rng
            self.live[slot] = search

    def run_chunk(self, budget_s: float) -> list[SearchAnswer]:
        """One chunk over every live slot (about ``budget_s``); the searches it finished."""
        slots = sorted(self.live)
        chunk = min(max(int(budget_s / self.step_s), 1), SEARCH_CHUNK) if self.step_s else 1
        now = time.monotonic()
        sims = [self._simulations(self.live[slot], chunk, now) for slot in slots]
        started = time.monotonic()
        self.search.run(self.rngs, slots=slots, simulations=np.array(sims, dtype=np.int64))
        self.step_s = (time.monotonic() - started) / max(sims)
        now = time.monotonic()
        finished = []
        for slot, n in zip(slots, sims, strict=True):
            search = self.live[slot]
            search.done += n
            if search.done >= search.level.simulations or now >= search.deadline:
                visits = self.search.visit_counts(slot)
                choice = searched_choice(visits, search.level, search.rng)
                finished.append(SearchAnswer(id=search.id, move=choice.move, simulations=choice.simulations))
                self.search.clear(slot)
                del self.live[slot]
                self.free.append(slot)
        return finished

    def _simulations(self, search: _Search, chunk: int, now: float) -> int:
        """This chunk's simulations for ``search``: the chunk, less what its level still
        wants or its deadline leaves time for (at least one)."""
        left = search.level.simulations - search.done
        if self.step_s:
            left = min(left, math.ceil((search.deadline - now) / self.step_s))
        return max(1, min(chunk, left))


class ContinuousSearch:
    """Searches that join and leave a running batch one by one (see the module doc).
    ``evaluator_for`` gives a net's evaluator (default: ``ai_worker.evaluator``, loaded once
    per process); ``evaluator_calls`` and ``evaluations`` count the network's work so far."""

    def __init__(self, *, slots: int, max_think_ms: int, evaluator_for: EvaluatorFor = evaluator,
                 chunk_s: float = CHUNK_S):
        if slots < 1:
            raise ValueError(f"a continuous search needs slots >= 1, got {slots}")
        self.slots = slots
        self.max_think_ms = max_think_ms
        self.chunk_s = chunk_s
        self.evaluator_for = evaluator_for
        self.evaluator_calls = 0
        self.evaluations = 0
        self.chunks = 0  # chunks run (one per net with live searches per step)
        self._nets: OrderedDict[tuple[str, str], _NetSearches] = OrderedDict()
        self._ready: list[SearchAnswer | SearchFailure] = []  # answered without a search

    @property
    def live(self) -> int:
        """Searches running or waiting for a slot."""
        return sum(len(net.live) + len(net.waiting) for net in self._nets.values())

    @property
    def idle(self) -> bool:
        """Nothing to search and nothing to answer: ``step`` would return nothing."""
        return not self._ready and not self.live

    def submit(self, request_id: int, net: NetSource, request: MoveRequest, sent: float = 0.0) -> None:
        """Start searching ``request`` with ``net``: it joins at the next ``step``, which
        answers it at once if it blunders or cannot be searched. Its thinking time counts
        from ``sent`` (a ``time.monotonic()`` of the sender; 0: now)."""
        received = time.monotonic()
        if 0 < sent < received:
            received = sent
        try:
            searches = self._net(net)
            state, rng, blunder = start_move(searches.game, request)
        except EngineError as exc:  # a net that does not load, a position that does not replay
            self._ready.append(SearchFailure(id=request_id, message=f"{net.model_id}: {exc}"))
            return
        if blunder is not None:
            self._ready.append(SearchAnswer(id=request_id, move=blunder))
        elif state.is_terminal():
            self._ready.append(SearchFailure(id=request_id, message="the game is over: no move to search"))
        else:
            deadline = received + think_limit_s(request, self.max_think_ms)
            searches.waiting.append(_Search(id=request_id, state=state, level=request.level, rng=rng,
                                            deadline=deadline))

    def step(self) -> list[SearchAnswer | SearchFailure]:
        """Admit the waiting searches, run one chunk of each net with live searches, and
        return every search that finished (and whatever was answered without one)."""
        finished, self._ready = self._ready, []
        for searches in self._nets.values():
            searches.admit()
        running = [searches for searches in self._nets.values() if searches.live]
        for searches in running:
            calls, evaluations = searches.search.evaluator_calls, searches.search.evaluations
            finished += searches.run_chunk(self.chunk_s / len(running))
            self.evaluator_calls += searches.search.evaluator_calls - calls
            self.evaluations += searches.search.evaluations - evaluations
            self.chunks += 1
        self._forget_idle_nets()
        return finished

    def _net(self, net: NetSource) -> _NetSearches:
        key = (net.game, net.model_id)
        searches = self._nets.get(key)
        if searches is None:
            game = get_game(net.game)
            searches = self._nets[key] = _NetSearches(game, self.evaluator_for(net), self.slots)
        self._nets.move_to_end(key)
        return searches

    def _forget_idle_nets(self) -> None:
        idle = [key for key, searches in self._nets.items() if not searches.live and not searches.waiting]
        for key in idle[: max(0, len(idle) - KEEP_IDLE_NETS)]:  # the least recently used first
            del self._nets[key]


# -- the process -----------------------------------------------------------------------------


def serve(jobs: Connection, results: Connection, settings: WorkerSettings) -> None:
    """The search process: searches what ``jobs`` brings, answers on ``results``, until
    ``jobs`` closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it (Ctrl-C reaches the group)
    initialise(settings.threads, settings.nice, settings.idle)
    search = ContinuousSearch(slots=settings.slots, max_think_ms=settings.max_think_ms)
    decode = msgspec.msgpack.Decoder(SearchJobs).decode
    encode = msgspec.msgpack.Encoder().encode
    calls = evaluations = 0  # sent so far
    try:
        while True:
            if search.idle:  # nothing running: wait for work
                _take(search, decode(jobs.recv_bytes()))
            while jobs.poll():
                _take(search, decode(jobs.recv_bytes()))
            finished = search.step()
            if finished:
                message = SearchResults(
                    answers=[f for f in finished if isinstance(f, SearchAnswer)],
                    failures=[f for f in finished if isinstance(f, SearchFailure)],
                    evaluator_calls=search.evaluator_calls - calls,
                    evaluations=search.evaluations - evaluations,
                )
                calls, evaluations = search.evaluator_calls, search.evaluations
                results.send_bytes(encode(message))
    except (EOFError, BrokenPipeError):  # the parent closed the pipe, or is gone
        return


def _take(search: ContinuousSearch, message: SearchJobs) -> None:
    for job in message.jobs:
        search.submit(job.id, job.net, job.request, job.sent)


class SearchProcess:
    """A search process seen from its parent. ``submit`` never blocks (a writer thread sends);
    a reader thread calls ``on_results(self, results)`` for each message and, once the process
    has ended (closed, or died), ``on_exit(self)``; both run on that thread."""

    def __init__(
        self,
        settings: WorkerSettings,
        on_results: Callable[[SearchProcess, SearchResults], None],
        on_exit: Callable[[SearchProcess], None],
    ):
        context = multiprocessing.get_context("spawn")
        job_reader, self._jobs = context.Pipe(duplex=False)
        self._results, result_writer = context.Pipe(duplex=False)
        self.process = context.Process(target=serve, args=(job_reader, result_writer, settings),
                                       name="jetzero-ai-search", daemon=True)
        self.process.start()
        job_reader.close()  # the child's ends: the pipes then close when the child ends
        result_writer.close()
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._encode = msgspec.msgpack.Encoder().encode
        self._writer = threading.Thread(target=self._write, name=f"ai-search-{self.pid}-writer", daemon=True)
        self._reader = threading.Thread(target=self._read, args=(on_results, on_exit),
                                        name=f"ai-search-{self.pid}-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def submit(self, jobs: list[SearchJob]) -> None:
        self._outbox.put(self._encode(SearchJobs(jobs=jobs)))

    def close(self, timeout: float = 10.0) -> None:
        """Blocking: close the job pipe (the process ends at its next chunk's end), wait for
        it (killed after ``timeout``), and for both threads."""
        self._outbox.put(None)
        self._reader.join(timeout)
        if self._reader.is_alive():
            self.process.kill()
            self._reader.join()
        self._writer.join()
        self._results.close()

    def _write(self) -> None:
        while (data := self._outbox.get()) is not None:
            try:
                self._jobs.send_bytes(data)
            except OSError:  # the process is gone: the reader reports it
                break
        self._jobs.close()

    def _read(self, on_results: Callable[[SearchProcess, SearchResults], None],
              on_exit: Callable[[SearchProcess], None]) -> None:
        decode = msgspec.msgpack.Decoder(SearchResults).decode
        try:
            while True:
                on_results(self, decode(self._results.recv_bytes()))
        except (EOFError, OSError):
            pass
        finally:
            self.process.join(5.0)  # its pipe closed: it has ended, or is ending
            if self.process.is_alive():  # a message it could not have sent: stop it
                self.process.kill()
                self.process.join()
            on_exit(self)

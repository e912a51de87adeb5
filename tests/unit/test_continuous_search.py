"""Continuous batching of the AI's searches (``search_worker.ContinuousSearch``), in process:
a search joins a running batch and leaves it on its own, slots are reused, deadlines and
blunders hold, and a search alone plays ``levels.choose_moves``'s move; and the search
process itself (``SearchProcess``), spawned for real."""

from __future__ import annotations

import queue
import time

import msgspec
import pytest

from engine.errors import CheckpointError
from engine.games import get_game
from engine.mcts import UniformEvaluator
from engine.network import NetworkEvaluator, set_torch_threads
from handlers.matchmaking.ai_worker import NetSource
from handlers.matchmaking.levels import (
    DEFAULT_LEVELS,
    LevelSettings,
    MoveRequest,
    choose_moves,
    initial_network,
    levels_by_number,
)
from handlers.matchmaking.search_worker import (
    ContinuousSearch,
    SearchAnswer,
    SearchFailure,
    SearchJob,
    SearchProcess,
    SearchResults,
    WorkerSettings,
)
from tests.evaluators import CountingEvaluator

C4 = get_game("connect4")
TTT = get_game("tictactoe")
NET = NetSource(game="connect4", model_id="uniform")


def level(number: int, **fields) -> LevelSettings:
    """A default level, changed; no thinking time of its own unless given (the searches here
    stop at their simulations, however loaded the machine)."""
    fields.setdefault("think_ms", 0)
    return msgspec.structs.replace(levels_by_number(DEFAULT_LEVELS)[number], **fields)


def continuous(evaluator, slots: int = 8, max_think_ms: int = 60_000) -> ContinuousSearch:
    return ContinuousSearch(slots=slots, max_think_ms=max_think_ms, evaluator_for=lambda net: evaluator)


def run_until_idle(search: ContinuousSearch, limit: int = 10_000) -> list[list[SearchAnswer | SearchFailure]]:
    """Every step's finished searches, until nothing is left."""
    steps = []
    while not search.idle:
        steps.append(search.step())
        assert len(steps) < limit
    return steps


def test_a_search_submitted_while_another_runs_joins_it_and_each_leaves_on_its_own():
    evaluator = CountingEvaluator()
    search = continuous(evaluator)
    search.submit(1, NET, MoveRequest(moves=(), level=level(8, simulations=300), seed=1))
    assert search.step() == [] and search.live == 1  # the long one is running
    search.submit(2, NET, MoveRequest(moves=(3,), level=level(6, simulations=8), seed=2))
    steps = run_until_idle(search)
    finished = [(i, f) for i, step in enumerate(steps) for f in step]
    assert [f.id for _, f in finished] == [2, 1]  # the short one first ...
    (short_step, short), (long_step, long) = finished
    assert short_step < long_step  # ... in an earlier step: it did not wait for the long one
    assert isinstance(short, SearchAnswer) and short.simulations == 8
    assert isinstance(long, SearchAnswer) and long.simulations == 300
    assert 2 in evaluator.batches  # one evaluator call covered both slots
    assert search.evaluator_calls == len(evaluator.batches) and search.evaluations == sum(evaluator.batches)


def test_a_finished_search_frees_its_slot_for_the_next():
    evaluator = CountingEvaluator()
    search = continuous(evaluator, slots=1)
    for i in range(3):
        search.submit(i, NET, MoveRequest(moves=(i,), level=level(6, simulations=20), seed=i))
    assert search.live == 3
    steps = run_until_idle(search)
    finished = [f for step in steps for f in step]
    assert [f.id for f in finished] == [0, 1, 2]  # one after another, in the one slot
    assert all(isinstance(f, SearchAnswer) and f.simulations == 20 for f in finished)
    assert max(evaluator.batches) == 1  # never two searches at once


def test_the_deadline_stops_a_search():
    search = continuous(UniformEvaluator())
    slow = level(8, simulations=10**7, think_ms=50)
    started = time.monotonic()
    search.submit(1, NET, MoveRequest(moves=(), level=slow, seed=0))
    (answer,) = [f for step in run_until_idle(search) for f in step]
    assert time.monotonic() - started < 5
    assert isinstance(answer, SearchAnswer) and 0 < answer.simulations < 10**7
    # a request that waited past its thinking time still gets one simulation, and only one
    late = MoveRequest(moves=(), level=slow, seed=0, waited_ms=10_000)
    search.submit(2, NET, late)
    (answer,) = [f for step in run_until_idle(search) for f in step]
    assert isinstance(answer, SearchAnswer) and answer.simulations == 1
    # the time on the way to the worker counts: sent 10 s ago, one simulation and out
    search.submit(4, NET, MoveRequest(moves=(), level=slow, seed=0), sent=time.monotonic() - 10.0)
    (answer,) = [f for step in run_until_idle(search) for f in step]
    assert isinstance(answer, SearchAnswer) and answer.simulations == 1
    # the cap applies to a level without thinking time of its own
    capped = continuous(UniformEvaluator(), max_think_ms=50)
    capped.submit(3, NET, MoveRequest(moves=(), level=level(8, simulations=10**7, think_ms=0), seed=0))
    (answer,) = [f for step in run_until_idle(capped) for f in step]
    assert isinstance(answer, SearchAnswer) and 0 < answer.simulations < 10**7


def test_a_blunder_answers_without_searching():
    evaluator = CountingEvaluator()
    search = continuous(evaluator)
    always = level(8, blunder_rate=1.0)
    for seed in range(40):
        search.submit(seed, NET, MoveRequest(moves=(3, 3), level=always, seed=seed))
    answers = search.step()
    assert search.idle and evaluator.batches == []
    assert {a.move for a in answers if isinstance(a, SearchAnswer) and a.simulations == 0} == set(range(7))


def test_answers_are_legal_moves():
    search = continuous(UniformEvaluator())
    openings = [(), (3,), (0, 0, 0, 0, 0), (6, 6, 6, 6, 6, 6), (1, 2, 3), (3, 3, 3, 3, 3, 3, 2)]
    for i, moves in enumerate(openings):
        search.submit(i, NET, MoveRequest(moves=moves, level=level(5 + i % 4, simulations=12), seed=i))
    answers = {f.id: f for step in run_until_idle(search) for f in step}
    assert sorted(answers) == list(range(len(openings)))
    for i, moves in enumerate(openings):
        answer = answers[i]
        assert isinstance(answer, SearchAnswer)
        assert answer.move in C4.from_moves(moves).legal_moves()


@pytest.mark.parametrize("number", [5, 6, 8])
def test_a_search_alone_plays_the_move_choose_moves_plays(number):
    """Exact: alone, both run the same simulations in the same order, and every network call
    is of one position either way, so even a real net's floats are the same."""
    set_torch_threads(1)
    cases = [(C4, NET, UniformEvaluator()),
             (TTT, NetSource(game="tictactoe", model_id="initial"), NetworkEvaluator(initial_network(TTT)))]
    for game, net, evaluator in cases:
        for seed in range(6):
            moves = tuple(game.initial_state().legal_moves()[: seed % 3])
            request = MoveRequest(moves=moves, level=level(number, simulations=40), seed=seed)
            expected = choose_moves(game, evaluator, [request], max_think_ms=60_000).choices[0]
            search = continuous(evaluator)
            search.submit(7, net, request)
            (answer,) = [f for step in run_until_idle(search) for f in step]
            assert answer == SearchAnswer(id=7, move=expected.move, simulations=expected.simulations)


def test_a_net_that_does_not_load_fails_its_requests_only():
    def evaluator_for(net: NetSource):
        if net.model_id == "broken":
            raise CheckpointError("cannot read checkpoint broken.ckpt")
        return UniformEvaluator()

    search = ContinuousSearch(slots=4, max_think_ms=60_000, evaluator_for=evaluator_for)
    broken = NetSource(game="connect4", model_id="broken", path="broken.ckpt")
    search.submit(1, broken, MoveRequest(moves=(), level=level(6, simulations=4), seed=1))
    search.submit(2, NET, MoveRequest(moves=(), level=level(6, simulations=4), seed=2))
    search.submit(3, NET, MoveRequest(moves=(0, 1, 0, 1, 0, 1, 0), level=level(6), seed=3))  # over
    finished = {f.id: f for step in run_until_idle(search) for f in step}
    assert isinstance(finished[1], SearchFailure) and "broken" in finished[1].message
    assert isinstance(finished[2], SearchAnswer) and finished[2].simulations == 4
    assert isinstance(finished[3], SearchFailure) and "over" in finished[3].message


def test_the_search_process_answers_over_its_pipes_and_stops_when_closed():
    received: queue.Queue[SearchResults] = queue.Queue()
    exited: queue.Queue[int | None] = queue.Queue()
    process = SearchProcess(WorkerSettings(slots=4, max_think_ms=2000),
                            on_results=lambda p, results: received.put(results),
                            on_exit=lambda p: exited.put(p.exitcode))
    try:
        net = NetSource(game="tictactoe", model_id="initial-tictactoe")
        missing = NetSource(game="tictactoe", model_id="gone", path="/nonexistent/gone.ckpt")
        process.submit([
            SearchJob(id=1, net=net, request=MoveRequest(moves=(4,), level=level(6, simulations=16), seed=1)),
            SearchJob(id=2, net=missing, request=MoveRequest(moves=(), level=level(6), seed=2)),
        ])
        answers: dict[int, SearchAnswer] = {}
        failures: dict[int, SearchFailure] = {}
        calls = 0
        while len(answers) + len(failures) < 2:
            results = received.get(timeout=60)
            answers |= {a.id: a for a in results.answers}
            failures |= {f.id: f for f in results.failures}
            calls += results.evaluator_calls
        assert answers[1].move in TTT.from_moves((4,)).legal_moves() and answers[1].simulations == 16
        assert "gone" in failures[2].message
        assert calls >= 16
    finally:
        process.close()
    assert exited.get(timeout=10) == 0 and not process.process.is_alive()

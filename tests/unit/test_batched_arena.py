"""Games played together (``engine.batched_arena``) against games played one at a time.

Players that choose per game (random, pure MCTS) give exactly the games ``play_game`` gives
with the same seeds; network players of one model are searched in shared evaluator calls
and still play the games they would play alone; cancelled games get no result; illegal
openings and moves are refused naming who made them.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.arena import GameResult, play_game, play_pair, random_opening
from engine.batched_arena import BatchedGames, GameJob, pair_jobs, pair_result
from engine.errors import IllegalMove
from engine.games import get_game
from engine.network import NetworkConfig, NetworkEvaluator, build_network
from engine.players import NetworkMCTSPlayer, PureMCTSPlayer, RandomPlayer

GAME = get_game("tictactoe")
TINY_NET = NetworkConfig(blocks=1, channels=8, value_hidden=8)


def openings(n: int, seed: int = 0) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(seed)
    return [random_opening(GAME, 2, rng) for _ in range(n)]


def play_all(jobs: list[GameJob]) -> BatchedGames:
    games = BatchedGames(GAME, jobs)
    for _ in range(GAME.num_actions + 1):  # every game ends within a board's moves
        if games.finished:
            break
        games.step()
    assert games.finished
    return games


def test_per_game_players_play_exactly_the_games_they_play_alone():
    starts = openings(6)
    jobs = [GameJob(PureMCTSPlayer(30, seed=i), RandomPlayer(seed=100 + i), starts[i]) for i in range(6)]
    batched = play_all(jobs)
    for i in range(6):
        alone = play_game(GAME, PureMCTSPlayer(30, seed=i), RandomPlayer(seed=100 + i), starts[i])
        assert batched.results[i] == alone


def test_network_players_share_evaluator_calls_and_play_their_own_games():
    net_a, net_b = build_network(GAME, TINY_NET, seed=1), build_network(GAME, TINY_NET, seed=2)
    eval_a, eval_b = NetworkEvaluator(net_a), NetworkEvaluator(net_b)
    starts = openings(8, seed=5)

    def a(i, shared=True):
        return NetworkMCTSPlayer(net_a, 16, seed=i, name="a", evaluator=eval_a if shared else None)

    def b(i, shared=True):
        return NetworkMCTSPlayer(net_b, 16, seed=50 + i, name="b", evaluator=eval_b if shared else None)

    jobs = []
    for i in range(8):
        jobs.extend(pair_jobs((a(i), b(i)), (b(i), a(i)), starts[i]))
    batched = play_all(jobs)

    # one search per model, each evaluator call covering many games at once
    calls = sum(g.search.evaluator_calls for g in batched._groups.values())
    assert len(batched._groups) == 2
    assert batched.evaluations / calls > 4
    for i in range(8):
        alone = play_pair(GAME, a(i, shared=False), b(i, shared=False), starts[i])
        together = pair_result(batched.results[2 * i], batched.results[2 * i + 1])
        assert together.games[0].moves == alone.games[0].moves  # the first game: same fresh players
        assert together.games[0].first == "a" and together.games[1].first == "b"
        for result in together.games:
            state = GAME.from_moves(result.moves)
            assert state.is_terminal() and state.outcome() == result.outcome
            assert result.moves[:2] == starts[i] and result.opening_plies == 2
        assert together.score_a == together.pentanomial_index / 2


@pytest.mark.parametrize(
    ("a_first_outcome", "b_first_outcome", "index"),
    [(1, -1, 4), (1, 0, 3), (1, 1, 2), (0, 0, 2), (0, 1, 1), (-1, 1, 0)],
)
def test_pair_result_is_from_a_s_view(a_first_outcome, b_first_outcome, index):
    a_first = GameResult(moves=(), outcome=a_first_outcome, first="a", second="b")
    b_first = GameResult(moves=(), outcome=b_first_outcome, first="b", second="a")
    pair = pair_result(a_first, b_first)
    assert pair.pentanomial_index == index and pair.score_a == index / 2


def test_cancelled_games_get_no_result_and_free_their_search():
    net = build_network(GAME, TINY_NET, seed=1)
    shared = NetworkEvaluator(net)
    jobs = [
        GameJob(NetworkMCTSPlayer(net, 8, seed=i, evaluator=shared), RandomPlayer(seed=i)) for i in range(4)
    ]
    games = BatchedGames(GAME, jobs)
    games.step()
    games.cancel(1)
    games.cancel(3)
    assert games.active() == [0, 2]
    while not games.finished:
        games.step()
    assert games.results[1] is None and games.results[3] is None
    assert games.results[0] is not None and games.results[2] is not None
    [group] = games._groups.values()
    assert sorted(group.free) == [0, 1, 2, 3]  # every slot back once its game ended or left


class Cheater:
    name = "cheater"

    def choose(self, state):
        return state.moves[0] if state.moves else 0  # an occupied cell after the first move


def test_illegal_openings_and_moves_are_refused_naming_the_player():
    with pytest.raises(IllegalMove, match="illegal opening"):
        BatchedGames(GAME, [GameJob(RandomPlayer(), RandomPlayer(), (4, 4))])
    games = BatchedGames(GAME, [GameJob(RandomPlayer(seed=1), Cheater())])
    games.step()
    with pytest.raises(IllegalMove, match="cheater"):
        games.step()


def test_a_game_that_starts_finished_has_its_result_at_once():
    won = (0, 3, 1, 4, 2)  # player 0 completes the top row
    games = BatchedGames(GAME, [GameJob(RandomPlayer(), RandomPlayer(), won)])
    assert games.finished and games.results[0].outcome == 1 and games.results[0].moves == won

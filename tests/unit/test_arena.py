"""The arena: single games, colour-swapped pairs, random openings, illegal moves."""

from __future__ import annotations

import numpy as np
import pytest

from engine.arena import (
    GameResult,
    pentanomial_counts,
    play_game,
    play_pair,
    random_opening,
)
from engine.errors import IllegalMove
from engine.games.base import State
from engine.games.tictactoe import TicTacToe

GAME = TicTacToe()

# Whole tic-tac-toe games, X (player 0) first; each ends on its last move.
X_WINS = (0, 3, 1, 4, 2)  # X takes the top row
O_WINS = (0, 3, 1, 4, 8, 5)  # O takes the middle row
DRAW = (0, 4, 8, 1, 7, 6, 2, 5, 3)
TRANSCRIPTS = {1: X_WINS, -1: O_WINS, 0: DRAW}


class FirstLegal:
    def __init__(self, name: str = "first-legal") -> None:
        self.name = name

    def choose(self, state: State) -> int:
        return state.legal_moves()[0]


class LastLegal:
    def __init__(self, name: str = "last-legal") -> None:
        self.name = name

    def choose(self, state: State) -> int:
        return state.legal_moves()[-1]


class Scripted:
    """Plays ``as_first`` when it moves first and ``as_second`` when it moves second."""

    def __init__(self, name: str, as_first: tuple[int, ...], as_second: tuple[int, ...]):
        self.name, self.lines = name, (as_first, as_second)

    def choose(self, state: State) -> int:
        line = self.lines[0] if state.to_play == 0 else self.lines[1]
        return line[len(state.moves)]


class Fixed:
    """Always answers ``move``, legal or not."""

    def __init__(self, name: str, move: object) -> None:
        self.name, self.move = name, move

    def choose(self, state: State) -> object:
        return self.move


def test_transcripts_end_as_labelled():
    for outcome, moves in TRANSCRIPTS.items():
        state = GAME.from_moves(moves)
        assert state.is_terminal() and state.outcome() == outcome
        assert not GAME.from_moves(moves[:-1]).is_terminal()


def test_play_game_between_deterministic_players():
    result = play_game(GAME, FirstLegal("x"), LastLegal("o"))
    state = GAME.initial_state()
    for ply, move in enumerate(result.moves):
        expected = state.legal_moves()[0 if ply % 2 == 0 else -1]
        assert move == expected
        state = state.play(move)
    assert state.is_terminal() and result.outcome == state.outcome()
    assert (result.first, result.second, result.opening_plies) == ("x", "o", 0)


def test_play_game_starts_from_the_opening():
    result = play_game(GAME, FirstLegal(), FirstLegal(), opening=(4, 8))
    assert result.moves[:2] == (4, 8) and result.opening_plies == 2
    with pytest.raises(IllegalMove, match="opening"):
        play_game(GAME, FirstLegal(), FirstLegal(), opening=(4, 4))


def test_pair_really_swaps_colours():
    a, b = FirstLegal("a"), LastLegal("b")
    pair = play_pair(GAME, a, b)
    a_first, b_first = pair.games
    assert (a_first.first, a_first.second) == ("a", "b")
    assert (b_first.first, b_first.second) == ("b", "a")
    assert a_first.moves == play_game(GAME, a, b).moves
    assert b_first.moves == play_game(GAME, b, a).moves
    assert a_first.moves != b_first.moves


def test_mirror_match_of_one_player_is_one_win_one_loss():
    # first-legal against itself always wins as X (diagonal 2-4-6), so each side wins once.
    pair = play_pair(GAME, FirstLegal("a"), FirstLegal("b"))
    assert [g.outcome for g in pair.games] == [1, 1]
    assert pair.pentanomial_index == 2 and pair.score_a == 1.0


# a's results in (the game a moves first, the game b moves first) -> pentanomial index.
EXPECTED_INDEX = {
    ("L", "L"): 0,
    ("L", "D"): 1, ("D", "L"): 1,
    ("W", "L"): 2, ("L", "W"): 2, ("D", "D"): 2,
    ("W", "D"): 3, ("D", "W"): 3,
    ("W", "W"): 4,
}  # fmt: skip


@pytest.mark.parametrize(("a_first", "a_second"), list(EXPECTED_INDEX))
def test_pentanomial_index_for_every_combination(a_first, a_second):
    x_result = {"W": 1, "D": 0, "L": -1}
    first_game = TRANSCRIPTS[x_result[a_first]]  # a is X here
    second_game = TRANSCRIPTS[-x_result[a_second]]  # a is O here
    a = Scripted("a", as_first=first_game, as_second=second_game)
    b = Scripted("b", as_first=second_game, as_second=first_game)
    pair = play_pair(GAME, a, b)
    assert pair.games[0].moves == first_game and pair.games[1].moves == second_game
    assert pair.pentanomial_index == EXPECTED_INDEX[a_first, a_second]
    assert pair.score_a == EXPECTED_INDEX[a_first, a_second] / 2


def test_pentanomial_counts_tally_pairs():
    a = Scripted("a", as_first=X_WINS, as_second=DRAW)  # W then D: index 3
    b = Scripted("b", as_first=DRAW, as_second=X_WINS)
    wd = play_pair(GAME, a, b)
    loser = Scripted("a", as_first=O_WINS, as_second=X_WINS)  # L then L: index 0
    winner = Scripted("b", as_first=X_WINS, as_second=O_WINS)
    ll = play_pair(GAME, loser, winner)
    assert (wd.pentanomial_index, ll.pentanomial_index) == (3, 0)
    assert pentanomial_counts([wd, ll, wd]) == [1, 0, 0, 2, 0]


def test_random_early_moves_vary_games_and_reproduce():
    def game(seed: int) -> GameResult:
        rng = np.random.default_rng(seed)
        return play_game(GAME, FirstLegal(), FirstLegal(), rng=rng, early_temperature_moves=2)

    games = [game(seed) for seed in range(8)]
    assert len({g.moves for g in games}) > 1
    assert game(3) == games[3]
    assert all(g.opening_plies == 2 for g in games)


def test_pair_plays_both_games_from_one_random_opening():
    rng = np.random.default_rng(7)
    for _ in range(5):
        pair = play_pair(GAME, FirstLegal("a"), LastLegal("b"), rng=rng, early_temperature_moves=3)
        first, second = pair.games
        assert first.opening_plies == second.opening_plies == 3
        assert first.moves[:3] == second.moves[:3]


def test_given_opening_wins_over_random_moves():
    result = play_game(GAME, FirstLegal(), FirstLegal(), opening=(8,), rng=None, early_temperature_moves=4)
    assert result.moves[0] == 8 and result.opening_plies == 1


def test_random_openings_never_end_the_game():
    rng = np.random.default_rng(0)
    for _ in range(50):
        moves = random_opening(GAME, 9, rng)
        assert not GAME.from_moves(moves).is_terminal()
        assert 5 <= len(moves) <= 8  # no win is possible before the fifth move


def test_random_moves_need_an_rng():
    with pytest.raises(ValueError, match="rng"):
        play_game(GAME, FirstLegal(), FirstLegal(), early_temperature_moves=2)
    with pytest.raises(ValueError, match="negative"):
        play_pair(GAME, FirstLegal(), FirstLegal(), early_temperature_moves=-1)


@pytest.mark.parametrize("bad_move", [4, 9, -1, None, "a1", 2.0, True])
def test_illegal_move_names_the_player(bad_move):
    with pytest.raises(IllegalMove, match="'cheat' \\(player 1\\)"):
        play_game(GAME, Fixed("opener", 4), Fixed("cheat", bad_move))
    with pytest.raises(IllegalMove, match="'cheat' \\(player 0\\)"):
        play_pair(GAME, Fixed("cheat", bad_move), FirstLegal(), opening=(4, 0))

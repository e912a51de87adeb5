"""Playing matches: one game between two players, and a colour-swapped game pair.

A pair plays the same opening twice, each player taking the first move once, so the
opening's and the first move's advantage cancel; its result is one pentanomial category
from ``a``'s point of view (0 = LL, 1 = LD, 2 = WL or DD, 3 = WD, 4 = WW).

Openings: a game starts from ``opening`` (moves played on the players' behalf). A game with
no opening set (``opening=()``) may instead begin with ``early_temperature_moves`` moves drawn
uniformly among the legal ones by the seeded ``rng``, so that deterministic players do not
replay one game forever; a pair draws these moves once and plays both games from them.
Random moves never end the game: only moves that leave it running are drawn, and drawing
stops early if there are none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from engine.errors import IllegalMove
from engine.games.base import Game, Player, State

__all__ = [
    "GameResult",
    "PairResult",
    "pair_result",
    "pentanomial_counts",
    "play_game",
    "play_pair",
    "random_opening",
]


class GameResult(msgspec.Struct, frozen=True):
    """A finished game: every move from the start (opening included) and the outcome from
    the first player's (player 0's) view: +1 won, 0 draw, −1 lost."""

    moves: tuple[int, ...]
    outcome: int
    first: str = ""
    second: str = ""
    opening_plies: int = 0


class PairResult(msgspec.Struct, frozen=True):
    """Two games from one opening: ``games[0]`` with ``a`` as player 0, ``games[1]`` with
    ``b`` as player 0. ``score_a`` is ``a``'s points over both games (0 to 2) and
    ``pentanomial_index`` twice that."""

    games: tuple[GameResult, GameResult]
    pentanomial_index: int
    score_a: float


def random_opening(game: Game, plies: int, rng: np.random.Generator) -> tuple[int, ...]:
    """Up to ``plies`` moves drawn uniformly among the legal moves that do not end the game."""
    if plies < 0:
        raise ValueError(f"plies must not be negative, got {plies}")
    state = game.initial_state()
    for _ in range(plies):
        candidates = [m for m in state.legal_moves() if not state.play(m).is_terminal()]
        if not candidates:
            break
        state = state.play(candidates[int(rng.integers(len(candidates)))])
    return state.moves


def play_game(
    game: Game,
    first: Player,
    second: Player,
    opening: Sequence[int] = (),
    rng: np.random.Generator | None = None,
    early_temperature_moves: int = 0,
) -> GameResult:
    """Play one game, ``first`` as player 0, from ``opening`` (or, with no opening, from
    ``early_temperature_moves`` random moves drawn by ``rng``).

    Raises ``IllegalMove`` naming the player when a player picks an illegal move, and
    ``ValueError`` when random moves are asked for without an ``rng``.
    """
    opening = _opening(game, opening, rng, early_temperature_moves)
    try:
        state = game.from_moves(opening)
    except IllegalMove as exc:
        raise IllegalMove(f"illegal opening {list(opening)}: {exc}") from exc
    players = (first, second)
    while not state.is_terminal():
        player = players[state.to_play]
        state = _play(state, player, player.choose(state))
    outcome = state.outcome()
    assert outcome is not None  # a terminal state has an outcome
    return GameResult(
        moves=tuple(state.moves),
        outcome=int(outcome),
        first=first.name,
        second=second.name,
        opening_plies=len(opening),
    )


def play_pair(
    game: Game,
    a: Player,
    b: Player,
    opening: Sequence[int] = (),
    rng: np.random.Generator | None = None,
    early_temperature_moves: int = 0,
) -> PairResult:
    """Play ``a`` against ``b`` twice from one opening, swapping who moves first."""
    opening = _opening(game, opening, rng, early_temperature_moves)
    return pair_result(play_game(game, a, b, opening), play_game(game, b, a, opening))


def pair_result(a_first: GameResult, b_first: GameResult) -> PairResult:
    """The pair's result from ``a``'s view: ``a`` moved first in ``a_first`` only."""
    index = (a_first.outcome + 1) + (1 - b_first.outcome)  # a's half-points over both
    return PairResult(games=(a_first, b_first), pentanomial_index=index, score_a=index / 2.0)


def pentanomial_counts(pairs: Iterable[PairResult]) -> list[int]:
    """Tally pair results into ``[LL, LD, WL+DD, WD, WW]`` from ``a``'s point of view."""
    counts = [0] * 5
    for pair in pairs:
        counts[pair.pentanomial_index] += 1
    return counts


def _opening(
    game: Game,
    opening: Sequence[int],
    rng: np.random.Generator | None,
    early_temperature_moves: int,
) -> tuple[int, ...]:
    if early_temperature_moves < 0:
        raise ValueError(f"early_temperature_moves must not be negative, got {early_temperature_moves}")
    if opening or early_temperature_moves == 0:
        return tuple(int(m) for m in opening)
    if rng is None:
        raise ValueError("random early moves need a seeded rng (np.random.default_rng(seed))")
    return random_opening(game, early_temperature_moves, rng)


def _play(state: State, player: Player, move: object) -> State:
    """``state`` after ``player``'s ``move``; an illegal one raises ``IllegalMove`` naming them."""
    legal = state.legal_moves()
    is_index = isinstance(move, int | np.integer) and not isinstance(move, bool)
    if not is_index or int(move) not in legal:  # type: ignore[call-overload]
        raise IllegalMove(f"player {player.name!r} (player {state.to_play}): {state.illegal(move)}")
    try:
        return state.play(int(move))  # type: ignore[call-overload]
    except IllegalMove as exc:
        raise IllegalMove(f"player {player.name!r} (player {state.to_play}): {exc}") from exc

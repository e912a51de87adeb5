"""The game interface every game implements, in the spirit of OpenSpiel's ``State``.

A ``Game`` describes a family of positions (board size, action count, input planes);
a ``State`` is one immutable position. Moves are action indices ``0..num_actions-1``;
``move_to_str`` / ``parse_move`` give the human notation. Players are numbered 0
(moves first) and 1. Outcomes are always from player 0's point of view:
+1 player 0 won, -1 player 1 won, 0 draw. ``Game.terminal_value`` turns an outcome into
the value search and training aim at: the outcome itself, or, for a game with a
``quick_win_weight``, an outcome that counts for less the longer the game took (a faster
win, and a slower loss, are worth more).

Nothing here knows about processes, NATS or asyncio.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from engine.errors import IllegalMove


class State(ABC):
    """One immutable game position. ``play`` returns a new state."""

    game: Game

    @property
    @abstractmethod
    def to_play(self) -> int:
        """The player to move: 0 or 1."""

    @abstractmethod
    def legal_moves(self) -> list[int]:
        """Legal action indices, ascending; empty when the game is over."""

    def legal_mask(self) -> np.ndarray:
        """Boolean vector of length ``game.num_actions``."""
        mask = np.zeros(self.game.num_actions, dtype=bool)
        mask[self.legal_moves()] = True
        return mask

    @abstractmethod
    def play(self, move: int) -> State:
        """The position after ``move``; raises ``IllegalMove`` if it is not legal."""

    @abstractmethod
    def is_terminal(self) -> bool: ...

    @abstractmethod
    def outcome(self) -> int | None:
        """+1 / 0 / -1 from player 0's view once terminal, else None."""

    def terminal_value(self) -> float:
        """The value of this finished position for its side to move (``Game.terminal_value``)."""
        outcome = self.outcome()
        if outcome is None:
            raise ValueError("terminal_value of a position that is not finished")
        value = self.game.terminal_value(outcome, len(self.moves))
        return value if self.to_play == 0 else -value

    @abstractmethod
    def planes(self) -> np.ndarray:
        """Network input, float32 ``game.plane_shape``, from the side to move's view."""

    @property
    @abstractmethod
    def moves(self) -> tuple[int, ...]:
        """Every move played from the initial position (the compact serialisable form)."""

    def illegal(self, move: object) -> IllegalMove:
        return IllegalMove(
            f"illegal move {move!r} in {self.game.name} position "
            f"{self.game.moves_to_str(self.moves) or '(start)'}; legal: "
            f"{[self.game.move_to_str(m) for m in self.legal_moves()]}"
        )


class Game(ABC):
    """A game family: rules parameters, action space, notation, symmetries."""

    name: str
    num_actions: int
    plane_shape: tuple[int, int, int]
    max_plies: int  # the longest possible game
    # how much a decisive result shrinks over the longest game: see ``terminal_value``
    quick_win_weight: float = 0.0

    def terminal_value(self, outcome: int, plies: int) -> float:
        """The value, for player 0 and in [-1, 1], of a game that ended ``outcome`` after
        ``plies`` moves: ``outcome * (1 - quick_win_weight * plies / max_plies)``.

        With a weight of 0 it is the outcome. With a positive weight, a win counts for more
        the sooner it comes and a loss for less the later, as in an exact solver's score, so
        that search and the value net prefer the fastest win among winning moves. A draw
        is 0 either way.
        """
        if not outcome:
            return 0.0
        return float(outcome) * (1.0 - self.quick_win_weight * plies / self.max_plies)

    @abstractmethod
    def initial_state(self) -> State: ...

    def from_moves(self, moves: Sequence[int]) -> State:
        """Replay ``moves`` from the start (raises ``IllegalMove`` on the first bad one)."""
        state = self.initial_state()
        for move in moves:
            state = state.play(int(move))
        return state

    @abstractmethod
    def move_to_str(self, move: int) -> str: ...

    @abstractmethod
    def parse_move(self, text: str) -> int:
        """Inverse of ``move_to_str``; raises ``IllegalMove`` on text that names no move."""

    def moves_to_str(self, moves: Sequence[int]) -> str:
        return " ".join(self.move_to_str(m) for m in moves)

    def planes_batch(self, states: Sequence[State]) -> np.ndarray:
        """The planes of ``states`` as one float32 ``[N, *plane_shape]`` array; games may
        override it with a vectorised version giving the same values."""
        if not states:
            return np.zeros((0, *self.plane_shape), dtype=np.float32)
        return np.stack([s.planes() for s in states])

    @abstractmethod
    def symmetries(
        self, planes: np.ndarray, policy: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every symmetric copy (identity first) of a training sample ``(planes, policy)``.

        ``planes`` may carry a leading batch axis; ``policy`` then does too.
        """


class Player(Protocol):
    """Anything that picks a move: random, pure MCTS, network + MCTS, raw policy."""

    name: str

    def choose(self, state: State) -> int: ...

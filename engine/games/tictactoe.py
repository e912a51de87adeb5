"""Tic-tac-toe on a 3×3 board: the tiny game for end-to-end runs of the whole loop.

Actions are cells 0..8, row-major from the top-left; notation is ``a1``..``c3``
(column letter, row number counted from the top).
"""

from __future__ import annotations

import numpy as np

from engine.errors import IllegalMove
from engine.games.base import Game, State

_LINES = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),
    (0, 3, 6), (1, 4, 7), (2, 5, 8),
    (0, 4, 8), (2, 4, 6),
)
# The 8 symmetries of the square as permutations of cells: new[i] = old[perm[i]].
_GRID = np.arange(9).reshape(3, 3)
_PERMS = [
    np.rot90(g, k).reshape(-1)
    for g in (_GRID, np.fliplr(_GRID))
    for k in range(4)
]


class TicTacToeState(State):
    __slots__ = ("game", "_cells", "_moves", "_winner")

    game: TicTacToe

    def __init__(self, game: TicTacToe, cells: tuple[int, ...], moves: tuple[int, ...]):
        self.game = game
        self._cells = cells  # 0 empty, 1 player 0 (X), 2 player 1 (O)
        self._moves = moves
        self._winner = _winner(cells)

    @property
    def to_play(self) -> int:
        return len(self._moves) % 2

    @property
    def moves(self) -> tuple[int, ...]:
        return self._moves

    def legal_moves(self) -> list[int]:
        if self.is_terminal():
            return []
        return [i for i, c in enumerate(self._cells) if c == 0]

    def play(self, move: int) -> TicTacToeState:
        if (
            isinstance(move, bool)
            or not isinstance(move, (int, np.integer))
            or not 0 <= move < 9
            or self._cells[move] != 0
            or self.is_terminal()
        ):
            raise self.illegal(move)
        cells = list(self._cells)
        cells[move] = self.to_play + 1
        return TicTacToeState(self.game, tuple(cells), self._moves + (int(move),))

    def is_terminal(self) -> bool:
        return self._winner is not None or len(self._moves) == 9

    def outcome(self) -> int | None:
        if self._winner is not None:
            return 1 if self._winner == 1 else -1
        return 0 if len(self._moves) == 9 else None

    def planes(self) -> np.ndarray:
        cells = np.asarray(self._cells).reshape(3, 3)
        me, them = self.to_play + 1, 2 - self.to_play
        out = np.zeros(self.game.plane_shape, dtype=np.float32)
        out[0] = cells == me
        out[1] = cells == them
        out[2] = float(self.to_play)
        return out

    def __repr__(self) -> str:
        marks = ".XO"
        rows = ["".join(marks[c] for c in self._cells[r * 3 : r * 3 + 3]) for r in range(3)]
        return f"TicTacToeState({'/'.join(rows)})"


def _winner(cells: tuple[int, ...]) -> int | None:
    for a, b, c in _LINES:
        if cells[a] and cells[a] == cells[b] == cells[c]:
            return cells[a]
    return None


class TicTacToe(Game):
    name = "tictactoe"
    num_actions = 9
    plane_shape = (3, 3, 3)
    max_plies = 9

    def initial_state(self) -> TicTacToeState:
        return TicTacToeState(self, (0,) * 9, ())

    def move_to_str(self, move: int) -> str:
        return "abc"[move % 3] + str(move // 3 + 1)

    def parse_move(self, text: str) -> int:
        t = text.strip().lower()
        if len(t) != 2 or t[0] not in "abc" or t[1] not in "123":
            raise IllegalMove(f"{text!r} is not a tic-tac-toe cell (a1..c3)")
        return (int(t[1]) - 1) * 3 + "abc".index(t[0])

    def symmetries(self, planes: np.ndarray, policy: np.ndarray):
        out = []
        for perm in _PERMS:
            p = planes.reshape(*planes.shape[:-2], 9)[..., perm].reshape(planes.shape)
            out.append((p, policy[..., perm]))
        return out

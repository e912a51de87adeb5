"""Naive reference rules on a plain 2-D list, for checking the fast games (test-only).

Written for obviousness, not speed: a board of rows (row 0 = top), a win found by
walking every cell in every direction. Each exposes ``to_play``, ``legal_moves()``,
``play(move)`` (mutating), ``is_terminal()``, ``outcome()`` and ``planes()`` with the same
meaning as ``engine.games.base.State``.
"""

from __future__ import annotations

import numpy as np

_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


class NaiveBoard:
    """A ``rows × cols`` grid where ``line`` marks in a row win; 0 empty, 1/2 players."""

    def __init__(self, rows: int, cols: int, line: int):
        self.rows, self.cols, self.line = rows, cols, line
        self.grid = [[0] * cols for _ in range(rows)]
        self.count = 0

    @property
    def to_play(self) -> int:
        return self.count % 2

    def winner(self) -> int | None:
        for r in range(self.rows):
            for c in range(self.cols):
                mark = self.grid[r][c]
                if not mark:
                    continue
                for dr, dc in _DIRECTIONS:
                    cells = [(r + i * dr, c + i * dc) for i in range(self.line)]
                    if all(
                        0 <= rr < self.rows and 0 <= cc < self.cols and self.grid[rr][cc] == mark
                        for rr, cc in cells
                    ):
                        return mark
        return None

    def is_terminal(self) -> bool:
        return self.winner() is not None or self.count == self.rows * self.cols

    def outcome(self) -> int | None:
        winner = self.winner()
        if winner is not None:
            return 1 if winner == 1 else -1
        return 0 if self.count == self.rows * self.cols else None

    def legal_moves(self) -> list[int]:
        raise NotImplementedError

    def play(self, move: int) -> None:
        raise NotImplementedError

    def planes(self) -> np.ndarray:
        me, them = self.to_play + 1, 2 - self.to_play
        grid = np.array(self.grid)
        return np.stack(
            [grid == me, grid == them, np.full(grid.shape, self.to_play, dtype=bool)]
        ).astype(np.float32)


class NaiveTicTacToe(NaiveBoard):
    """Actions are cells, row-major from the top-left."""

    def __init__(self) -> None:
        super().__init__(3, 3, 3)

    def legal_moves(self) -> list[int]:
        if self.is_terminal():
            return []
        return [r * 3 + c for r in range(3) for c in range(3) if self.grid[r][c] == 0]

    def play(self, move: int) -> None:
        assert move in self.legal_moves()
        self.grid[move // 3][move % 3] = self.to_play + 1
        self.count += 1


class NaiveConnectFour(NaiveBoard):
    """Actions are columns; a stone falls to the lowest empty row (the largest row index)."""

    def __init__(self, width: int = 7, height: int = 6):
        super().__init__(height, width, 4)

    def legal_moves(self) -> list[int]:
        if self.is_terminal():
            return []
        return [c for c in range(self.cols) if self.grid[0][c] == 0]

    def play(self, move: int) -> None:
        assert move in self.legal_moves()
        row = max(r for r in range(self.rows) if self.grid[r][move] == 0)
        self.grid[row][move] = self.to_play + 1
        self.count += 1

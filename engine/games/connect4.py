"""Connect Four on a bitboard: 7 columns × 6 rows by default, other sizes allowed.

Actions are columns ``0..width-1``; notation is the 1-based column digit ``"1".."9"``,
and a game is written as a digit string (``"4453"``), as in the benchmark files.
Input planes are ``(3, height, width)`` float32 with **row 0 = the top row** (the board
as it is drawn): stones of the side to move, stones of the opponent, a constant plane
equal to ``to_play``. The only symmetry is the left-right mirror.

Bit layout (the classic one, after Pascal Pons): column ``c`` owns bits
``c*(height+1) .. c*(height+1)+height-1``, bottom row first, plus one always-empty
sentinel bit on top, so that shifting by 1, height, height+1 and height+2 finds
vertical, diagonal, horizontal and anti-diagonal lines without wrapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.errors import IllegalMove
from engine.games.base import Game, State

MIN_SIZE, MAX_WIDTH, MAX_HEIGHT = 4, 9, 12


class ConnectFourState(State):
    """One position: ``_current`` = stones of the side to move, ``_mask`` = all stones."""

    __slots__ = ("game", "_current", "_mask", "_moves", "_outcome")

    game: ConnectFour

    def __init__(
        self,
        game: ConnectFour,
        current: int,
        mask: int,
        moves: tuple[int, ...],
        outcome: int | None,
    ):
        self.game = game
        self._current = current
        self._mask = mask
        self._moves = moves
        self._outcome = outcome

    @property
    def to_play(self) -> int:
        return len(self._moves) & 1

    @property
    def moves(self) -> tuple[int, ...]:
        return self._moves

    def legal_moves(self) -> list[int]:
        if self._outcome is not None:
            return []
        return list(self.game._legal_by_full[self._mask & self.game._top_all])

    def play(self, move: int) -> ConnectFourState:
        game = self.game
        if type(move) is not int:
            move = self._coerce(move)
        mask = self._mask
        if not 0 <= move < game.width or mask & game._top[move] or self._outcome is not None:
            raise self.illegal(move)
        new_mask = mask | (mask + game._bottom[move])
        mover = self._current | (new_mask ^ mask)  # stones of the side that just moved
        moves = self._moves + (move,)
        outcome = None  # four in a row: two pairs of pairs along one of the four directions
        s1, s2, s3, s4 = game._shifts
        if (
            ((pairs := mover & (mover >> s1)) and pairs & (pairs >> (s1 + s1)))
            or ((pairs := mover & (mover >> s2)) and pairs & (pairs >> (s2 + s2)))
            or ((pairs := mover & (mover >> s3)) and pairs & (pairs >> (s3 + s3)))
            or ((pairs := mover & (mover >> s4)) and pairs & (pairs >> (s4 + s4)))
        ):
            outcome = 1 if len(self._moves) & 1 == 0 else -1
        elif len(moves) == game.cells:
            outcome = 0
        return ConnectFourState(game, mover ^ new_mask, new_mask, moves, outcome)

    def _coerce(self, move: object) -> int:
        if isinstance(move, np.integer):
            return int(move)
        raise self.illegal(move)

    def is_terminal(self) -> bool:
        return self._outcome is not None

    def outcome(self) -> int | None:
        return self._outcome

    def planes(self) -> np.ndarray:
        game = self.game
        out = np.empty(game.plane_shape, dtype=np.float32)
        if game._bit_index_u64 is not None:  # the board fits in 64 bits: one vector op
            stones = np.array([self._current, self._current ^ self._mask], dtype=np.uint64)
            out[:2] = (stones[:, None, None] >> game._bit_index_u64) & np.uint64(1)
        else:
            out[0] = game._bits_to_grid(self._current)
            out[1] = game._bits_to_grid(self._current ^ self._mask)
        out[2] = float(len(self._moves) & 1)
        return out

    def key(self) -> int:
        """A unique integer for the position (transpositions share it): current + mask."""
        return self._current + self._mask

    def winning_moves(self) -> list[int]:
        """Columns where the side to move completes four at once (empty when terminal)."""
        return [move for move in self.legal_moves() if self.play(move)._outcome not in (None, 0)]

    def board(self) -> list[str]:
        """Rows from the top as strings: ``X`` player 0, ``O`` player 1, ``.`` empty."""
        grid = self.game._bits_to_grid
        mine, theirs = grid(self._current), grid(self._current ^ self._mask)
        x, o = (mine, theirs) if self.to_play == 0 else (theirs, mine)
        return [
            "".join("X" if x[r, c] else "O" if o[r, c] else "." for c in range(self.game.width))
            for r in range(self.game.height)
        ]

    def __repr__(self) -> str:
        return f"ConnectFourState({self.game.moves_to_str(self._moves) or '(start)'})"


class ConnectFour(Game):
    """Connect Four with ``width`` columns (4..9) and ``height`` rows (4..12)."""

    name = "connect4"
    # A win with the last stone is worth 0.7, one with the 4th stone 0.95: search and training
    # then prefer the fastest win and the slowest loss, as the exact solver's score does
    # (measured with net + MCTS 200 on the 236 lost public positions: the slowest loss in
    # 209 against 192 for a net trained on plain ±1 values).
    quick_win_weight = 0.3

    def __init__(self, width: int = 7, height: int = 6):
        if not (MIN_SIZE <= width <= MAX_WIDTH and MIN_SIZE <= height <= MAX_HEIGHT):
            raise ValueError(
                f"connect4 board {width}x{height} not supported: width must be "
                f"{MIN_SIZE}..{MAX_WIDTH} (one digit per column), height {MIN_SIZE}..{MAX_HEIGHT}"
            )
        self.width = width
        self.height = height
        self.cells = width * height
        self.max_plies = self.cells
        self.num_actions = width
        self.plane_shape = (3, height, width)
        stride = height + 1
        self._bottom = tuple(1 << (c * stride) for c in range(width))
        self._top = tuple(1 << (c * stride + height - 1) for c in range(width))
        self._top_all = sum(self._top)
        self._shifts = (1, height, stride, height + 2)
        # legal columns for every pattern of full columns (2**width entries, at most 512)
        self._legal_by_full: dict[int, tuple[int, ...]] = {}
        for pattern in range(1 << width):
            full = sum(self._top[c] for c in range(width) if pattern >> c & 1)
            self._legal_by_full[full] = tuple(c for c in range(width) if not pattern >> c & 1)
        # bit index of every cell, row 0 = top
        self._bit_index = np.array(
            [[c * stride + (height - 1 - r) for c in range(width)] for r in range(height)]
        )
        self._nbytes = (width * stride + 7) // 8
        self._bit_index_u64 = self._bit_index.astype(np.uint64) if width * stride <= 64 else None
        # planes_batch: boards split into 64-bit words; each cell's word and shift in it
        self._words = (width * stride + 63) // 64
        self._cell_word = self._bit_index // 64
        self._cell_shift = (self._bit_index % 64).astype(np.uint64)
        self._notation = {str(c + 1): c for c in range(width)}

    def __repr__(self) -> str:
        return f"ConnectFour(width={self.width}, height={self.height})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConnectFour) and (self.width, self.height) == (
            other.width,
            other.height,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.width, self.height))

    def initial_state(self) -> ConnectFourState:
        return ConnectFourState(self, 0, 0, (), None)

    def move_to_str(self, move: int) -> str:
        return str(move + 1)

    def parse_move(self, text: str) -> int:
        try:
            return self._notation[text.strip()]
        except (KeyError, AttributeError):
            raise IllegalMove(
                f"{text!r} is not a {self.width}-column connect4 move (1..{self.width})"
            ) from None

    def moves_to_str(self, moves: Sequence[int]) -> str:
        """The digit string of a game, e.g. ``"4453"`` (no separators)."""
        return "".join(self.move_to_str(m) for m in moves)

    def parse_moves(self, notation: str) -> tuple[int, ...]:
        """Action indices of a digit string like ``"11123222"`` (whitespace is ignored)."""
        moves = []
        for char in "".join(notation.split()):
            try:
                moves.append(self._notation[char])
            except KeyError:
                raise IllegalMove(
                    f"{char!r} in {notation!r} is not a {self.width}-column connect4 move"
                ) from None
        return tuple(moves)

    def from_moves(self, moves: Sequence[int]) -> ConnectFourState:
        state = self.initial_state()
        for move in moves:
            state = state.play(int(move))
        return state

    def from_notation(self, moves: str) -> ConnectFourState:
        """The position after a digit string like ``"11123222"``; IllegalMove on a bad one."""
        return self.from_moves(self.parse_moves(moves))

    def symmetries(
        self, planes: np.ndarray, policy: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Identity, then the left-right mirror (columns reversed), as fresh arrays."""
        return [
            (planes.copy(), policy.copy()),
            (planes[..., ::-1].copy(), policy[..., ::-1].copy()),
        ]

    def planes_batch(self, states: Sequence[State]) -> np.ndarray:
        """``np.stack([s.planes() for s in states])``, computed for the whole batch at once
        from the bitboards (several times faster on search-sized batches)."""
        n = len(states)
        out = np.empty((n, *self.plane_shape), dtype=np.float32)
        if n == 0:
            return out
        current = [s._current for s in states]  # type: ignore[attr-defined]
        opponent = [c ^ s._mask for c, s in zip(current, states, strict=True)]  # type: ignore[attr-defined]
        words = np.empty((n, 2, self._words), dtype=np.uint64)
        low = (1 << 64) - 1
        for w in range(self._words):
            words[:, 0, w] = np.fromiter(((c >> (64 * w)) & low for c in current), np.uint64, n)
            words[:, 1, w] = np.fromiter(((o >> (64 * w)) & low for o in opponent), np.uint64, n)
        out[:, :2] = (words[:, :, self._cell_word] >> self._cell_shift) & np.uint64(1)
        out[:, 2] = np.fromiter((len(s.moves) & 1 for s in states), np.float32, n)[:, None, None]
        return out

    def mirror_move(self, move: int) -> int:
        return self.width - 1 - move

    def _bits_to_grid(self, bits: int) -> np.ndarray:
        """Boolean ``(height, width)`` grid of a bitboard, row 0 = top."""
        raw = np.frombuffer(bits.to_bytes(self._nbytes, "little"), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")[self._bit_index].astype(bool)

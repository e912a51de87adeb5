"""The positions held by the batched search's node pool, one row per node.

``positions_for(game)`` picks the store: ``BitboardPositions`` for a Connect Four board that
fits in 64 bits (a node is two uint64 bitboards and a ply count; moves are played, lines
found and legal masks read for a whole batch of nodes in a few numpy operations, and a
``State`` object is only built when someone asks for it), else ``ObjectPositions`` (one
``State`` per node, played with ``State.play``: any game). Both give the same positions,
terminal values and legal masks as ``State``'s own methods.

``NodeStates`` is the batch of nodes handed to an evaluator: a sequence of ``State``s built
on access (and cached), with ``planes_batch()`` computed straight from the arrays, so an
evaluator that only needs the planes (``NetworkEvaluator``) or nothing at all
(``UniformEvaluator``) never builds a ``State``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, overload

import numpy as np

from engine.games.base import Game, State
from engine.games.connect4 import ConnectFour, ConnectFourState

NodeInfo = tuple[np.ndarray, np.ndarray, np.ndarray]  # to_play, terminal, terminal value


class Positions(Protocol):
    """What the search needs from a node pool's positions (ids are pool rows)."""

    game: Game

    def allocate(self, capacity: int, size: int) -> None:
        """(Re)allocate for ``capacity`` rows, keeping the first ``size``."""

    def compact(self, order: np.ndarray, remap: np.ndarray) -> None:
        """Rows ``order`` move to the front (``remap``: old id -> new id, -1 when dropped)."""

    def set_states(self, ids: np.ndarray, states: Sequence[State]) -> NodeInfo:
        """Store ``states`` at ``ids``; return their (to_play, terminal, terminal values)."""

    def play(self, parents: np.ndarray, actions: np.ndarray, ids: np.ndarray) -> NodeInfo:
        """Store at ``ids`` the positions after ``actions`` (legal) at ``parents``; return
        their (to_play, terminal, terminal values for the side to move)."""

    def legal(self, ids: np.ndarray) -> np.ndarray:
        """Boolean [len(ids), A] legal masks."""

    def state(self, node: int) -> State: ...

    def states(self, ids: np.ndarray) -> Sequence[State]: ...


def positions_for(game: Game) -> Positions:
    if isinstance(game, ConnectFour) and type(game) is ConnectFour and game.width * (game.height + 1) <= 64:
        return BitboardPositions(game)  # type: ignore[return-value]  # game: ConnectFour
    return ObjectPositions(game)


def _terminal_info(states: Sequence[State]) -> NodeInfo:
    terminal = np.fromiter((s.is_terminal() for s in states), dtype=bool, count=len(states))
    to_play = np.fromiter((s.to_play for s in states), dtype=np.int8, count=len(states))
    tvalue = np.array([s.terminal_value() if t else 0.0 for s, t in zip(states, terminal, strict=True)],
                      dtype=np.float64)
    return to_play, terminal, tvalue


class ObjectPositions:
    """One ``State`` object per node: any game."""

    def __init__(self, game: Game):
        self.game = game
        self._states = np.empty(0, dtype=object)

    def allocate(self, capacity: int, size: int) -> None:
        new = np.empty(capacity, dtype=object)
        new[:size] = self._states[:size]
        self._states = new

    def compact(self, order: np.ndarray, remap: np.ndarray) -> None:
        m = order.size
        self._states[:m] = self._states[order]
        self._states[m : remap.size] = None

    def set_states(self, ids: np.ndarray, states: Sequence[State]) -> NodeInfo:
        self._states[ids] = np.fromiter(states, dtype=object, count=len(states))
        return _terminal_info(states)

    def play(self, parents: np.ndarray, actions: np.ndarray, ids: np.ndarray) -> NodeInfo:
        src = self._states
        return self.set_states(ids, [src[p].play(a) for p, a in zip(parents.tolist(), actions.tolist(),
                                                                   strict=True)])

    def legal(self, ids: np.ndarray) -> np.ndarray:
        return legal_masks(list(self._states[ids]), self.game.num_actions)

    def state(self, node: int) -> State:
        return self._states[node]

    def states(self, ids: np.ndarray) -> Sequence[State]:
        return list(self._states[ids])


def legal_masks(states: Sequence[State], num_actions: int) -> np.ndarray:
    """Boolean [N, A] legal-move masks of ``states`` (one vectorised fill for the batch)."""
    moves = [s.legal_moves() for s in states]
    counts = np.fromiter(map(len, moves), dtype=np.int64, count=len(moves))
    mask = np.zeros((len(moves), num_actions), dtype=bool)
    flat = np.fromiter((m for row in moves for m in row), dtype=np.int64, count=int(counts.sum()))
    mask[np.repeat(np.arange(len(moves)), counts), flat] = True
    return mask


class BitboardPositions:
    """Connect Four nodes as bitboards (the game's own layout): ``current`` (stones of the
    side to move), ``mask`` (all stones), ``ply``; ``parent`` and ``action`` rebuild a
    ``State`` from the nearest node that holds one (roots always do)."""

    def __init__(self, game: ConnectFour):
        self.game = game
        u = np.uint64
        self._bottom = np.array(game._bottom, dtype=u)
        self._top = np.array(game._top, dtype=u)
        self._shifts = np.array(game._shifts, dtype=u)
        self._shifts2 = self._shifts + self._shifts
        self._bit_index = game._bit_index.astype(u)
        self._current = np.zeros(0, dtype=u)
        self._mask = np.zeros(0, dtype=u)
        self._ply = np.zeros(0, dtype=np.int64)
        self._parent = np.zeros(0, dtype=np.int64)
        self._action = np.zeros(0, dtype=np.int64)
        self._states = np.empty(0, dtype=object)

    _COLUMNS = ("_current", "_mask", "_ply", "_parent", "_action", "_states")

    def allocate(self, capacity: int, size: int) -> None:
        for name in self._COLUMNS:
            old = getattr(self, name)
            new = np.empty(capacity, dtype=old.dtype)  # object columns start as None
            new[:size] = old[:size]
            setattr(self, name, new)

    def compact(self, order: np.ndarray, remap: np.ndarray) -> None:
        m = order.size
        for name in self._COLUMNS:
            arr = getattr(self, name)
            arr[:m] = arr[order]
        parent = self._parent[:m]
        self._parent[:m] = np.where(parent >= 0, remap[np.maximum(parent, 0)], -1)
        self._states[m : remap.size] = None

    def set_states(self, ids: np.ndarray, states: Sequence[State]) -> NodeInfo:
        self._states[ids] = np.fromiter(states, dtype=object, count=len(states))
        self._current[ids] = [s._current for s in states]  # type: ignore[attr-defined]
        self._mask[ids] = [s._mask for s in states]  # type: ignore[attr-defined]
        self._ply[ids] = [len(s.moves) for s in states]
        self._parent[ids] = -1
        return _terminal_info(states)

    def play(self, parents: np.ndarray, actions: np.ndarray, ids: np.ndarray) -> NodeInfo:
        """``ConnectFourState.play`` for a batch: the same bit arithmetic, in uint64 arrays."""
        game = self.game
        mask = self._mask[parents]
        new_mask = mask | (mask + self._bottom[actions])
        mover = self._current[parents] | (new_mask ^ mask)
        pairs = mover[:, None] & (mover[:, None] >> self._shifts)  # the four directions at once
        won = (pairs & (pairs >> self._shifts2)).any(axis=1)
        ply = self._ply[parents] + 1
        self._current[ids] = mover ^ new_mask
        self._mask[ids] = new_mask
        self._ply[ids] = ply
        self._parent[ids] = parents
        self._action[ids] = actions
        self._states[ids] = None
        to_play = (ply & 1).astype(np.int8)
        terminal = won | (ply == game.cells)
        # Game.terminal_value: outcome * (1 - w * plies / max_plies), for player 0; the
        # winner is the side that just moved, so the side to move lost: -1 for it
        value = -(1.0 - game.quick_win_weight * ply / game.max_plies)
        # a draw is 0.0, negated (-0.0) for player 1 as State.terminal_value does
        tvalue = np.where(won, value, np.where(terminal & (to_play == 1), -0.0, 0.0))
        return to_play, terminal, tvalue

    def legal(self, ids: np.ndarray) -> np.ndarray:
        return (self._mask[ids, None] & self._top) == 0

    def state(self, node: int) -> State:
        states = self._states
        found = states[node]
        if found is not None:
            return found
        path = []
        while found is None:
            path.append(node)
            node = int(self._parent[node])
            found = states[node]
        for step in reversed(path):
            found = found.play(int(self._action[step]))
            states[step] = found
        return found

    def states(self, ids: np.ndarray) -> NodeStates:
        return NodeStates(self, ids)

    def planes(self, ids: np.ndarray) -> np.ndarray:
        """``game.planes_batch`` of the nodes, from the bitboards."""
        game = self.game
        out = np.empty((ids.size, *game.plane_shape), dtype=np.float32)
        current = self._current[ids]
        stones = np.stack([current, current ^ self._mask[ids]], axis=1)
        out[:, :2] = (stones[:, :, None, None] >> self._bit_index) & np.uint64(1)
        out[:, 2] = (self._ply[ids] & 1).astype(np.float32)[:, None, None]
        return out


class NodeStates(Sequence[State]):
    """The ``State``s of some nodes, built on access; ``planes_batch()`` needs none."""

    def __init__(self, positions: BitboardPositions, ids: np.ndarray):
        self.positions = positions
        self.ids = ids
        self.game = positions.game

    def __len__(self) -> int:
        return int(self.ids.size)

    @overload
    def __getitem__(self, index: int) -> State: ...

    @overload
    def __getitem__(self, index: slice) -> list[State]: ...

    def __getitem__(self, index: int | slice) -> State | list[State]:
        if isinstance(index, slice):
            return [self.positions.state(int(i)) for i in self.ids[index]]
        return self.positions.state(int(self.ids[index]))

    def __iter__(self) -> Iterator[State]:
        return (self.positions.state(int(i)) for i in self.ids)

    def planes_batch(self) -> np.ndarray:
        return self.positions.planes(self.ids)


__all__ = ["BitboardPositions", "ConnectFourState", "NodeStates", "ObjectPositions", "legal_masks",
           "positions_for"]

"""Training samples: positions from finished games as arrays the trainer consumes.

``samples_from_record`` replays a ``GameRecord`` and gives, for each fully searched move, the
input planes, the search policy, the game's terminal value (its outcome, or a length-weighted
outcome: ``Game.terminal_value``) from the side to move's view and the search's root value
(the terminal value again where the game did not record it). ``Samples`` holds them
(``planes [P,C,H,W]``, ``policies [P,A]``, ``values [P]``, ``search_values [P]``, all
float32); ``value_targets(w)`` blends the two values for training. It concatenates, and
round-trips through bytes (an in-memory ``.npz``, no pickle) so that a training-pool shard
can live in an object store.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError
from engine.games.base import Game
from engine.selfplay import GameRecord


class InvalidSamples(EngineError, ValueError):
    """Sample bytes or arrays that are not a consistent set of training samples."""


@dataclass(frozen=True)
class Samples:
    planes: np.ndarray  # [P, C, H, W] float32
    policies: np.ndarray  # [P, A] float32
    values: np.ndarray  # [P] float32, the game's terminal value for the side to move
    search_values: np.ndarray | None = None  # [P] float32, root value; None: ``values``

    def __post_init__(self) -> None:
        if self.search_values is None:
            object.__setattr__(self, "search_values", self.values.copy())
        p = self.planes
        q = self.searched
        if p.ndim != 4 or self.policies.ndim != 2 or self.values.ndim != 1 or q.ndim != 1:
            raise InvalidSamples(
                f"sample arrays have shapes {p.shape}, {self.policies.shape}, "
                f"{self.values.shape}, {q.shape}; expected [P,C,H,W], [P,A], [P], [P]"
            )
        if not len(p) == len(self.policies) == len(self.values) == len(q):
            raise InvalidSamples("sample arrays disagree on the number of positions")
        for arr in (p, self.policies, self.values, q):
            if arr.dtype != np.float32:
                raise InvalidSamples(f"sample arrays must be float32, got {arr.dtype}")

    @property
    def searched(self) -> np.ndarray:
        """The search values (never None once constructed)."""
        assert self.search_values is not None
        return self.search_values

    def value_targets(self, search_weight: float, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Value targets of the rows ``index``: ``(1 - w) * value + w * search value``."""
        z = self.values[index]
        if search_weight == 0.0:
            return z
        return (z + np.float32(search_weight) * (self.searched[index] - z)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def empty(cls, plane_shape: Sequence[int], num_actions: int) -> Samples:
        return cls(
            np.zeros((0, *plane_shape), np.float32),
            np.zeros((0, num_actions), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.float32),
        )

    @classmethod
    def concat(cls, parts: Sequence[Samples]) -> Samples:
        if not parts:
            raise InvalidSamples("nothing to concatenate")
        shapes = {(s.planes.shape[1:], s.policies.shape[1]) for s in parts}
        if len(shapes) != 1:
            raise InvalidSamples(f"samples of different games cannot be joined: {shapes}")
        return cls(
            np.concatenate([s.planes for s in parts]),
            np.concatenate([s.policies for s in parts]),
            np.concatenate([s.values for s in parts]),
            np.concatenate([s.searched for s in parts]),
        )

    def subset(self, index: np.ndarray | slice) -> Samples:
        return Samples(self.planes[index], self.policies[index], self.values[index], self.searched[index])

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, planes=self.planes, policies=self.policies, values=self.values,
            search_values=self.searched,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Samples:
        """Samples from ``to_bytes`` output; shards written before search values were
        stored read with their values as their search values."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in ("planes", "policies", "values")}
                if "search_values" in npz.files:
                    arrays["search_values"] = npz["search_values"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidSamples(f"not a samples shard: {exc}") from exc
        return cls(**arrays)


def samples_from_record(game: Game, record: GameRecord) -> Samples:
    """One sample per fully searched move of ``record`` (opening moves have no search policy;
    moves that got only a fast search are played, not trained on)."""
    n = len(record.policies)
    planes = np.empty((n, *game.plane_shape), np.float32)
    values = np.empty(n, np.float32)
    policies = np.asarray(record.policies, dtype=np.float32).reshape(n, game.num_actions)
    final_value = game.terminal_value(record.outcome, record.plies)
    state = game.initial_state()
    for ply, move in enumerate(record.moves):
        i = ply - record.opening_plies
        if i >= 0:
            planes[i] = state.planes()
            values[i] = final_value if state.to_play == 0 else -final_value
        state = state.play(int(move))
    searched = np.asarray(record.root_values, np.float32) if record.root_values else None
    samples = Samples(planes, policies, values, searched)
    if record.full_search:  # playout cap: only the fully searched moves are samples
        samples = samples.subset(np.asarray(record.trained_moves(), np.int64))
    return samples


def samples_from_records(game: Game, records: Sequence[GameRecord]) -> Samples:
    if not records:
        return Samples.empty(game.plane_shape, game.num_actions)
    return Samples.concat([samples_from_record(game, r) for r in records])

"""Errors raised by the game-AI core (games, search, networks, checkpoints, rating math).

    EngineError                 root of this package's errors (a ``JetzeroError`` elsewhere
                                wraps it at the boundary when it reaches the log)
    ├── IllegalMove             a move that is not legal in the position, or unparsable notation
    ├── UnknownGame             a game name / parameters the registry does not know
    │                           (engine.games)
    ├── BadPositionsFile        a benchmark positions file with a malformed line
    │                           (engine.strength)
    ├── CheckpointError         a checkpoint that is corrupt, fails its digest, or does not
    │                           match the expected game / architecture
    ├── TrainingDiverged        a training step produced a NaN or infinite loss
    ├── InvalidSamples          (engine.samples) training arrays of the wrong shape or values
    └── InvalidGameRecord       (engine.selfplay) a game record that does not replay
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of the engine's errors."""


class IllegalMove(EngineError, ValueError):
    """A move that is not legal in the given position."""


class CheckpointError(EngineError):
    """A checkpoint that cannot be trusted: corrupt, wrong digest, wrong game or architecture."""


class TrainingDiverged(EngineError, ArithmeticError):
    """A training step produced a non-finite loss; nothing is saved."""

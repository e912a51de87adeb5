"""The engine line protocol (docs/engine-protocol.md): its words, and parsing and formatting its lines.

Both ends use this module: ``handlers.pipeline.engine_process`` (the engine, one per side of a
validation, possibly from an older checkout) and ``handlers.pipeline.engines`` (the client in
the orchestrator). Lines are UTF-8 text, one request or answer each, words split on spaces;
moves are action indices from 0. ``ProtocolError`` says what is wrong with a line.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = [
    "HELLO",
    "MODULE",
    "VERSION",
    "BenchFigures",
    "ProtocolError",
    "format_position",
    "parse_bench",
    "parse_bestmove",
    "parse_position",
]

VERSION = 1
HELLO = f"jetzero-engine {VERSION}"  # the client's first line; the engine answers id lines, then ready
MODULE = "handlers.pipeline.engine_process"  # run as ``python -m MODULE`` from a checkout's root
DEFAULT_GAME_ID = "0"


class ProtocolError(ValueError):
    """A line that is not what the protocol allows at that point (the message says why)."""


class BenchFigures(msgspec.Struct, frozen=True, kw_only=True):
    """One ``bench`` answer: network evaluations and search simulations in ``seconds``."""

    evals: int
    sims: int
    seconds: float

    @property
    def evals_per_s(self) -> float:
        return self.evals / self.seconds if self.seconds > 0 else 0.0

    @property
    def sims_per_s(self) -> float:
        return self.sims / self.seconds if self.seconds > 0 else 0.0


def format_position(moves: Sequence[int], game_id: str | None = None) -> str:
    """``position [game ID] startpos [moves M ...]``."""
    head = "position" if game_id is None else f"position game {game_id}"
    tail = (" moves " + " ".join(str(int(m)) for m in moves)) if moves else ""
    return f"{head} startpos{tail}"


def parse_position(words: Sequence[str]) -> tuple[str, tuple[int, ...]]:
    """``(game id, moves)`` of a ``position`` request split into words."""
    rest = list(words[1:])
    game_id = DEFAULT_GAME_ID
    if rest[:1] == ["game"]:
        if len(rest) < 2:
            raise ProtocolError("position game: the game id is missing")
        game_id, rest = rest[1], rest[2:]
    if rest[:1] != ["startpos"]:
        raise ProtocolError("position: expected 'startpos' (then 'moves M ...')")
    rest = rest[1:]
    if not rest:
        return game_id, ()
    if rest[0] != "moves":
        raise ProtocolError(f"position: expected 'moves' after startpos, got {rest[0]!r}")
    try:
        return game_id, tuple(int(m) for m in rest[1:])
    except ValueError:
        raise ProtocolError(f"position: moves are action numbers, got {' '.join(rest[1:])!r}") from None


def parse_bestmove(line: str) -> tuple[int, str]:
    """``(move, game id)`` of ``bestmove M [game ID]``; an ``error`` line raises with its text."""
    words = line.split()
    if words[:1] == ["error"]:
        raise ProtocolError(line[len("error"):].strip() or "error")
    if len(words) not in (2, 4) or words[0] != "bestmove" or (len(words) == 4 and words[2] != "game"):
        raise ProtocolError(f"expected 'bestmove M [game ID]', got {line!r}")
    try:
        move = int(words[1])
    except ValueError:
        raise ProtocolError(f"bestmove: {words[1]!r} is not an action number") from None
    return move, words[3] if len(words) == 4 else DEFAULT_GAME_ID


def parse_bench(line: str) -> BenchFigures:
    """The figures of ``bench evals E sims S seconds T``."""
    words = line.split()
    if words[:1] == ["error"]:
        raise ProtocolError(line[len("error"):].strip() or "error")
    if words[:1] != ["bench"] or len(words) % 2 != 1:
        raise ProtocolError(f"expected 'bench evals E sims S seconds T', got {line!r}")
    pairs = dict(zip(words[1::2], words[2::2], strict=True))
    try:
        evals, sims, seconds = int(pairs["evals"]), int(pairs["sims"]), float(pairs["seconds"])
        return BenchFigures(evals=evals, sims=sims, seconds=seconds)
    except (KeyError, ValueError):
        raise ProtocolError(f"bench: evals, sims and seconds are needed as numbers, got {line!r}") from None

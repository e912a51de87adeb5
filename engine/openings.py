"""Opening sets for match play, so that deterministic players do not replay one game.

Connect Four (7×6) ships ``data/connect4_openings.txt``: short positions from the solved
benchmark file whose exact score is small (a draw, or a win or loss only near the end),
most balanced first. Games with no opening set get one empty opening, ``[()]``; callers
then add a little temperature to the first moves instead.

Regenerate the shipped file with ``python -m engine.openings [POSITIONS] [OUT]``.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from engine.games.base import Game
from engine.games.connect4 import ConnectFour
from engine.strength import load_positions

OPENINGS_FILE = "connect4_openings.txt"
POSITIONS_FILE = "connect4_public.jsonl"
DEFAULT_MAX_STONES = 10
DEFAULT_MAX_ABS_SCORE = 2


def _data_file(name: str) -> Path:
    return Path(str(resources.files("engine") / "data" / name))


def select_balanced_openings(
    positions_path: str | Path,
    max_stones: int = DEFAULT_MAX_STONES,
    max_abs_score: int = DEFAULT_MAX_ABS_SCORE,
    limit: int | None = None,
) -> list[str]:
    """Digit strings of the positions with ``stones <= max_stones`` and
    ``|best_score| <= max_abs_score``, one per position up to transposition and mirror
    image, ordered by ``|best_score|`` (draws first), then stones, then the moves."""
    game = ConnectFour()
    chosen: dict[int, tuple[tuple[int, int, str], str]] = {}
    for p in load_positions(positions_path, game):
        if p.stones > max_stones or abs(p.best_score) > max_abs_score:
            continue
        moves = game.parse_moves(p.moves)
        key = min(
            game.from_moves(moves).key(),
            game.from_moves([game.mirror_move(m) for m in moves]).key(),
        )
        rank = (abs(p.best_score), p.stones, p.moves)
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, p.moves)
    ordered = [moves for _, moves in sorted(chosen.values())]
    return ordered if limit is None else ordered[:limit]


def format_openings_file(
    openings: list[str], source: str, max_stones: int, max_abs_score: int
) -> str:
    header = [
        "# Connect Four (7x6) openings for match play: one game prefix per line, columns 1..7.",
        f"# Made by engine.openings.select_balanced_openings from {source}:",
        f"# positions with at most {max_stones} stones whose exact score (side to move) is",
        f"# within +-{max_abs_score} (a draw, or a win or loss only with the last stones),",
        "# deduplicated up to transposition and mirror image, most balanced first.",
        f"# {len(openings)} openings.",
    ]
    return "\n".join(header + openings) + "\n"


def read_openings(path: str | Path, game: Game) -> list[tuple[int, ...]]:
    """Openings of a file like the shipped one, as action tuples (each checked legal)."""
    if not isinstance(game, ConnectFour):
        raise TypeError(f"opening files hold Connect Four games, not {game.name}")
    openings = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            openings.append(game.from_notation(line).moves)
    return openings


def openings_for(game: Game, count: int | None = None) -> list[tuple[int, ...]]:
    """At most ``count`` (default: all) openings for ``game``, most balanced first.

    Games without an opening set, Connect Four at other sizes included, get ``[()]``.
    """
    if isinstance(game, ConnectFour) and (game.width, game.height) == (7, 6):
        openings = read_openings(_data_file(OPENINGS_FILE), game)
    else:
        openings = [()]
    return openings if count is None else openings[:count]


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else _data_file(POSITIONS_FILE)
    out = Path(argv[1]) if len(argv) > 1 else _data_file(OPENINGS_FILE)
    openings = select_balanced_openings(source, DEFAULT_MAX_STONES, DEFAULT_MAX_ABS_SCORE)
    out.write_text(
        format_openings_file(openings, source.name, DEFAULT_MAX_STONES, DEFAULT_MAX_ABS_SCORE)
    )
    print(f"wrote {len(openings)} openings to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])

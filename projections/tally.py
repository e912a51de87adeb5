"""The GAMES tally: games and positions a run has played, and when its recent games finished.

A pure fold of the raw ``game.finished`` records of one run (stream ``GAMES``). It is the one
source of the selfplay figures that ``--status`` and the metrics share: the games and
positions played and ``games_per_minute``.
"""

from __future__ import annotations

import msgspec

from projections.base import BaseProjection
from streams import games as gm
from streams import names

__all__ = ["RATE_WINDOW_S", "RECENT_GAMES", "GameTally", "GameTallyProjection", "games_per_minute"]

RECENT_GAMES = 256  # game times the tally keeps for the games-per-minute rate
RATE_WINDOW_S = 60.0


class GameTally(msgspec.Struct, frozen=True, kw_only=True):
    games: int = 0
    positions: int = 0
    last_game_time: float = 0.0
    recent: tuple[float, ...] = ()  # times of the latest games, oldest first


class GameTallyProjection(BaseProjection[GameTally]):
    """Games and positions played in a run, and when the last game finished."""

    name = "game_tally"
    stream = names.GAMES
    state_type = GameTally

    def initial(self) -> GameTally:
        return GameTally()

    def on_game_finished(self, s: GameTally, e: gm.GameFinished) -> GameTally:
        return GameTally(
            games=s.games + 1,
            positions=s.positions + len(e.moves),
            last_game_time=max(s.last_game_time, e.time),
            recent=(*s.recent, e.time)[-RECENT_GAMES:],
        )


def games_per_minute(tally: GameTally, now: float, window: float = RATE_WINDOW_S) -> float:
    """Games finished in the last ``window`` seconds, per minute.

    When every remembered game is inside the window (a fast run), the rate is taken over
    the span those games cover instead, which the ring of ``RECENT_GAMES`` bounds.
    """
    inside = [t for t in tally.recent if t >= now - window]
    if not inside:
        return 0.0
    if len(inside) == len(tally.recent) == RECENT_GAMES:
        span = now - min(inside)
        if span > 0:
            return 60.0 * len(inside) / span
    return 60.0 * len(inside) / window

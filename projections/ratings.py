"""Ratings read model: one Elo ladder of every model and reference player, with intervals.

Each completed match adds its pentanomial counts as game results between the two players'
labels (a model's id, or ``random:0`` / ``pure_mcts:200``); the ladder is the Bradley–Terry
fit of all of them (``engine.rating.bradley_terry``), recomputed at each completion.

- Pairs become games as LL = 2 losses, LD = a draw and a loss, WL/DD = 2 draws, WD = a win
  and a draw, WW = 2 wins. The ladder counts a draw as half a win, so WL and DD weigh the
  same and the pentanomial loses nothing the fit uses.
- The anchor (Elo 0) is the random player when it has played; otherwise the opponent of the
  first completed match. Players with no chain of games to the anchor are listed as
  ``unrated`` until one appears.
"""

from __future__ import annotations

import msgspec

from engine.rating import Rating, bradley_terry
from projections.base import BaseProjection
from streams import events as ev

__all__ = [
    "ANCHOR",
    "MatchResult",
    "Ratings",
    "RatingsProjection",
    "compute_ladder",
    "games_from_pentanomial",
]

ANCHOR = ev.PlayerSpec(kind="random").label


class MatchResult(msgspec.Struct, frozen=True, kw_only=True):
    """A completed match as games between ``a`` (the candidate) and ``b``."""

    match_id: str
    a: str
    b: str
    wins_a: int
    draws: int
    wins_b: int

    @property
    def games(self) -> int:
        return self.wins_a + self.draws + self.wins_b


class Ratings(msgspec.Struct, frozen=True, kw_only=True):
    players: dict[str, tuple[str, str]] = {}  # match id -> (candidate, opponent) labels
    results: dict[str, MatchResult] = {}  # completed matches, in completion order
    ladder: dict[str, Rating] = {}
    anchor: str = ""
    unrated: tuple[str, ...] = ()

    def ranked(self) -> list[tuple[str, Rating]]:
        """The ladder, strongest first."""
        return sorted(self.ladder.items(), key=lambda kv: (-kv[1].elo, kv[0]))


def games_from_pentanomial(counts: list[int] | tuple[int, ...]) -> tuple[int, int, int]:
    """``(wins, draws, losses)`` of the side whose pair counts ``[LL, LD, WL+DD, WD, WW]`` are."""
    ll, ld, mid, wd, ww = counts
    return 2 * ww + wd, ld + 2 * mid + wd, 2 * ll + ld


def compute_ladder(
    results: list[MatchResult], preferred_anchor: str = ANCHOR
) -> tuple[str, dict[str, Rating], tuple[str, ...]]:
    """``(anchor, ratings, unrated)`` from ``results`` (see the module docstring)."""
    played = [r for r in results if r.games > 0]
    if not played:
        return "", {}, ()
    everyone = list(dict.fromkeys(name for r in played for name in (r.a, r.b)))
    anchor = preferred_anchor if preferred_anchor in everyone else played[0].b
    linked, frontier = {anchor}, [anchor]
    while frontier:
        name = frontier.pop()
        for r in played:
            for x, y in ((r.a, r.b), (r.b, r.a)):
                if x == name and y not in linked:
                    linked.add(y)
                    frontier.append(y)
    rows = [(r.a, r.b, r.wins_a, r.draws, r.wins_b) for r in played if r.a in linked]
    ladder = bradley_terry(rows, anchor) if len(linked) > 1 else {}
    return anchor, ladder, tuple(name for name in everyone if name not in linked)


class RatingsProjection(BaseProjection[Ratings]):
    name = "ratings"
    state_type = Ratings

    def initial(self) -> Ratings:
        return Ratings()

    def on_MatchScheduled(self, s: Ratings, e: ev.MatchScheduled) -> Ratings:
        if e.match_id in s.players or e.candidate.label == e.opponent.label:
            return s
        players = {**s.players, e.match_id: (e.candidate.label, e.opponent.label)}
        return msgspec.structs.replace(s, players=players)

    def on_MatchCompleted(self, s: Ratings, e: ev.MatchCompleted) -> Ratings:
        labels = s.players.get(e.match_id)
        if labels is None or e.match_id in s.results or len(e.pentanomial) != 5:
            return s
        if any(c < 0 for c in e.pentanomial):
            return s
        wins, draws, losses = games_from_pentanomial(e.pentanomial)
        result = MatchResult(
            match_id=e.match_id, a=labels[0], b=labels[1], wins_a=wins, draws=draws, wins_b=losses
        )
        results = {**s.results, e.match_id: result}
        anchor, ladder, unrated = compute_ladder(list(results.values()))
        return msgspec.structs.replace(s, results=results, ladder=ladder, anchor=anchor, unrated=unrated)

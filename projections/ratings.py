"""Ratings read model: one Elo ladder of every model and reference player, with intervals.

Each completed match adds its pentanomial counts as game results between the two players'
labels (a model's id, or ``random:0`` / ``pure_mcts:200``); the ladder is the Bradley–Terry
fit of all of them (``engine.ladder``).

- Pairs become games as LL = 2 losses, LD = a draw and a loss, WL/DD = 2 draws, WD = a win
  and a draw, WW = 2 wins. The ladder counts a draw as half a win, so WL and DD weigh the
  same and the pentanomial loses nothing the fit uses.
- The anchor (Elo 0) is the random player when it has played; otherwise the opponent of the
  first completed match. Players with no chain of games to the anchor are listed as
  ``unrated`` until one appears.
- The fold only records the matches (persistent maps, ``projections.persistent``), so
  replaying a run is linear in its events; the ladder is fitted once, when a state is first
  read (``ladder``, ``rating``, ``anchor``, ``unrated``, ``ranked``), and kept with that state.
  ``ladder`` is a mapping whose intervals are computed as they are read, so
  ``ladder.get(label)`` or ``rating(label)`` on a ladder of thousands computes one. Every
  figure is exactly what ``compute_ladder`` gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import msgspec

from engine.ladder import Ladder, Rating, fit_ladder
from projections import persistent
from projections.base import BaseProjection
from streams import events as ev

__all__ = [
    "ANCHOR",
    "FittedLadder",
    "MatchResult",
    "Ratings",
    "RatingsProjection",
    "compute_ladder",
    "fit_results",
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


class FittedLadder(msgspec.Struct, frozen=True):
    """The anchor, the fit of the players linked to it (``None`` when none is), the rest."""

    anchor: str
    fit: Ladder | None
    unrated: tuple[str, ...]


# forbid_unknown_fields: a snapshot of an earlier layout (with the ladder in it) fails to
# decode, and the runner rebuilds from the log, instead of reading it as an empty state.
class Ratings(msgspec.Struct, frozen=True, kw_only=True, dict=True, forbid_unknown_fields=True):
    scheduled: persistent.Levels[str, tuple[str, str]] = ()  # match id -> (candidate, opponent)
    completed: persistent.Levels[str, MatchResult] = ()  # match id -> result

    @property
    def results(self) -> dict[str, MatchResult]:
        """The completed matches, in completion order."""
        return persistent.merged(self.completed)

    @cached_property
    def fitted(self) -> FittedLadder:
        return fit_results(list(self.results.values()))

    @property
    def anchor(self) -> str:
        return self.fitted.anchor

    @property
    def unrated(self) -> tuple[str, ...]:
        return self.fitted.unrated

    @property
    def ladder(self) -> Mapping[str, Rating]:
        """Every rated player's rating, in first-seen order; ``ladder.get(label)`` fits the
        interval of that one player only (``engine.ladder.Ladder``)."""
        fit = self.fitted.fit
        return {} if fit is None else fit

    def rating(self, label: str) -> Rating | None:
        """``label``'s rating, or ``None`` if it is not on the ladder."""
        fit = self.fitted.fit
        return None if fit is None else fit.rating(label)

    def ranked(self) -> list[tuple[str, Rating]]:
        """The ladder, strongest first."""
        return sorted(self.ladder.items(), key=lambda kv: (-kv[1].elo, kv[0]))


def games_from_pentanomial(counts: list[int] | tuple[int, ...]) -> tuple[int, int, int]:
    """``(wins, draws, losses)`` of the side whose pair counts ``[LL, LD, WL+DD, WD, WW]`` are."""
    ll, ld, mid, wd, ww = counts
    return 2 * ww + wd, ld + 2 * mid + wd, 2 * ll + ld


def fit_results(results: list[MatchResult], preferred_anchor: str = ANCHOR) -> FittedLadder:
    """The ladder of ``results`` (see the module docstring), in time linear in them plus the fit."""
    played = [r for r in results if r.games > 0]
    if not played:
        return FittedLadder("", None, ())
    everyone = list(dict.fromkeys(name for r in played for name in (r.a, r.b)))
    anchor = preferred_anchor if preferred_anchor in everyone else played[0].b
    neighbours: dict[str, list[str]] = {}
    for r in played:
        neighbours.setdefault(r.a, []).append(r.b)
        neighbours.setdefault(r.b, []).append(r.a)
    linked, frontier = {anchor}, [anchor]
    while frontier:
        for other in neighbours[frontier.pop()]:
            if other not in linked:
                linked.add(other)
                frontier.append(other)
    rows = [(r.a, r.b, r.wins_a, r.draws, r.wins_b) for r in played if r.a in linked]
    fit = fit_ladder(rows, anchor) if len(linked) > 1 else None
    return FittedLadder(anchor, fit, tuple(name for name in everyone if name not in linked))


def compute_ladder(
    results: list[MatchResult], preferred_anchor: str = ANCHOR
) -> tuple[str, dict[str, Rating], tuple[str, ...]]:
    """``(anchor, ratings, unrated)`` from ``results``, every interval computed."""
    fitted = fit_results(results, preferred_anchor)
    return fitted.anchor, {} if fitted.fit is None else fitted.fit.ratings(), fitted.unrated


class RatingsProjection(BaseProjection[Ratings]):
    name = "ratings"
    version = 2  # v2: completed matches in persistent maps, the ladder fitted when read
    state_type = Ratings

    def initial(self) -> Ratings:
        return Ratings()

    def on_match_scheduled(self, s: Ratings, e: ev.MatchScheduled) -> Ratings:
        if e.candidate.label == e.opponent.label or persistent.contains(s.scheduled, e.match_id):
            return s
        scheduled = persistent.put(s.scheduled, e.match_id, (e.candidate.label, e.opponent.label))
        return msgspec.structs.replace(s, scheduled=scheduled)

    def on_match_completed(self, s: Ratings, e: ev.MatchCompleted) -> Ratings:
        labels = persistent.get(s.scheduled, e.match_id)
        if labels is None or persistent.contains(s.completed, e.match_id) or len(e.pentanomial) != 5:
            return s
        if any(c < 0 for c in e.pentanomial):
            return s
        wins, draws, losses = games_from_pentanomial(e.pentanomial)
        result = MatchResult(
            match_id=e.match_id, a=labels[0], b=labels[1], wins_a=wins, draws=draws, wins_b=losses
        )
        return msgspec.structs.replace(s, completed=persistent.put(s.completed, e.match_id, result))

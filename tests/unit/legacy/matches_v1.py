"""(Frozen v1 copy, for the old-vs-new tests; not used by the project.)

Matches read model: each match's spec, the game pairs counted, Elo ± interval, SPRT state.

A pair is counted once by its index (a unit redone by a second worker changes nothing) and
only while the match is open; pairs that arrive after ``match.completed`` are tallied as
``late_pairs``. Figures come from the engine's rating math on the pentanomial counts from
the candidate's point of view.
"""

from __future__ import annotations

import math
from typing import Any, cast

import msgspec

from engine.rating import elo_from_pentanomial, sprt, wald_bounds
from engine.sprt import Model
from projections.base import BaseProjection
from streams import events as ev

__all__ = [
    "CANDIDATE_PURPOSES",
    "GATE",
    "REFERENCE",
    "REGRESSION",
    "WATCH",
    "MatchState",
    "Matches",
    "MatchesProjection",
]

GATE, REGRESSION, REFERENCE, WATCH = "gate", "regression", "reference", "watch"
CANDIDATE_PURPOSES = (GATE, REGRESSION, REFERENCE)  # the matches that judge a candidate
EMPTY_COUNTS = (0, 0, 0, 0, 0)


class MatchState(msgspec.Struct, frozen=True, kw_only=True):
    scheduled: ev.MatchScheduled
    pairs_counted: frozenset[int] = frozenset()
    pentanomial: tuple[int, int, int, int, int] = EMPTY_COUNTS
    elo: float = 0.0
    ci95: float = math.inf
    los: float = 0.5
    llr: float = 0.0
    lower: float = 0.0
    upper: float = 0.0
    sprt_verdict: str = "continue"  # continue | accept | reject
    sprt_error: str = ""  # set when the match's SPRT parameters are unusable
    ignored_pairs: int = 0  # malformed reports: index out of range, bad category
    late_pairs: int = 0
    completed: bool = False
    verdict: str = ""  # accept | reject | inconclusive, once completed
    reason: str = ""
    completed_at: float = 0.0

    @property
    def match_id(self) -> str:
        return self.scheduled.match_id

    @property
    def purpose(self) -> str:
        return self.scheduled.purpose

    @property
    def candidate(self) -> ev.PlayerSpec:
        return self.scheduled.candidate

    @property
    def opponent(self) -> ev.PlayerSpec:
        return self.scheduled.opponent

    @property
    def pairs(self) -> int:
        return sum(self.pentanomial)


class Matches(msgspec.Struct, frozen=True, kw_only=True):
    matches: dict[str, MatchState] = {}

    def get(self, match_id: str) -> MatchState | None:
        return self.matches.get(match_id)


def _figures(counts: tuple[int, ...], params: ev.SprtParams) -> dict[str, Any]:
    """Elo, interval, LOS and SPRT figures of ``counts`` under ``params``."""
    out: dict[str, Any] = {}
    if sum(counts):
        est = elo_from_pentanomial(counts)
        out.update(elo=est.elo, ci95=est.ci95, los=est.los)
    try:
        model = cast(Model, params.model)  # checked by sprt()
        result = sprt(counts, params.elo0, params.elo1, params.alpha, params.beta, model)
    except ValueError as exc:
        out.update(sprt_error=str(exc), sprt_verdict="continue")
    else:
        out.update(
            llr=result.llr, lower=result.lower, upper=result.upper, sprt_verdict=result.verdict, sprt_error=""
        )
    return out


class MatchesProjection(BaseProjection[Matches]):
    name = "matches"
    state_type = Matches

    def initial(self) -> Matches:
        return Matches()

    def _put(self, s: Matches, m: MatchState) -> Matches:
        return msgspec.structs.replace(s, matches={**s.matches, m.match_id: m})

    def on_match_scheduled(self, s: Matches, e: ev.MatchScheduled) -> Matches:
        if e.match_id in s.matches:  # scheduled again (a redone decision): first one wins
            return s
        m = MatchState(scheduled=e)
        try:
            lower, upper = wald_bounds(e.sprt.alpha, e.sprt.beta)
            m = msgspec.structs.replace(m, lower=lower, upper=upper)
        except ValueError as exc:
            m = msgspec.structs.replace(m, sprt_error=str(exc))
        return self._put(s, m)

    def on_match_pair_played(self, s: Matches, e: ev.MatchPairPlayed) -> Matches:
        m = s.matches.get(e.match_id)
        if m is None or e.pair_index in m.pairs_counted:
            return s
        if m.completed:
            return self._put(s, msgspec.structs.replace(m, late_pairs=m.late_pairs + 1))
        if not (0 <= e.pair_index < m.scheduled.max_pairs and 0 <= e.pentanomial <= 4):
            return self._put(s, msgspec.structs.replace(m, ignored_pairs=m.ignored_pairs + 1))
        counts = list(m.pentanomial)
        counts[e.pentanomial] += 1
        penta = (counts[0], counts[1], counts[2], counts[3], counts[4])
        return self._put(
            s,
            msgspec.structs.replace(
                m,
                pairs_counted=m.pairs_counted | {e.pair_index},
                pentanomial=penta,
                **_figures(penta, m.scheduled.sprt),
            ),
        )

    def on_match_completed(self, s: Matches, e: ev.MatchCompleted) -> Matches:
        m = s.matches.get(e.match_id)
        if m is None or m.completed:  # first completion wins; repeats change nothing
            return s
        fields: dict[str, Any] = dict(
            completed=True,
            verdict=e.verdict,
            reason=e.reason,
            completed_at=e.time,
            elo=e.elo,
            ci95=e.elo_ci95,
            llr=e.llr,
            lower=e.lower,
            upper=e.upper,
        )
        if len(e.pentanomial) == 5 and all(c >= 0 for c in e.pentanomial):
            penta = tuple(e.pentanomial)
            fields["pentanomial"] = penta
            if sum(penta):
                fields["los"] = elo_from_pentanomial(penta).los
        return self._put(s, msgspec.structs.replace(m, **fields))

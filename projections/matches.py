"""Matches read model: each match's spec, the game pairs counted, Elo ± interval, SPRT state.

A pair is counted once by its index (a unit redone by a second worker changes nothing) and
only while the match is open; pairs that arrive after ``match.completed`` are tallied as
``late_pairs``. Figures come from the engine's rating math on the pentanomial counts from
the candidate's point of view.

The fold is linear in the events: matches sit in a persistent map (``projections.persistent``),
the pairs counted in a bit mask, and an open match's Elo and SPRT figures are computed from
its counts when first read (``MatchState.live``, kept with that state), not at each pair; a
completed match reads the figures its ``match.completed`` reported, and the rest (LOS, the
SPRT's verdict) from the counts when read. ``match_decision`` says whether a
match should complete now (its SPRT decided, or ``max_pairs`` reached) and with which
``match.completed`` fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from typing import Any, cast

import msgspec

from engine.rating import elo_from_pentanomial, sprt, wald_bounds
from engine.sprt import Model
from projections import persistent
from projections.base import BaseProjection
from streams import events as ev

__all__ = [
    "CANDIDATE_PURPOSES",
    "GATE",
    "REFERENCE",
    "REGRESSION",
    "WATCH",
    "MatchFigures",
    "MatchState",
    "Matches",
    "Reported",
    "MatchesProjection",
    "candidate_matches",
    "live_figures",
    "match_decision",
]

GATE, REGRESSION, REFERENCE, WATCH = "gate", "regression", "reference", "watch"
CANDIDATE_PURPOSES = (GATE, REGRESSION, REFERENCE)  # the matches that judge a candidate
EMPTY_COUNTS = (0, 0, 0, 0, 0)


class MatchFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Elo ± interval, LOS and the SPRT's standing of a match's counts."""

    elo: float = 0.0
    ci95: float = math.inf
    los: float = 0.5
    llr: float = 0.0
    lower: float = 0.0
    upper: float = 0.0
    sprt_verdict: str = "continue"  # continue | accept | reject
    sprt_error: str = ""  # set when the match's SPRT parameters are unusable


def _counted(mask: bytes, index: int) -> bool:
    byte = index >> 3
    return byte < len(mask) and bool(mask[byte] >> (index & 7) & 1)


def _with(mask: bytes, index: int) -> bytes:
    byte = index >> 3
    grown = mask if byte < len(mask) else mask + bytes(byte + 1 - len(mask))
    return grown[:byte] + bytes((grown[byte] | 1 << (index & 7),)) + grown[byte + 1 :]


class Reported(msgspec.Struct, frozen=True, kw_only=True):
    """The figures a ``match.completed`` reported, and whether its counts were usable."""

    elo: float
    ci95: float
    llr: float
    lower: float
    upper: float
    counts_valid: bool


# dict=True: figures are computed from the counts when first read and kept with that state
# (cached_property); forbid_unknown_fields: a snapshot of the v1 layout does not decode.
class MatchState(msgspec.Struct, frozen=True, kw_only=True, dict=True, forbid_unknown_fields=True):
    scheduled: ev.MatchScheduled
    counted: bytes = b""  # bit i set: pair i is counted
    pentanomial: tuple[int, int, int, int, int] = EMPTY_COUNTS
    ignored_pairs: int = 0  # malformed reports: index out of range, bad category
    late_pairs: int = 0
    completed: bool = False
    verdict: str = ""  # accept | reject | inconclusive, once completed
    reason: str = ""
    completed_at: float = 0.0
    reported: Reported | None = None  # set once completed
    counts_before: tuple[int, int, int, int, int] | None = None  # if the completion replaced them

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

    def is_counted(self, pair_index: int) -> bool:
        return pair_index >= 0 and _counted(self.counted, pair_index)

    @property
    def pairs_counted(self) -> frozenset[int]:
        """The indices of the pairs counted."""
        mask = self.counted
        return frozenset(i for i in range(8 * len(mask)) if mask[i >> 3] >> (i & 7) & 1)

    @cached_property
    def live(self) -> MatchFigures:
        """The figures of the pairs counted (as they stood at completion, once completed)."""
        counts = self.counts_before if self.counts_before is not None else self.pentanomial
        return live_figures(counts, self.scheduled.sprt)

    @cached_property
    def figures(self) -> MatchFigures:
        """Every figure: those reported by the completion where it gave them, else ``live``."""
        r = self.reported
        if r is None:
            return self.live
        return MatchFigures(elo=r.elo, ci95=r.ci95, los=self.los, llr=r.llr, lower=r.lower, upper=r.upper,
                            sprt_verdict=self.live.sprt_verdict, sprt_error=self.live.sprt_error)

    @property
    def elo(self) -> float:
        return self.reported.elo if self.reported is not None else self.live.elo

    @property
    def ci95(self) -> float:
        return self.reported.ci95 if self.reported is not None else self.live.ci95

    @cached_property
    def los(self) -> float:
        if self.reported is not None and self.reported.counts_valid and self.pairs > 0:
            return elo_from_pentanomial(self.pentanomial).los
        return self.live.los

    @property
    def llr(self) -> float:
        return self.reported.llr if self.reported is not None else self.live.llr

    @property
    def lower(self) -> float:
        return self.reported.lower if self.reported is not None else self.live.lower

    @property
    def upper(self) -> float:
        return self.reported.upper if self.reported is not None else self.live.upper

    @property
    def sprt_verdict(self) -> str:
        return self.live.sprt_verdict

    @property
    def sprt_error(self) -> str:
        return self.live.sprt_error


class Matches(msgspec.Struct, frozen=True, kw_only=True, dict=True, forbid_unknown_fields=True):
    by_id: persistent.Levels[str, MatchState] = ()  # match id -> state, in scheduling order

    @cached_property
    def matches(self) -> Mapping[str, MatchState]:
        """Every match by id, in scheduling order."""
        return persistent.View(self.by_id)

    def get(self, match_id: str) -> MatchState | None:
        return persistent.get(self.by_id, match_id)


def live_figures(counts: tuple[int, ...], params: ev.SprtParams) -> MatchFigures:
    """Elo, interval, LOS and SPRT figures of ``counts`` under ``params``.

    With no pairs: no Elo (0 ± inf, LOS 0.5), LLR 0 within the Wald bounds. When the SPRT
    cannot be computed (parameters unusable, or a hypothesis these counts cannot fit), the
    error is given, the verdict is ``continue``, the LLR is 0 and the bounds are Wald's (0 if
    they are unusable too).
    """
    out: dict[str, Any] = {}
    try:
        out["lower"], out["upper"] = wald_bounds(params.alpha, params.beta)
    except ValueError as exc:
        out["sprt_error"] = str(exc)
    if not sum(counts):
        return MatchFigures(**out)
    est = elo_from_pentanomial(counts)
    out.update(elo=est.elo, ci95=est.ci95, los=est.los)
    try:
        model = cast(Model, params.model)  # checked by sprt()
        result = sprt(counts, params.elo0, params.elo1, params.alpha, params.beta, model)
    except ValueError as exc:
        out.update(sprt_error=str(exc), sprt_verdict="continue")
    else:
        out.update(llr=result.llr, lower=result.lower, upper=result.upper, sprt_verdict=result.verdict,
                   sprt_error="")
    return MatchFigures(**out)


class MatchesProjection(BaseProjection[Matches]):
    name = "matches"
    version = 2  # v2: persistent map, figures computed when read, pairs as a bit mask
    state_type = Matches

    def initial(self) -> Matches:
        return Matches()

    def _put(self, s: Matches, m: MatchState) -> Matches:
        return Matches(by_id=persistent.put(s.by_id, m.match_id, m))

    def on_match_scheduled(self, s: Matches, e: ev.MatchScheduled) -> Matches:
        if persistent.contains(s.by_id, e.match_id):  # scheduled again (a redone decision): first one wins
            return s
        return self._put(s, MatchState(scheduled=e))

    def on_match_pair_played(self, s: Matches, e: ev.MatchPairPlayed) -> Matches:
        m = s.get(e.match_id)
        if m is None or m.is_counted(e.pair_index):
            return s
        if m.completed:
            return self._put(s, msgspec.structs.replace(m, late_pairs=m.late_pairs + 1))
        if not (0 <= e.pair_index < m.scheduled.max_pairs and 0 <= e.pentanomial <= 4):
            return self._put(s, msgspec.structs.replace(m, ignored_pairs=m.ignored_pairs + 1))
        counts = list(m.pentanomial)
        counts[e.pentanomial] += 1
        penta = (counts[0], counts[1], counts[2], counts[3], counts[4])
        counted = _with(m.counted, e.pair_index)
        return self._put(s, msgspec.structs.replace(m, counted=counted, pentanomial=penta))

    def on_match_completed(self, s: Matches, e: ev.MatchCompleted) -> Matches:
        m = s.get(e.match_id)
        if m is None or m.completed:  # first completion wins; repeats change nothing
            return s
        valid = len(e.pentanomial) == 5 and all(c >= 0 for c in e.pentanomial)
        fields: dict[str, Any] = dict(
            completed=True, verdict=e.verdict, reason=e.reason, completed_at=e.time,
            reported=Reported(elo=e.elo, ci95=e.elo_ci95, llr=e.llr, lower=e.lower, upper=e.upper,
                              counts_valid=valid),
        )
        if valid:
            penta = tuple(e.pentanomial)
            fields["pentanomial"] = penta
            if penta != m.pentanomial:  # the figures as they stood are of the counts before
                fields["counts_before"] = m.pentanomial
        return self._put(s, msgspec.structs.replace(m, **fields))


def match_decision(match: MatchState) -> dict[str, Any] | None:
    """The ``match.completed`` fields if ``match`` should complete now, else ``None``.

    It completes when its SPRT accepts or rejects (verdict the same), or when ``max_pairs``
    pairs are counted (verdict ``inconclusive`` unless the SPRT decided on the last pair).
    """
    if match.completed:
        return None
    n, cap = match.pairs, match.scheduled.max_pairs
    if match.sprt_verdict in ("accept", "reject"):
        verdict = match.sprt_verdict
        bound = f">= upper {match.upper:.3f}" if verdict == "accept" else (f"<= lower {match.lower:.3f}")
        reason = f"SPRT {verdict}s H1 after {n} pairs: LLR {match.llr:.3f} {bound}"
    elif n >= cap:
        verdict = "inconclusive"
        reason = f"max_pairs {cap} reached: LLR {match.llr:.3f} within ({match.lower:.3f}, {match.upper:.3f})"
        if match.sprt_error:
            reason += f" (SPRT unusable: {match.sprt_error})"
    else:
        return None
    return dict(
        match_id=match.match_id,
        verdict=verdict,
        pairs=n,
        pentanomial=list(match.pentanomial),
        elo=match.elo,
        elo_ci95=match.ci95,
        llr=match.llr,
        lower=match.lower,
        upper=match.upper,
        reason=reason,
    )


def candidate_matches(
    state: Matches, model_id: str, purposes: tuple[str, ...] = CANDIDATE_PURPOSES
) -> list[MatchState]:
    """The matches of ``purposes`` in which ``model_id`` is the candidate."""
    return [
        m
        for m in state.matches.values()
        if m.purpose in purposes and m.candidate.kind == "model" and m.candidate.model_id == model_id
    ]

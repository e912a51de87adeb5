"""Rating math: Elo from match results, with its interval and likelihood of superiority.

This module is the public face of the rating math; the SPRT lives in ``engine.sprt`` and the
Bradley–Terry ladder in ``engine.ladder``, both re-exported here.

Estimates follow Fishtest's ``stat_util.get_elo``: the mean score ``s`` per game (trinomial
``[L, D, W]``) or per game pair (pentanomial ``[LL, LD, WL+DD, WD, WW]``, pair scores 0, ¼, ½,
¾, 1), its variance per game or pair, a 95% interval ``s ± 1.96·√(var/N)`` mapped through
``elo(s) = −400·log10(1/s − 1)`` and reported as the half-width, and
``LOS = Φ((s − ½) / √(var/N))``. Pairs cancel the colour and opening luck, so the same games
give a tighter interval. Normalized Elo is ``(s − ½) / σ_game · 800 / ln 10`` where a game's
variance is twice a pair's. As in Fishtest, zero counts count as 1e-3 so that lopsided
results still give finite numbers.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from engine.ladder import Rating, bradley_terry
from engine.sprt import (
    NELO_PER_T,
    SprtResult,
    check_counts,
    empirical_pdf,
    log_likelihood_ratio,
    sprt,
    wald_bounds,
)

__all__ = [
    "EloEstimate",
    "Rating",
    "SprtResult",
    "Z95",
    "bradley_terry",
    "elo_from_pentanomial",
    "elo_from_score",
    "elo_from_trinomial",
    "log_likelihood_ratio",
    "score_from_elo",
    "sprt",
    "wald_bounds",
]

Z95 = 1.959963984540054  # Φ⁻¹(0.975)


class EloEstimate(msgspec.Struct, frozen=True):
    """Elo of the side the counts are for, ± the half-width of its 95% interval.

    ``los`` is the likelihood of superiority (probability that the true Elo is above 0),
    ``nelo`` the normalized Elo, ``games`` the number of games behind the estimate.
    An interval that reaches a score of 0 or 1 is reported as ``inf``.
    """

    elo: float
    ci95: float
    los: float
    nelo: float
    nelo_ci95: float
    games: int


def elo_from_score(score: float) -> float:
    """Logistic Elo difference that gives expected ``score`` (±inf at 1 and 0)."""
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"a score lies between 0 and 1, got {score!r}")
    if score in (0.0, 1.0):
        return math.copysign(math.inf, score - 0.5)
    return -400.0 * math.log10(1.0 / score - 1.0)


def score_from_elo(elo: float) -> float:
    """Expected score of a side ``elo`` logistic Elo stronger than its opponent."""
    return 1.0 / (1.0 + 10.0 ** (-elo / 400.0))


def elo_from_trinomial(ldw: object) -> EloEstimate:
    """Estimate from game counts ``[losses, draws, wins]``."""
    counts = check_counts(ldw)
    if counts.shape[0] != 3:
        raise ValueError(f"trinomial counts are [L, D, W], got length {counts.shape[0]}")
    return _estimate(counts)


def elo_from_pentanomial(pairs: object) -> EloEstimate:
    """Estimate from game-pair counts ``[LL, LD, WL+DD, WD, WW]``."""
    counts = check_counts(pairs)
    if counts.shape[0] != 5:
        raise ValueError(f"pentanomial counts are [LL, LD, WL+DD, WD, WW], got length {counts.shape[0]}")
    return _estimate(counts)


def _estimate(counts: np.ndarray) -> EloEstimate:
    units = int(counts.sum())
    if units == 0:
        raise ValueError("no games: an Elo estimate needs at least one result")
    total_arr, values, probs = empirical_pdf(counts)
    total = float(total_arr)
    score = float(np.sum(probs * values))
    var = float(np.sum(probs * (values - score) ** 2))  # per game, or per pair (mean score)
    stderr = math.sqrt(var / total)
    delta = Z95 * stderr
    if 0.0 < score - delta and score + delta < 1.0:
        ci95 = (elo_from_score(score + delta) - elo_from_score(score - delta)) / 2.0
    else:
        ci95 = math.inf
    per_game = 2.0 if counts.shape[0] == 5 else 1.0  # a pair is two games
    sigma_game = math.sqrt(per_game * var)
    return EloEstimate(
        elo=elo_from_score(score),
        ci95=ci95,
        los=_normal_cdf((score - 0.5) / stderr),
        nelo=(score - 0.5) / sigma_game * NELO_PER_T,
        nelo_ci95=delta / sigma_game * NELO_PER_T,
        games=units * int(per_game),
    )


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))

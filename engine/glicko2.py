"""Glicko-2 ratings (Glickman, "Example of the Glicko-2 system", 2013), pure.

``Rating`` is a player's rating, rating deviation (RD) and volatility on the Glicko scale
(new players: 1500 / 350 / 0.06). ``rate`` is one rating period: the player's games against
opponents as they stood at the period's start, each with a score (1 win, 0.5 draw, 0 loss);
no games is an idle period, which only widens the RD. The volatility is found with the
paper's Illinois iteration (step 5, ε = 1e-6). The RD never exceeds ``MAX_RD`` (350), so a
long-idle player is no less known than a new one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

__all__ = ["MAX_RD", "SCALE", "Rating", "idle", "rate"]

SCALE = 173.7178  # Glicko points per Glicko-2 unit
MAX_RD = 350.0
_BASE = 1500.0
_EPSILON = 1e-6
_MAX_ITERATIONS = 200


class Rating(msgspec.Struct, frozen=True):
    """A Glicko-2 rating on the Glicko scale."""

    rating: float = 1500.0
    rd: float = 350.0
    volatility: float = 0.06

    def provisional(self, threshold: float) -> bool:
        """True while the rating is too uncertain to show as settled (RD above ``threshold``)."""
        return self.rd > threshold


def _g(phi: float) -> float:
    return 1.0 / math.sqrt(1.0 + 3.0 * phi * phi / (math.pi * math.pi))


def _check(player: Rating, tau: float) -> None:
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if not (player.rd > 0 and player.volatility > 0):
        raise ValueError(f"rd and volatility must be positive, got {player.rd}, {player.volatility}")


def _volatility(phi: float, sigma: float, v: float, delta: float, tau: float) -> float:
    """Step 5: the new volatility, by the Illinois variant of regula falsi."""
    a = math.log(sigma * sigma)
    phi2, delta2 = phi * phi, delta * delta

    def f(x: float) -> float:
        ex = math.exp(x)
        return ex * (delta2 - phi2 - v - ex) / (2.0 * (phi2 + v + ex) ** 2) - (x - a) / (tau * tau)

    big_a = a
    if delta2 > phi2 + v:
        big_b = math.log(delta2 - phi2 - v)
    else:
        k = 1
        while f(a - k * tau) < 0:
            k += 1
        big_b = a - k * tau
    f_a, f_b = f(big_a), f(big_b)
    for _ in range(_MAX_ITERATIONS):
        if abs(big_b - big_a) <= _EPSILON:
            break
        big_c = big_a + (big_a - big_b) * f_a / (f_b - f_a)
        f_c = f(big_c)
        if f_c * f_b <= 0:
            big_a, f_a = big_b, f_b
        else:
            f_a /= 2.0
        big_b, f_b = big_c, f_c
    return math.exp(big_a / 2.0)


def rate(player: Rating, games: Sequence[tuple[Rating, float]], tau: float) -> Rating:
    """``player`` after one rating period with ``games`` (opponent, score in [0, 1])."""
    _check(player, tau)
    phi = player.rd / SCALE
    if not games:
        return idle(player, 1, tau)
    mu = (player.rating - _BASE) / SCALE
    inv_v = 0.0
    total = 0.0
    for opponent, score in games:
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"a score must be in [0, 1], got {score}")
        mu_j, phi_j = (opponent.rating - _BASE) / SCALE, opponent.rd / SCALE
        g = _g(phi_j)
        expected = 1.0 / (1.0 + math.exp(-g * (mu - mu_j)))
        inv_v += g * g * expected * (1.0 - expected)
        total += g * (score - expected)
    v = 1.0 / inv_v
    sigma = _volatility(phi, player.volatility, v, v * total, tau)
    phi_star = math.sqrt(phi * phi + sigma * sigma)
    new_phi = 1.0 / math.sqrt(1.0 / (phi_star * phi_star) + 1.0 / v)
    new_mu = mu + new_phi * new_phi * total
    return Rating(
        rating=_BASE + SCALE * new_mu,
        rd=min(SCALE * new_phi, MAX_RD),
        volatility=sigma,
    )


def idle(player: Rating, periods: int, tau: float) -> Rating:
    """``player`` after ``periods`` rating periods without games: only the RD grows (step 6:
    φ* = √(φ² + σ²) per period), up to ``MAX_RD``."""
    _check(player, tau)
    if periods < 0:
        raise ValueError(f"periods must be >= 0, got {periods}")
    phi = player.rd / SCALE
    phi = math.sqrt(phi * phi + periods * player.volatility * player.volatility)
    return Rating(rating=player.rating, rd=min(SCALE * phi, MAX_RD), volatility=player.volatility)

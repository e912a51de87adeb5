"""A Bradley–Terry rating ladder: logistic Elo for many models from all their pairwise results.

The model: a player rated ``r_a`` scores ``1 / (1 + 10^((r_b − r_a)/400))`` per game against
one rated ``r_b``; a draw is half a win for each side. Ratings are the maximum-likelihood fit
(Newton's method on the concave log-likelihood) with one anchor held at 0. Intervals are
approximate: ``±1.96·√diag(I⁻¹)`` with ``I`` the Fisher information of the free ratings at
the fit, so they say how far a rating could move *relative to the anchor*.

The maximum-likelihood fit is finite only when no group of players has a perfect score
against everyone outside it (the "scored against" graph is strongly connected). When that
fails, and unless ``prior_draws`` says otherwise, one virtual draw is added to every pair
that met, a small prior that keeps every rating finite; with ``prior_draws=0`` a perfect
record raises ``ValueError`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec
import numpy as np

_K = math.log(10.0) / 400.0  # logistic slope per Elo point
_Z95 = 1.959963984540054
AUTO_PRIOR_DRAWS = 1.0

Result = tuple[str, str, int, int, int]  # (a, b, wins_a, draws, wins_b)


class Rating(msgspec.Struct, frozen=True):
    """A player's Elo relative to the anchor, ± the 95% half-width, and the games behind it."""

    elo: float
    ci95: float
    games: int


def bradley_terry(
    results: Iterable[Result], anchor: str, *, prior_draws: float | None = None
) -> dict[str, Rating]:
    """Ratings of every player in ``results``, the ``anchor`` at 0.

    ``results`` are ``(a, b, wins_a, draws, wins_b)`` tuples; the same pair may appear many
    times and in either order. ``prior_draws`` virtual draws are added to every pair that
    met (default: none if the fit is finite without them, else ``AUTO_PRIOR_DRAWS``).
    Raises ``ValueError`` for malformed results, an unknown anchor, or a player with no
    chain of games to the anchor.
    """
    names, games, score = _tabulate(results)
    if anchor not in names:
        raise ValueError(f"anchor {anchor!r} played no games in these results")
    index = {name: i for i, name in enumerate(names)}
    unreachable = sorted(set(names) - _reachable(games > 0, index[anchor], names))
    if unreachable:
        raise ValueError(f"no chain of games links {', '.join(map(repr, unreachable))} to anchor {anchor!r}")
    if prior_draws is None:
        prior_draws = 0.0 if _fit_is_finite(score, names) else AUTO_PRIOR_DRAWS
    if not (math.isfinite(prior_draws) and prior_draws >= 0):
        raise ValueError(f"prior_draws must be a non-negative number, got {prior_draws!r}")
    if prior_draws == 0 and not _fit_is_finite(score, names):
        raise ValueError(
            "a player or group has a perfect score against the rest, so its rating is "
            "infinite; pass prior_draws > 0 to regularise"
        )
    met = games > 0
    fit_games = games + prior_draws * met
    fit_score = score + 0.5 * prior_draws * met
    ratings, ci = _fit(fit_games, fit_score, index[anchor])
    played = games.sum(axis=1)
    return {
        name: Rating(elo=float(ratings[i]), ci95=float(ci[i]), games=int(played[i]))
        for i, name in enumerate(names)
    }


def _tabulate(results: Iterable[Result]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Players (in first-seen order), games per pair, and points of row against column."""
    rows = list(results)
    names: list[str] = []
    for row in rows:
        if not (isinstance(row, tuple | list) and len(row) == 5):
            raise ValueError(f"a result is (a, b, wins_a, draws, wins_b), got {row!r}")
        a, b, *counts = row
        if not (isinstance(a, str) and isinstance(b, str)) or a == b:
            raise ValueError(f"a result needs two different player names, got {row!r}")
        if any(isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0 for c in counts):
            raise ValueError(f"wins and draws must be non-negative integers, got {row!r}")
        for name in (a, b):
            if name not in names:
                names.append(name)
    index = {name: i for i, name in enumerate(names)}
    games = np.zeros((len(names), len(names)))
    score = np.zeros_like(games)
    for a, b, wins_a, draws, wins_b in rows:
        i, j = index[a], index[b]
        n = wins_a + draws + wins_b
        games[i, j] += n
        games[j, i] += n
        score[i, j] += wins_a + 0.5 * draws
        score[j, i] += wins_b + 0.5 * draws
    return names, games, score


def _reachable(edges: np.ndarray, start: int, names: list[str]) -> set[str]:
    """Names reachable from ``start`` along ``edges[i, j]`` (a boolean adjacency matrix)."""
    seen, frontier = {start}, [start]
    while frontier:
        i = frontier.pop()
        for j in np.flatnonzero(edges[i]):
            if int(j) not in seen:
                seen.add(int(j))
                frontier.append(int(j))
    return {names[i] for i in seen}


def _fit_is_finite(score: np.ndarray, names: list[str]) -> bool:
    """Whether every player scored against some path back to every other (strong
    connectivity of ``i → j`` when ``i`` took points from ``j``): the finite-MLE condition."""
    scored = score > 0
    everyone = set(names)
    return _reachable(scored, 0, names) == everyone and _reachable(scored.T, 0, names) == everyone


def _fit(games: np.ndarray, score: np.ndarray, anchor: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood ratings (anchor at 0) and 95% half-widths, by damped Newton."""
    n = games.shape[0]
    free = np.array([i for i in range(n) if i != anchor], dtype=int)
    ratings = np.zeros(n)

    def log_likelihood(r: np.ndarray) -> float:
        diff = _K * (r[:, None] - r[None, :])
        # score[i, j]·log σ(diff[i, j]), written stably; each pair appears from both sides.
        return float(-np.sum(score * np.logaddexp(0.0, -diff)))

    def information(r: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-_K * (r[:, None] - r[None, :])))
        w = _K * _K * games * p * (1.0 - p)
        return np.diag(w.sum(axis=1)) - w

    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-_K * (ratings[:, None] - ratings[None, :])))
        gradient = _K * np.sum(score - games * p, axis=1)
        step = np.zeros(n)
        step[free] = np.linalg.solve(information(ratings)[np.ix_(free, free)], gradient[free])
        current, scale = log_likelihood(ratings), 1.0
        while scale > 1e-6 and log_likelihood(ratings + scale * step) < current - 1e-12:
            scale /= 2.0
        ratings = ratings + scale * step
        if np.max(np.abs(scale * step)) < 1e-9:
            break
    covariance = np.linalg.inv(information(ratings)[np.ix_(free, free)])
    ci = np.zeros(n)
    ci[free] = _Z95 * np.sqrt(np.diag(covariance))
    return ratings, ci

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

Results are tabulated as the pairs that met (an edge list), never as a players × players
table, so a ladder of thousands of models costs time in its games, not in its players
squared. Up to ``DENSE_MAX`` players each Newton step is a dense solve and every interval
comes from one inverse; above it the steps are solved by conjugate gradients on the sparse
information matrix and an interval is computed when it is asked for (``Ladder.rating``),
one sparse solve each, so reading one model's rating off a large ladder stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

import msgspec
import numpy as np

_K = math.log(10.0) / 400.0  # logistic slope per Elo point
_Z95 = 1.959963984540054
AUTO_PRIOR_DRAWS = 1.0
DENSE_MAX = 400  # players up to which the fit is dense (exactly the classic Newton solve)

Result = tuple[str, str, int, int, int]  # (a, b, wins_a, draws, wins_b)


class Rating(msgspec.Struct, frozen=True):
    """A player's Elo relative to the anchor, ± the 95% half-width, and the games behind it."""

    elo: float
    ci95: float
    games: int


class _Edges(msgspec.Struct):
    """The pairs that met: ``i < j`` indices, games and the points each side took."""

    i: np.ndarray
    j: np.ndarray
    games: np.ndarray
    score_i: np.ndarray
    score_j: np.ndarray

    def weighted(self, prior_draws: float) -> _Edges:
        return _Edges(self.i, self.j, self.games + prior_draws, self.score_i + 0.5 * prior_draws,
                      self.score_j + 0.5 * prior_draws)


class Ladder(Mapping[str, Rating]):
    """A fitted ladder, read as a mapping name -> ``Rating`` in first-seen order: every Elo is
    fitted, an interval is computed when its rating is first read (see the module docstring)."""

    def __init__(self, names: list[str], elo: np.ndarray, played: np.ndarray, anchor: int,
                 edges: _Edges, ci: np.ndarray | None):
        self.names = names
        self.anchor = names[anchor]
        self._index = {name: k for k, name in enumerate(names)}
        self._elo, self._played, self._anchor = elo, played, anchor
        self._edges, self._ci = edges, ci
        self._ci_cache: dict[int, float] = {}

    def __getitem__(self, name: str) -> Rating:
        k = self._index[name]
        return Rating(elo=float(self._elo[k]), ci95=self._ci95(k), games=int(self._played[k]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"Ladder({len(self)} players, anchor {self.anchor!r})"

    def rating(self, name: str) -> Rating | None:
        """``name``'s rating (its interval computed now if the ladder is large), or ``None``."""
        return self[name] if name in self._index else None

    def ratings(self) -> dict[str, Rating]:
        """Every player's rating, in first-seen order (on a large ladder: one solve each)."""
        return {name: self[name] for name in self.names}

    def _ci95(self, k: int) -> float:
        if self._ci is not None:
            return float(self._ci[k])
        if k == self._anchor:
            return 0.0
        if k not in self._ci_cache:
            unit = np.zeros(len(self.names))
            unit[k] = 1.0
            p = _win_probability(self._edges, self._elo)
            w = _K * _K * self._edges.games * p * (1.0 - p)
            x = _solve(self._edges, w, unit, self._anchor, tol=1e-13)
            self._ci_cache[k] = float(_Z95 * math.sqrt(max(x[k], 0.0)))
        return self._ci_cache[k]


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
    return fit_ladder(results, anchor, prior_draws=prior_draws).ratings()


def fit_ladder(
    results: Iterable[Result], anchor: str, *, prior_draws: float | None = None, dense_max: int = DENSE_MAX
) -> Ladder:
    """The fitted ladder of ``results`` (arguments and errors as ``bradley_terry``)."""
    names, edges = _tabulate(results)
    if anchor not in names:
        raise ValueError(f"anchor {anchor!r} played no games in these results")
    index = {name: i for i, name in enumerate(names)}
    met = _adjacency(len(names), edges.i, edges.j, both_ways=True)
    unreachable = sorted(set(names) - {names[k] for k in _reachable(met, index[anchor])})
    if unreachable:
        raise ValueError(f"no chain of games links {', '.join(map(repr, unreachable))} to anchor {anchor!r}")
    if prior_draws is None:
        prior_draws = 0.0 if _fit_is_finite(edges, len(names)) else AUTO_PRIOR_DRAWS
    if not (math.isfinite(prior_draws) and prior_draws >= 0):
        raise ValueError(f"prior_draws must be a non-negative number, got {prior_draws!r}")
    if prior_draws == 0 and not _fit_is_finite(edges, len(names)):
        raise ValueError(
            "a player or group has a perfect score against the rest, so its rating is "
            "infinite; pass prior_draws > 0 to regularise"
        )
    played = np.bincount(edges.i, edges.games, len(names)) + np.bincount(edges.j, edges.games, len(names))
    fit_edges = edges.weighted(prior_draws)
    if len(names) <= dense_max:
        elo, ci = _fit_dense(fit_edges, len(names), index[anchor])
        return Ladder(names, elo, played, index[anchor], fit_edges, ci)
    elo = _fit_sparse(fit_edges, len(names), index[anchor])
    return Ladder(names, elo, played, index[anchor], fit_edges, None)


def _tabulate(results: Iterable[Result]) -> tuple[list[str], _Edges]:
    """Players (in first-seen order) and the pairs that met, with their games and points."""
    names: dict[str, int] = {}
    pairs: dict[tuple[int, int], list[float]] = {}
    for row in results:
        if not (isinstance(row, tuple | list) and len(row) == 5):
            raise ValueError(f"a result is (a, b, wins_a, draws, wins_b), got {row!r}")
        a, b, *counts = row
        if not (isinstance(a, str) and isinstance(b, str)) or a == b:
            raise ValueError(f"a result needs two different player names, got {row!r}")
        if any(isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0 for c in counts):
            raise ValueError(f"wins and draws must be non-negative integers, got {row!r}")
        i, j = names.setdefault(a, len(names)), names.setdefault(b, len(names))
        wins_a, draws, wins_b = counts
        if i > j:
            i, j, wins_a, wins_b = j, i, wins_b, wins_a
        tally = pairs.setdefault((i, j), [0.0, 0.0, 0.0])
        tally[0] += wins_a + draws + wins_b
        tally[1] += wins_a + 0.5 * draws
        tally[2] += wins_b + 0.5 * draws
    met = [(key, t) for key, t in pairs.items() if t[0] > 0]
    ij = np.array([key for key, _ in met], dtype=np.int64).reshape(-1, 2)
    tallies = np.array([t for _, t in met], dtype=float).reshape(-1, 3)
    return list(names), _Edges(ij[:, 0], ij[:, 1], tallies[:, 0], tallies[:, 1], tallies[:, 2])


def _adjacency(n: int, src: np.ndarray, dst: np.ndarray, *, both_ways: bool = False) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        out[a].append(b)
        if both_ways:
            out[b].append(a)
    return out


def _reachable(adjacency: list[list[int]], start: int) -> set[int]:
    """Indices reachable from ``start`` along ``adjacency``."""
    seen, frontier = {start}, [start]
    while frontier:
        for j in adjacency[frontier.pop()]:
            if j not in seen:
                seen.add(j)
                frontier.append(j)
    return seen


def _fit_is_finite(edges: _Edges, n: int) -> bool:
    """Whether every player scored against some path back to every other (strong
    connectivity of ``i → j`` when ``i`` took points from ``j``): the finite-MLE condition."""
    src = np.concatenate([edges.i[edges.score_i > 0], edges.j[edges.score_j > 0]])
    dst = np.concatenate([edges.j[edges.score_i > 0], edges.i[edges.score_j > 0]])
    return (len(_reachable(_adjacency(n, src, dst), 0)) == n
            and len(_reachable(_adjacency(n, dst, src), 0)) == n)


def _fit_dense(edges: _Edges, n: int, anchor: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood ratings (anchor at 0) and 95% half-widths, by damped Newton."""
    games = np.zeros((n, n))
    score = np.zeros_like(games)
    games[edges.i, edges.j] = games[edges.j, edges.i] = edges.games
    score[edges.i, edges.j], score[edges.j, edges.i] = edges.score_i, edges.score_j
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


def _win_probability(edges: _Edges, r: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-_K * (r[edges.i] - r[edges.j])))


def _fit_sparse(edges: _Edges, n: int, anchor: int) -> np.ndarray:
    """The same damped Newton as ``_fit_dense``, each step solved on the edges (no n × n)."""
    ratings = np.zeros(n)

    def log_likelihood(r: np.ndarray) -> float:
        diff = _K * (r[edges.i] - r[edges.j])
        return float(-np.sum(edges.score_i * np.logaddexp(0.0, -diff)
                             + edges.score_j * np.logaddexp(0.0, diff)))

    for _ in range(100):
        p = _win_probability(edges, ratings)
        flow = _K * (edges.score_i - edges.games * p)
        gradient = np.bincount(edges.i, flow, n) - np.bincount(edges.j, flow, n)
        w = _K * _K * edges.games * p * (1.0 - p)
        step = _solve(edges, w, gradient, anchor, tol=1e-12)
        current, scale = log_likelihood(ratings), 1.0
        while scale > 1e-6 and log_likelihood(ratings + scale * step) < current - 1e-12:
            scale /= 2.0
        ratings = ratings + scale * step
        if np.max(np.abs(scale * step)) < 1e-9:
            break
    return ratings


def _solve(edges: _Edges, w: np.ndarray, rhs: np.ndarray, anchor: int, *, tol: float) -> np.ndarray:
    """``x`` with ``I x = rhs`` on the free players (``x[anchor] = 0``), ``I`` the weighted
    graph Laplacian of ``w`` on the edges: Jacobi-preconditioned conjugate gradients."""
    n = len(rhs)
    diagonal = np.bincount(edges.i, w, n) + np.bincount(edges.j, w, n)
    diagonal[anchor] = 1.0

    def apply(x: np.ndarray) -> np.ndarray:
        flow = w * (x[edges.i] - x[edges.j])
        y = np.bincount(edges.i, flow, n) - np.bincount(edges.j, flow, n)
        y[anchor] = 0.0
        return y

    b = rhs.copy()
    b[anchor] = 0.0
    x = np.zeros(n)
    r = b.copy()
    z = r / diagonal
    d = z.copy()
    rz = float(r @ z)
    limit = tol * max(float(np.linalg.norm(b)), 1e-300)
    for _ in range(10 * n + 100):
        if float(np.linalg.norm(r)) <= limit:
            break
        q = apply(d)
        alpha = rz / float(d @ q)
        x += alpha * d
        r -= alpha * q
        z = r / diagonal
        rz, previous = float(r @ z), rz
        d = z + (rz / previous) * d
    return x

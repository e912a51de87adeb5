"""The sequential probability ratio test on match results, as Fishtest runs it.

Counts are trinomial ``[L, D, W]`` (per game) or pentanomial ``[LL, LD, WL+DD, WD, WW]``
(per game pair), always from the candidate's point of view. The log-likelihood ratio is
Fishtest's *generalised* one (``LLRcalc.py``): the empirical distribution of a game's (or a
pair's) score is compared with the maximum-likelihood distribution constrained to the Elo of
each hypothesis: an expected score for logistic Elo (``MLE_expected``, solved with the secular
equation) or a t-value for normalized Elo (``MLE_t_value``). Zero counts are replaced by 1e-3
before the fit, as Fishtest does. Everything vectorises over leading axes of ``counts``.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import msgspec
import numpy as np

Model = Literal["logistic", "normalized"]
Verdict = Literal["accept", "reject", "continue"]

MODELS: tuple[str, ...] = ("logistic", "normalized")
NELO_PER_T = 800.0 / math.log(10.0)  # normalized Elo per unit of per-game t-value
ZERO_COUNT_PRIOR = 1e-3  # what a zero count becomes in a fit (Fishtest's ``regularize``)
_SECULAR_TOL = 64 * np.finfo(float).eps  # Newton jitters by a few ulps at the root


class SprtResult(msgspec.Struct, frozen=True):
    """One look at a running test: accept H1 (elo >= elo1), reject it (elo <= elo0), or go on."""

    llr: float
    lower: float
    upper: float
    verdict: Verdict


def check_counts(counts: object, *, batch: bool = False) -> np.ndarray:
    """``counts`` as a float array of 3 (trinomial) or 5 (pentanomial) non-negative integers.

    With ``batch`` the last axis holds the counts and leading axes are kept; otherwise the
    input must be one flat sequence. Raises ``ValueError`` with what is wrong.
    """
    try:
        arr = np.asarray(counts, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"counts must be numbers, got {counts!r}") from exc
    if arr.ndim == 0 or (not batch and arr.ndim != 1):
        raise ValueError(f"counts must be one flat sequence of 3 or 5 numbers, got {counts!r}")
    if arr.shape[-1] not in (3, 5):
        raise ValueError(
            f"counts must have length 3 ([L, D, W]) or 5 ([LL, LD, WL+DD, WD, WW]), "
            f"got length {arr.shape[-1]}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"counts must be finite, got {counts!r}")
    if np.any(arr < 0):
        raise ValueError(f"counts must not be negative, got {counts!r}")
    if np.any(arr != np.round(arr)):
        raise ValueError(f"counts must be whole numbers, got {counts!r}")
    return arr


def empirical_pdf(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(total, values, probs)``: the score distribution of one game or pair (Fishtest's
    ``results_to_pdf``). Values are ``i / (K - 1)``: 0, ½, 1 per game or 0, ¼, …, 1 per pair
    (the pair's mean score). Zero counts count as ``ZERO_COUNT_PRIOR``."""
    regular = np.where(counts == 0, ZERO_COUNT_PRIOR, counts)
    total = regular.sum(axis=-1)
    k = counts.shape[-1]
    values = np.arange(k) / (k - 1)
    return total, values, regular / total[..., None]


def wald_bounds(alpha: float = 0.05, beta: float = 0.05) -> tuple[float, float]:
    """``(lower, upper)`` LLR bounds: ``log(β / (1 − α))`` and ``log((1 − β) / α)``."""
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (_is_real(value) and 0.0 < value < 1.0):
            raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    if alpha + beta >= 1.0:
        raise ValueError(f"alpha + beta must be below 1, got {alpha} + {beta}")
    return math.log(beta / (1.0 - alpha)), math.log((1.0 - beta) / alpha)


def log_likelihood_ratio(
    counts: object, elo0: float, elo1: float, model: Model = "logistic"
) -> float | np.ndarray:
    """Generalised LLR of H1 (Elo = ``elo1``) against H0 (Elo = ``elo0``) for ``counts``.

    ``counts`` may carry leading batch axes (last axis 3 or 5); the result then has their
    shape. No games at all give 0. ``model`` says whether the bounds are logistic Elo or
    normalized Elo (nElo). Raises ``ValueError`` on bad counts or bounds, and on bounds too
    extreme to fit (as Fishtest's solver fails there: normalized bounds beyond about ±230 nElo
    on pentanomial counts).
    """
    arr = check_counts(counts, batch=True)
    _check_bounds(elo0, elo1, model)
    total, values, probs = empirical_pdf(arr)
    if model == "logistic":
        p0 = _mle_with_mean(probs, values, _logistic_score(elo0))
        p1 = _mle_with_mean(probs, values, _logistic_score(elo1))
    else:
        # A pair's score has √2 times the t-value of one game's (half the variance per game).
        per_unit = math.sqrt(2.0) if arr.shape[-1] == 5 else 1.0
        p0 = _mle_with_t_value(probs, values, 0.5, per_unit * elo0 / NELO_PER_T)
        p1 = _mle_with_t_value(probs, values, 0.5, per_unit * elo1 / NELO_PER_T)
    llr = total * np.sum(probs * (np.log(p1) - np.log(p0)), axis=-1)
    llr = np.where(arr.sum(axis=-1) == 0, 0.0, llr)
    return float(llr) if llr.ndim == 0 else llr


def sprt(
    counts: object,
    elo0: float,
    elo1: float,
    alpha: float = 0.05,
    beta: float = 0.05,
    model: Model = "logistic",
) -> SprtResult:
    """Where the test H0: Elo <= ``elo0`` against H1: Elo >= ``elo1`` stands after ``counts``.

    ``counts`` of length 3 are ``[L, D, W]``, of length 5 ``[LL, LD, WL+DD, WD, WW]``.
    Verdict ``accept`` (H1) once the LLR reaches the upper Wald bound, ``reject`` once it
    reaches the lower one, else ``continue``.
    """
    lower, upper = wald_bounds(alpha, beta)
    arr = check_counts(counts)
    llr = float(log_likelihood_ratio(arr, elo0, elo1, model))
    verdict: Verdict = "accept" if llr >= upper else "reject" if llr <= lower else "continue"
    return SprtResult(llr=llr, lower=lower, upper=upper, verdict=verdict)


def _check_bounds(elo0: float, elo1: float, model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    for name, value in (("elo0", elo0), ("elo1", elo1)):
        if not _is_real(value) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if elo0 >= elo1:
        raise ValueError(f"elo0 must be below elo1, got elo0={elo0}, elo1={elo1}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _logistic_score(elo: float) -> float:
    return 1.0 / (1.0 + 10.0 ** (-elo / 400.0))


def _mle_with_mean(probs: np.ndarray, values: np.ndarray, mean: float) -> np.ndarray:
    """The distribution on ``values`` closest to ``probs`` (maximum likelihood) whose
    expectation is ``mean`` (Fishtest's ``MLE_expected``)."""
    shifted = np.broadcast_to(values - mean, probs.shape)
    x = _solve_secular(shifted, probs)
    return probs / (1.0 + x[..., None] * shifted)


def _mle_with_t_value(
    probs: np.ndarray, values: np.ndarray, ref: float, t: float, max_iter: int = 100
) -> np.ndarray:
    """The maximum-likelihood distribution on ``values`` with ``(mean − ref) / sd == t``
    (Fishtest's ``MLE_t_value``): a fixed-point iteration from the uniform distribution,
    each step a secular equation; rows stop once they no longer move."""
    current = np.full_like(probs, 1.0 / probs.shape[-1])
    active = np.ones(probs.shape[:-1], dtype=bool)
    for _ in range(max_iter):
        mu = np.sum(current * values, axis=-1, keepdims=True)
        sigma = np.sqrt(np.sum(current * (values - mu) ** 2, axis=-1, keepdims=True))
        shifted = values - ref - t * sigma * (1.0 + ((mu - values) / sigma) ** 2) / 2.0
        x = _solve_secular(shifted, probs)
        updated = probs / (1.0 + x[..., None] * shifted)
        change = np.max(np.abs(updated - current), axis=-1)
        current = np.where(active[..., None], updated, current)
        active &= change > 1e-14
        if not np.any(active):
            break
    return current


def _solve_secular(a: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``x`` with ``Σ p·a / (1 + x·a) = 0`` along the last axis (Fishtest's ``secular``).

    The left side falls from +∞ to −∞ on ``(−1/max a, −1/min a)``, so the root is unique:
    Newton steps from 0, kept inside a shrinking bracket by bisection.
    """
    a_max, a_min = a.max(axis=-1), a.min(axis=-1)
    if np.any(a_max <= 0) or np.any(a_min >= 0):
        raise ValueError("the hypothesis cannot be fitted to these results (Elo bounds too extreme)")
    lo, hi = -1.0 / a_max, -1.0 / a_min
    x = np.zeros(a.shape[:-1])
    for _ in range(200):
        denom = 1.0 + x[..., None] * a
        f = np.sum(p * a / denom, axis=-1)
        df = -np.sum(p * a * a / (denom * denom), axis=-1)
        lo = np.where(f > 0, x, lo)
        hi = np.where(f < 0, x, hi)
        newton = x - f / df
        settled = np.abs(newton - x) <= _SECULAR_TOL * np.maximum(1.0, np.abs(x))
        keep = settled | ((newton > lo) & (newton < hi))
        step = np.where(f == 0, x, np.where(keep, newton, 0.5 * (lo + hi)))
        done = np.all(settled | (f == 0))
        x = step
        if done:
            break
    return x

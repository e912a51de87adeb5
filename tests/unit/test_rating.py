"""Rating math: Elo estimates, the GSPRT and the Bradley–Terry ladder.

The exact figures were computed with Fishtest's own ``LLRcalc.py`` / ``stat_util.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.rating import (
    Z95,
    bradley_terry,
    elo_from_pentanomial,
    elo_from_score,
    elo_from_trinomial,
    log_likelihood_ratio,
    score_from_elo,
    sprt,
    wald_bounds,
)

# --- known values -------------------------------------------------------------------------


def test_trinomial_known_values():
    result = sprt([90, 200, 110], 0, 5, model="logistic")
    assert result.llr == pytest.approx(0.49311125990, abs=5e-12)
    assert result.verdict == "continue"
    estimate = elo_from_trinomial([90, 200, 110])
    assert estimate.elo == pytest.approx(17.3863, abs=5e-5)
    assert estimate.ci95 == pytest.approx(24.1145, abs=5e-5)
    assert estimate.los == pytest.approx(0.921870, abs=5e-7)
    assert estimate.games == 400


def test_pentanomial_known_values():
    result = sprt([43, 61, 144, 55, 37], 0, 2, model="normalized")
    assert result.llr == pytest.approx(-0.14063630474, abs=5e-12)
    estimate = elo_from_pentanomial([43, 61, 144, 55, 37])
    assert estimate.elo == pytest.approx(-9.1990, abs=5e-5)
    assert estimate.ci95 == pytest.approx(20.9272, abs=5e-5)
    assert estimate.los == pytest.approx(0.194072, abs=5e-7)
    assert estimate.nelo == pytest.approx(-11.4981, abs=5e-5)
    assert estimate.nelo_ci95 == pytest.approx(26.1137, abs=5e-5)
    assert estimate.games == 680


def test_wald_bounds_known_values():
    assert wald_bounds(0.05, 0.05) == pytest.approx((-2.9444389791664403, 2.9444389791664403))
    lower, upper = wald_bounds(0.01, 0.2)
    assert lower == pytest.approx(math.log(0.2 / 0.99))
    assert upper == pytest.approx(math.log(0.8 / 0.01))


def test_bradley_terry_known_values():
    # 75% is 21 wins, 3 draws and 6 losses out of 30; 90% is 27 wins and 3 losses.
    results = [("A", "B", 21, 3, 6), ("B", "C", 21, 3, 6), ("A", "C", 27, 0, 3)]
    ratings = bradley_terry(results, anchor="B")
    expected = 400 * math.log10(3)
    assert ratings["A"].elo == pytest.approx(expected, abs=5e-3)
    assert ratings["A"].elo == pytest.approx(190.85, abs=5e-3)
    assert ratings["B"].elo == 0.0 and ratings["B"].ci95 == 0.0
    assert ratings["C"].elo == pytest.approx(-expected, abs=5e-3)
    assert {name: r.games for name, r in ratings.items()} == {"A": 60, "B": 60, "C": 60}
    assert ratings["A"].ci95 == pytest.approx(ratings["C"].ci95)


# --- Elo estimates ------------------------------------------------------------------------


def test_elo_score_conversions_invert():
    for elo in (-600.0, -35.5, 0.0, 17.0, 400.0):
        assert elo_from_score(score_from_elo(elo)) == pytest.approx(elo)
    assert elo_from_score(1.0) == math.inf and elo_from_score(0.0) == -math.inf
    with pytest.raises(ValueError):
        elo_from_score(1.5)


@given(st.lists(st.integers(0, 500), min_size=3, max_size=3).filter(lambda c: sum(c) > 0))
def test_trinomial_estimate_mirrors_when_colours_of_the_result_swap(counts):
    forward, backward = elo_from_trinomial(counts), elo_from_trinomial(counts[::-1])
    assert backward.elo == pytest.approx(-forward.elo, rel=1e-9, abs=1e-9)
    assert backward.los == pytest.approx(1 - forward.los, abs=1e-9)
    assert backward.nelo == pytest.approx(-forward.nelo, rel=1e-9, abs=1e-9)
    assert backward.ci95 == pytest.approx(forward.ci95, rel=1e-9)


def test_pairs_tighten_the_interval():
    # The same 600 games seen as pairs; most pairs are one win and one loss (colour luck).
    pairs = [10, 20, 240, 20, 10]  # LL, LD, WL, WD, WW
    losses = 2 * 10 + 20 + 240
    draws = 20 + 20
    wins = 240 + 20 + 2 * 10
    per_pair, per_game = elo_from_pentanomial(pairs), elo_from_trinomial([losses, draws, wins])
    assert per_pair.games == per_game.games == 600
    assert per_pair.elo == pytest.approx(per_game.elo)
    assert per_pair.ci95 < 0.5 * per_game.ci95


def test_interval_shrinks_like_one_over_root_n():
    small, large = elo_from_trinomial([30, 40, 50]), elo_from_trinomial([120, 160, 200])
    assert large.elo == pytest.approx(small.elo)
    assert large.ci95 == pytest.approx(small.ci95 / 2, rel=0.02)
    assert large.nelo_ci95 == pytest.approx(Z95 * 800 / math.log(10) / math.sqrt(480))


def test_lopsided_results_stay_finite():
    estimate = elo_from_trinomial([0, 0, 12])
    assert math.isfinite(estimate.elo) and estimate.elo > 400
    assert estimate.los > 0.999


@pytest.mark.parametrize(
    ("call", "bad", "needle"),
    [
        (elo_from_trinomial, [1, 2], "length"),
        (elo_from_trinomial, [1, 2, 3, 4, 5], "trinomial"),
        (elo_from_pentanomial, [1, 2, 3], "pentanomial"),
        (elo_from_trinomial, [1, -2, 3], "negative"),
        (elo_from_trinomial, [1, 2.5, 3], "whole"),
        (elo_from_trinomial, [0, 0, 0], "no games"),
        (elo_from_trinomial, "abc", "numbers"),
        (elo_from_trinomial, [[1, 2, 3]], "flat"),
    ],
)
def test_estimates_reject_bad_counts(call, bad, needle):
    with pytest.raises(ValueError, match=needle):
        call(bad)


# --- SPRT ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"elo0": 5, "elo1": 5}, "below elo1"),
        ({"elo0": 5, "elo1": 0}, "below elo1"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"beta": -0.1}, "beta"),
        ({"alpha": 0.6, "beta": 0.5}, "below 1"),
        ({"model": "bayes"}, "model"),
        ({"elo1": math.inf}, "finite"),
        ({"counts": [1, 2, 3, 4]}, "length 3"),
        ({"counts": [1, -1, 3]}, "negative"),
    ],
)
def test_sprt_rejects_bad_input(kwargs, needle):
    args = {"counts": [10, 20, 30], "elo0": 0, "elo1": 5, **kwargs}
    with pytest.raises(ValueError, match=needle):
        sprt(**args)


def test_sprt_verdicts():
    assert sprt([0, 0, 0], 0, 5).llr == 0.0
    assert sprt([0, 0, 0], 0, 5).verdict == "continue"
    assert sprt([100, 300, 400], 0, 10).verdict == "accept"
    assert sprt([400, 300, 100], 0, 10).verdict == "reject"
    strict = sprt([100, 300, 400], 0, 10, alpha=1e-30, beta=0.05)
    assert strict.upper == pytest.approx(math.log(0.95 / 1e-30))


def test_batched_llr_matches_one_at_a_time():
    counts = np.array([[90, 200, 110], [3, 0, 0], [0, 0, 0], [7, 1, 30]])
    for model in ("logistic", "normalized"):
        batch = log_likelihood_ratio(counts, -2, 4, model)
        assert batch.shape == (4,)
        for row, value in zip(counts, batch, strict=True):
            assert value == pytest.approx(log_likelihood_ratio(row, -2, 4, model), abs=1e-12)


def _counts(min_value: int = 0):
    return st.one_of(
        st.lists(st.integers(min_value, 300), min_size=3, max_size=3),
        st.lists(st.integers(min_value, 300), min_size=5, max_size=5),
    )


_bounds = st.tuples(st.floats(-60, 60), st.floats(0.5, 60)).map(lambda b: (b[0], b[0] + b[1]))
_models = st.sampled_from(["logistic", "normalized"])


@settings(max_examples=150, deadline=None)
@given(_counts(), _bounds, _models)
def test_llr_is_antisymmetric_under_swapping_players(counts, bounds, model):
    elo0, elo1 = bounds
    forward = log_likelihood_ratio(counts, elo0, elo1, model)
    swapped = log_likelihood_ratio(counts[::-1], -elo1, -elo0, model)
    assert swapped == pytest.approx(-forward, rel=1e-9, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(_counts(min_value=1), _bounds, _models, st.data())
def test_moving_a_result_up_never_lowers_the_llr(counts, bounds, model, data):
    # Every category keeps at least one result: an empty one is replaced by Fishtest's 1e-3
    # prior, and filling it can shift the LLR by ~1e-4 either way.
    movable = [i for i in range(len(counts) - 1) if counts[i] >= 2]
    if not movable:
        counts[0] += 1
        movable = [0]
    i = data.draw(st.sampled_from(movable))
    better = list(counts)
    better[i] -= 1
    better[i + 1] += 1
    before = log_likelihood_ratio(counts, *bounds, model)
    after = log_likelihood_ratio(better, *bounds, model)
    assert after >= before - 1e-10 * (1 + abs(before))


# --- SPRT error rates by simulation -------------------------------------------------------


def _game_probs(elo: float, draw_rate: float) -> np.ndarray:
    """[L, D, W] for one game between sides ``elo`` apart with the given draw rate."""
    win = score_from_elo(elo) - draw_rate / 2
    return np.array([1 - win - draw_rate, draw_rate, win])


def _pair_probs(elo: float, draw_rate: float) -> np.ndarray:
    """[LL, LD, WL+DD, WD, WW] for a pair of independent games."""
    game = _game_probs(elo, draw_rate)
    return np.convolve(game, game)


def _acceptance_rate(probs, elo0, elo1, model, tests, batch, seed, max_looks=400):
    """Run ``tests`` SPRTs side by side, looking after every ``batch`` new results."""
    rng = np.random.default_rng(seed)
    lower, upper = wald_bounds(0.05, 0.05)
    counts = np.zeros((tests, len(probs)))
    verdict = np.zeros(tests, dtype=int)  # 0 running, 1 accepted, -1 rejected
    for _ in range(max_looks):
        running = verdict == 0
        if not running.any():
            break
        counts[running] += rng.multinomial(batch, probs, size=int(running.sum()))
        llr = log_likelihood_ratio(counts[running], elo0, elo1, model)
        verdict[running] = np.where(llr >= upper, 1, np.where(llr <= lower, -1, 0))
    assert not (verdict == 0).any(), "some simulated tests never finished"
    return float((verdict == 1).mean())


def _nelo(probs: np.ndarray) -> float:
    values = np.arange(len(probs)) / (len(probs) - 1)
    mean = float(probs @ values)
    var = float(probs @ (values - mean) ** 2) * (2 if len(probs) == 5 else 1)
    return (mean - 0.5) / math.sqrt(var) * 800 / math.log(10)


@pytest.mark.parametrize(("shape", "tests", "batch"), [("pentanomial", 2000, 10), ("trinomial", 2000, 20)])
def test_logistic_sprt_error_rates(shape, tests, batch):
    probs_at = _pair_probs if shape == "pentanomial" else _game_probs
    slack = 3 * math.sqrt(0.05 * 0.95 / tests)  # three Monte-Carlo standard errors
    false_accept = _acceptance_rate(probs_at(0, 0.4), 0, 50, "logistic", tests, batch, seed=1)
    true_accept = _acceptance_rate(probs_at(50, 0.4), 0, 50, "logistic", tests, batch, seed=2)
    assert false_accept <= 0.05 + slack
    assert true_accept >= 0.95 - slack
    assert false_accept > 0.005  # the test is not simply refusing everything


def test_normalized_sprt_error_rates():
    tests = 1000
    slack = 3 * math.sqrt(0.05 * 0.95 / tests)
    stronger = _pair_probs(35, 0.4)
    elo1 = _nelo(stronger)  # H1 placed exactly at the stronger side's normalized Elo
    false_accept = _acceptance_rate(_pair_probs(0, 0.4), 0, elo1, "normalized", tests, 20, 3)
    true_accept = _acceptance_rate(stronger, 0, elo1, "normalized", tests, 20, 4)
    assert false_accept <= 0.05 + slack
    assert true_accept >= 0.95 - slack


# --- Bradley–Terry ladder -----------------------------------------------------------------


def test_two_players_match_the_closed_form():
    ratings = bradley_terry([("new", "old", 60, 20, 20)], anchor="old")
    score = (60 + 10) / 100
    assert ratings["new"].elo == pytest.approx(elo_from_score(score), abs=1e-6)
    slope = math.log(10) / 400
    fisher = slope**2 * 100 * score * (1 - score)
    assert ratings["new"].ci95 == pytest.approx(Z95 / math.sqrt(fisher), rel=1e-6)


def test_results_in_either_order_and_split_rows_agree():
    one = bradley_terry([("a", "b", 10, 4, 6), ("b", "c", 5, 5, 5)], anchor="a")
    other = bradley_terry([("b", "a", 3, 2, 5), ("a", "b", 5, 2, 3), ("c", "b", 5, 5, 5)], anchor="a")
    for name in "abc":
        assert one[name].elo == pytest.approx(other[name].elo, abs=1e-9)
        assert one[name].ci95 == pytest.approx(other[name].ci95, abs=1e-9)
        assert one[name].games == other[name].games


def test_moving_the_anchor_shifts_every_rating_equally():
    results = [("a", "b", 12, 3, 5), ("b", "c", 7, 6, 7), ("a", "c", 9, 1, 10), ("c", "d", 8, 0, 2)]
    by_a, by_c = bradley_terry(results, "a"), bradley_terry(results, "c")
    shift = by_c["a"].elo
    for name in "abcd":
        assert by_c[name].elo == pytest.approx(by_a[name].elo + shift, abs=1e-8)


def test_perfect_scores_are_regularised_or_refused():
    results = [("champ", "base", 10, 0, 0), ("base", "weak", 6, 2, 2)]
    ratings = bradley_terry(results, anchor="base")
    assert math.isfinite(ratings["champ"].elo) and ratings["champ"].elo > 300
    with pytest.raises(ValueError, match="perfect score"):
        bradley_terry(results, anchor="base", prior_draws=0)
    firm = bradley_terry(results, anchor="base", prior_draws=5)
    assert firm["champ"].elo < ratings["champ"].elo


@pytest.mark.parametrize(
    ("results", "anchor", "needle"),
    [
        ([("a", "b", 1, 1, 1)], "z", "anchor"),
        ([("a", "b", 1, 1, 1), ("c", "d", 1, 1, 1)], "a", "no chain"),
        ([("a", "a", 1, 1, 1)], "a", "two different"),
        ([("a", "b", 1, -1, 1)], "a", "non-negative"),
        ([("a", "b", 1.5, 0, 1)], "a", "non-negative"),
        ([("a", "b", 1, 1)], "a", "wins_b"),
        ([], "a", "anchor"),
    ],
)
def test_bradley_terry_rejects_bad_input(results, anchor, needle):
    with pytest.raises(ValueError, match=needle):
        bradley_terry(results, anchor)

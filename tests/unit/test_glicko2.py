"""Glicko-2: Glickman's worked example, its properties, and ``jetzero stats glicko2``."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine.glicko2 import MAX_RD, Rating, idle, rate
from scripts.stats import app

EXAMPLE_PLAYER = Rating(1500, 200, 0.06)
EXAMPLE_GAMES = [(Rating(1400, 30), 1.0), (Rating(1550, 100), 0.0), (Rating(1700, 300), 0.0)]

ratings = st.floats(1200, 1800)  # upsets of 1000+ points make the volatility explode
rds = st.floats(30, 350)
vols = st.floats(0.03, 0.1)
players = st.builds(Rating, ratings, rds, vols)
opponents = st.builds(Rating, ratings, rds)
scores = st.sampled_from([0.0, 0.5, 1.0])
games_lists = st.lists(st.tuples(opponents, scores), min_size=1, max_size=8)


def test_glickmans_worked_example():
    new = rate(EXAMPLE_PLAYER, EXAMPLE_GAMES, tau=0.5)
    assert round(new.rating, 2) == 1464.05
    assert round(new.rd, 2) == 151.52
    assert int(new.volatility * 1e5) == 5999  # the paper prints 0.05999 (truncated)
    assert new.volatility == pytest.approx(0.059996, abs=5e-7)


def test_new_players_and_provisional_flag():
    new = Rating()
    assert (new.rating, new.rd, new.volatility) == (1500.0, 350.0, 0.06)
    assert new.provisional(110) and not Rating(1500, 80).provisional(110)


@settings(max_examples=60, deadline=None)
@given(players, games_lists)
def test_rd_shrinks_with_games(player, games):
    """Games make the RD smaller than the period's widening by the (new) volatility alone (a
    very settled rating may still widen a little, more so after a surprise that raises its
    volatility), and a new player's shrinks."""
    after = rate(player, games, 0.5)
    assert after.rd < idle(Rating(player.rating, player.rd, after.volatility), 1, 0.5).rd
    new = Rating(player.rating, MAX_RD, player.volatility)
    assert rate(new, games, 0.5).rd < MAX_RD


@settings(max_examples=60, deadline=None)
@given(players, st.integers(1, 50))
def test_rd_grows_with_idle_time_up_to_its_bound(player, periods):
    later = idle(player, periods, 0.5)
    assert later.rd <= MAX_RD
    assert later.rd > player.rd or later.rd == MAX_RD
    assert (later.rating, later.volatility) == (player.rating, player.volatility)
    assert idle(player, periods + 1, 0.5).rd >= later.rd
    assert rate(player, [], 0.5) == idle(player, 1, 0.5)


@settings(max_examples=60, deadline=None)
@given(players, games_lists)
def test_outcomes_are_symmetric(player, games):
    """Flipping every score moves the rating as far the other way (mirrored opponents)."""
    mirrored = [(Rating(2 * player.rating - o.rating, o.rd, o.volatility), 1.0 - s) for o, s in games]
    up, down = rate(player, games, 0.5), rate(player, mirrored, 0.5)
    assert up.rating - player.rating == pytest.approx(player.rating - down.rating, abs=1e-6)
    assert up.rd == pytest.approx(down.rd) and up.volatility == pytest.approx(down.volatility)


@settings(max_examples=60, deadline=None)
@given(players, opponents)
def test_a_win_never_lowers_and_a_loss_never_raises(player, opponent):
    assert rate(player, [(opponent, 1.0)], 0.5).rating > player.rating
    assert rate(player, [(opponent, 0.0)], 0.5).rating < player.rating


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="tau"):
        rate(Rating(), [], 0)
    with pytest.raises(ValueError, match="score"):
        rate(Rating(), [(Rating(), 1.5)], 0.5)
    with pytest.raises(ValueError, match="positive"):
        rate(Rating(1500, 0), [], 0.5)


runner = CliRunner()
EXAMPLE_ARGS = ["glicko2", "--rating", "1500", "--rd", "200", "--volatility", "0.06", "--tau", "0.5",
                "--game", "1400,30,1", "--game", "1550,100,0", "--game", "1700,300,0"]


def test_cli_prints_the_worked_example():
    result = runner.invoke(app, EXAMPLE_ARGS)
    assert result.exit_code == 0, result.stderr
    assert "rating      1464.05" in result.stdout
    assert "RD          151.52" in result.stdout
    assert "volatility  0.059996" in result.stdout


def test_cli_json_is_one_line_with_the_three_keys():
    result = runner.invoke(app, [*EXAMPLE_ARGS, "--json"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("\n") == 1
    report = json.loads(result.stdout)
    assert set(report) == {"rating", "rd", "volatility"}
    assert report == pytest.approx(msg_dict(rate(EXAMPLE_PLAYER, EXAMPLE_GAMES, 0.5)))


def test_cli_without_games_is_an_idle_period():
    report = json.loads(runner.invoke(app, ["glicko2", "--rd", "50", "--json"]).stdout)
    assert report == pytest.approx(msg_dict(idle(Rating(1500, 50), 1, 0.5)))


def msg_dict(r: Rating) -> dict[str, float]:
    return {"rating": r.rating, "rd": r.rd, "volatility": r.volatility}


@pytest.mark.parametrize(
    ("game", "message"),
    [
        ("1400,x,1", "three numbers"),
        ("1400,30", "three numbers"),
        ("1400,30,2", "score must be in [0, 1]"),
        ("1400,0,1", "RD must be positive"),
        ("1400,30,nan", "finite"),
    ],
)
def test_cli_bad_games_are_one_line_errors(game, message):
    result = runner.invoke(app, ["glicko2", "--game", game])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and game in result.stderr

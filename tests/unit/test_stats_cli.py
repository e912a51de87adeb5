"""``jetzero stats``: SPRT and Elo from the command line, and its one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from engine.rating import elo_from_pentanomial, elo_from_trinomial, sprt
from scripts.stats import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_sprt_text_report():
    result = invoke(
        "sprt", "--pentanomial", "43,61,144,55,37", "--elo0", "0", "--elo1", "2",
        "--model", "normalized",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "LLR         -0.141 (bounds -2.944, 2.944" in out
    assert "verdict     continue" in out
    assert "Elo         -9.20 ± 20.93 (95%)" in out
    assert "LOS         19.4%" in out
    assert "nElo        -11.50 ± 26.11 (95%)" in out
    assert "games       680" in out


def test_sprt_json_matches_the_library():
    result = invoke(
        "sprt", "--trinomial", "90,200,110", "--elo0", "-3", "--elo1", "5",
        "--alpha", "0.01", "--beta", "0.1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    expected = sprt([90, 200, 110], -3, 5, alpha=0.01, beta=0.1)
    assert report["llr"] == pytest.approx(expected.llr)
    assert (report["lower"], report["upper"]) == pytest.approx((expected.lower, expected.upper))
    assert report["verdict"] == expected.verdict
    assert report["trinomial"] == [90, 200, 110] and report["model"] == "logistic"
    assert report["estimate"]["elo"] == pytest.approx(elo_from_trinomial([90, 200, 110]).elo)


def test_sprt_default_bounds_and_verdicts():
    accept = json.loads(invoke("sprt", "--trinomial", "100,300,400", "--elo0", "0",
                               "--elo1", "10", "--json").stdout)  # fmt: skip
    assert accept["verdict"] == "accept"
    assert accept["upper"] == pytest.approx(2.9444389791664403)
    known = invoke("sprt", "--trinomial", "90,200,110", "--elo0", "0", "--elo1", "5", "--json")
    assert json.loads(known.stdout)["llr"] == pytest.approx(0.49311125990, abs=5e-12)


def test_sprt_with_no_games_yet():
    result = invoke("sprt", "--pentanomial", "0,0,0,0,0", "--elo0", "0", "--elo1", "5")
    assert result.exit_code == 0
    assert "LLR         0.000" in result.stdout and "verdict     continue" in result.stdout
    assert "LOS" not in result.stdout  # no estimate without games


def test_elo_json_matches_the_library():
    result = invoke("elo", "--pentanomial", " 43, 61,144,55,37", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    expected = elo_from_pentanomial([43, 61, 144, 55, 37])
    for field in ("elo", "ci95", "los", "nelo", "nelo_ci95", "games"):
        assert report[field] == pytest.approx(getattr(expected, field))
    assert report["pentanomial"] == [43, 61, 144, 55, 37]


def test_elo_text_report():
    result = invoke("elo", "--trinomial", "90,200,110")
    assert result.exit_code == 0
    assert "Elo         17.39 ± 24.11 (95%)" in result.stdout
    assert "LOS         92.2%" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["elo"], "exactly one of"),
        (["elo", "--trinomial", "1,2,3", "--pentanomial", "1,2,3,4,5"], "exactly one of"),
        (["elo", "--trinomial", "1,2"], "--trinomial takes 3"),
        (["elo", "--pentanomial", "1,2,3"], "--pentanomial takes 5"),
        (["elo", "--trinomial", "1,-2,3"], "non-negative integers"),
        (["elo", "--trinomial", "1,x,3"], "non-negative integers"),
        (["elo", "--trinomial", "0,0,0"], "no games"),
        (["elo", "--trinomial", "1,2,3", "--bogus", "7"], "unexpected argument"),
        (["sprt", "--trinomial", "1,2,3", "--elo1", "5"], "--elo0 and --elo1 are required"),
        (["sprt", "--trinomial", "1,2,3", "--elo0", "5", "--elo1", "0"], "below elo1"),
        (["sprt", "--trinomial", "1,2,3", "--elo0", "a", "--elo1", "5"], "--elo0 takes a number"),
        (["sprt", "--trinomial", "1,2,3", "--elo0", "0", "--elo1", "nan"], "finite"),
        (["sprt", "--trinomial", "1,2,3", "--elo0", "0", "--elo1", "5", "--alpha", "1.5"],
         "alpha"),
        (["sprt", "--trinomial", "1,2,3", "--elo0", "0", "--elo1", "5", "--model", "bayes"],
         "--model must be one of logistic, normalized"),
    ],
)  # fmt: skip
def test_bad_arguments_give_one_line_and_exit_code_2(args, needle):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)

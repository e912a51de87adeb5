"""Strength grading on solved Connect Four positions, and the opening set built from them."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

import engine
from engine.errors import IllegalMove
from engine.games import ConnectFour, ConnectFourState, get_game
from engine.openings import (
    DEFAULT_MAX_ABS_SCORE,
    DEFAULT_MAX_STONES,
    format_openings_file,
    openings_for,
    read_openings,
    select_balanced_openings,
)
from engine.strength import (
    BadPositionsFile,
    Position,
    StrengthReport,
    format_table,
    grade,
    load_positions,
    to_json,
    value_class,
)

DATA = Path(engine.__file__).parent / "data"
SHIPPED = DATA / "connect4_public.jsonl"


@pytest.fixture(scope="module")
def shipped() -> list[Position]:
    return load_positions(SHIPPED)


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    """A dozen lines of the shipped file: each band, with and without a choice that matters."""
    rows = [json.loads(line) for line in SHIPPED.read_text().splitlines()]
    picked = []
    for band in ("8-14", "15-22", "23-30"):
        for matters in (True, False):
            picked += [r for r in rows if r["band"] == band and r["choice_matters"] == matters][:2]
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in picked) + "\n\n")
    return path


def by_moves(positions: list[Position]) -> dict[tuple[int, ...], Position]:
    game = ConnectFour()
    return {game.parse_moves(p.moves): p for p in positions}


def oracle(positions: list[Position]):
    table = by_moves(positions)
    values = {"win": 1.0, "draw": 0.0, "loss": -1.0}
    return (
        lambda state: table[state.moves].optimal_moves[-1] - 1,
        lambda state: values[table[state.moves].outcome],
    )


def test_load_positions(small_file: Path) -> None:
    positions = load_positions(small_file)
    assert len(positions) == 12
    p = positions[0]
    assert p.stones == len(p.moves) and len(p.scores) == 7
    assert p.state(ConnectFour()).moves == ConnectFour().parse_moves(p.moves)
    assert {p.band for p in positions} == {"8-14", "15-22", "23-30"}


def test_shipped_file_loads_whole(shipped: list[Position]) -> None:
    assert len(shipped) == 1500
    assert sum(p.choice_matters for p in shipped) == 1208  # the README's count


def test_oracle_scores_everything(small_file: Path, shipped: list[Position]) -> None:
    for positions in (load_positions(small_file), shipped):
        report = grade(positions, *oracle(positions))
        tallies = [report.overall, report.choice_matters, *report.bands.values()]
        for t in tallies:
            assert t.outcome_optimal == t.exactly_optimal == t.value_accuracy == 1.0
        assert report.overall.count == len(positions)
        assert sum(t.count for t in report.bands.values()) == len(positions)
        assert report.choice_matters.count == sum(p.choice_matters for p in positions)
        assert list(report.bands) == ["8-14", "15-22", "23-30"]


def test_a_losing_chooser_scores_nothing_where_the_choice_matters(shipped: list[Position]) -> None:
    table = by_moves(shipped)

    def worst(state):
        scores = table[state.moves].scores
        return min((s, c) for c, s in enumerate(scores) if s is not None)[1]

    report = grade(shipped, worst, predict_value=lambda state: 0.9)
    assert report.choice_matters.count == 1208
    assert report.choice_matters.outcome_optimal == report.choice_matters.exactly_optimal == 0
    assert 0 < report.overall.outcome_optimal < 1  # positions where every move is as good
    wins = sum(p.outcome == "win" for p in shipped) / len(shipped)
    assert report.overall.value_accuracy == pytest.approx(wins)


def random_chooser(seed: int) -> Callable[[ConnectFourState], int]:
    rng = random.Random(seed)
    return lambda state: rng.choice(state.legal_moves())


def test_random_chooser_lands_on_the_reference_floor(shipped: list[Position]) -> None:
    def expected(field: str) -> float:
        return sum(
            len(getattr(p, field)) / sum(s is not None for s in p.scores) for p in shipped
        ) / len(shipped)

    # the README's "uniform random (expected)" row, all positions
    assert expected("outcome_optimal_moves") == pytest.approx(0.498, abs=0.005)
    assert expected("optimal_moves") == pytest.approx(0.281, abs=0.005)
    tallies = [grade(shipped, random_chooser(seed)).overall for seed in range(4)]
    outcome_optimal = sum(t.outcome_optimal for t in tallies) / len(tallies)
    exactly_optimal = sum(t.exactly_optimal for t in tallies) / len(tallies)
    assert outcome_optimal == pytest.approx(expected("outcome_optimal_moves"), abs=0.025)
    assert exactly_optimal == pytest.approx(expected("optimal_moves"), abs=0.025)
    assert all(t.value_accuracy is None for t in tallies)


def test_an_illegal_choice_is_an_error(small_file: Path) -> None:
    positions = load_positions(small_file)
    with pytest.raises(IllegalMove):
        grade(positions, lambda state: 7)


def test_value_thresholds() -> None:
    assert value_class(0.34) == "win" and value_class(1.0) == "win"
    assert value_class(1 / 3) == value_class(-1 / 3) == value_class(0.0) == "draw"
    assert value_class(-0.34) == "loss" and value_class(-1.0) == "loss"
    with pytest.raises(ValueError, match="NaN"):
        value_class(float("nan"))


GOOD = json.loads(
    '{"moves":"11123222","stones":8,"to_move":1,"scores":[-4,-3,0,-2,-2,-2,-3],'
    '"best_score":0,"optimal_moves":[3],"outcome_optimal_moves":[3],"outcome":"draw",'
    '"move_outcomes":["loss","loss","draw","loss","loss","loss","loss"],'
    '"choice_matters":true,"band":"8-14"}'
)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"stones": "8"}, "stones"),
        ({"stones": 9}, "stones"),
        ({"to_move": 2}, "to_move"),
        ({"moves": "1112322x"}, "moves"),
        ({"moves": "11111112"}, "moves"),
        ({"scores": [-4, -3, 0, -2, -2, -2]}, "scores"),
        ({"best_score": 1}, "best_score"),
        ({"optimal_moves": [2]}, "optimal_moves"),
        ({"outcome": "win"}, "outcome"),
        ({"outcome": "maybe"}, "outcome"),
        ({"move_outcomes": ["loss"] * 7}, "move_outcomes"),
        ({"outcome_optimal_moves": [3, 4]}, "outcome_optimal_moves"),
        ({"choice_matters": False}, "choice_matters"),
        ({"band": "15-22"}, "band"),
        ({"band": None}, "band"),
        ({"band": "DELETE"}, "band"),
    ],
)
def test_a_malformed_line_names_its_number_and_field(
    tmp_path: Path, change: dict, field: str
) -> None:
    row = {**GOOD, **change}
    if row["band"] == "DELETE":
        del row["band"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([json.dumps(GOOD), "", json.dumps(row)]) + "\n")
    with pytest.raises(BadPositionsFile, match=rf"line 3: .*{field}"):
        load_positions(path)


def test_a_line_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(BadPositionsFile, match="line 2: not JSON"):
        load_positions(path)


def test_table_and_json(small_file: Path) -> None:
    positions = load_positions(small_file)
    reports = {
        "oracle": grade(positions, *oracle(positions)),
        "first": grade(positions, lambda state: state.legal_moves()[0]),
    }
    lines = format_table(reports).splitlines()
    assert lines[0].split() == [
        "player",
        "band",
        "n",
        "outcome-opt",
        "%",
        "exact",
        "%",
        "value",
        "%",
    ]
    assert len(lines) == 2 + 2 * 5
    assert lines[2].split()[:6] == ["oracle", "8-14", "4", "100.0", "100.0", "100.0"]
    assert lines[-1].split()[:2] == ["first", "choice_matters"] and lines[-1].endswith("-")
    decoded = msgspec.json.decode(to_json(reports), type=dict[str, StrengthReport])
    assert decoded == reports


# ------------------------------------------------------------------------------ openings


def test_shipped_openings_are_what_the_selection_makes() -> None:
    openings = select_balanced_openings(SHIPPED, DEFAULT_MAX_STONES, DEFAULT_MAX_ABS_SCORE)
    text = format_openings_file(openings, SHIPPED.name, DEFAULT_MAX_STONES, DEFAULT_MAX_ABS_SCORE)
    assert (DATA / "connect4_openings.txt").read_text() == text


def test_openings_are_short_balanced_and_distinct(shipped: list[Position]) -> None:
    game = ConnectFour()
    openings = openings_for(game)
    assert len(openings) >= 50
    scores = {game.parse_moves(p.moves): p.best_score for p in shipped}
    keys = set()
    for moves in openings:
        state = game.from_moves(moves)
        assert not state.is_terminal() and len(moves) <= DEFAULT_MAX_STONES
        assert abs(scores[moves]) <= DEFAULT_MAX_ABS_SCORE
        mirror = game.from_moves([game.mirror_move(m) for m in moves])
        keys.add(min(state.key(), mirror.key()))
    assert len(keys) == len(openings)
    ranks = [abs(scores[m]) for m in openings]
    assert ranks == sorted(ranks) and ranks[0] == 0
    assert openings_for(game, 5) == openings[:5]


def test_selection_parameters(small_file: Path, shipped: list[Position]) -> None:
    draws = select_balanced_openings(SHIPPED, max_stones=9, max_abs_score=0, limit=None)
    expected = {p.moves for p in shipped if p.stones <= 9 and p.best_score == 0}
    assert set(draws) == expected  # the file holds no transposed or mirrored duplicates
    assert select_balanced_openings(SHIPPED, 9, 0, limit=3) == draws[:3]
    short = [p for p in load_positions(small_file) if p.stones <= 8]
    ranked = sorted(short, key=lambda p: (abs(p.best_score), p.stones, p.moves))
    assert select_balanced_openings(small_file, 8, 30) == [p.moves for p in ranked]


def test_duplicates_are_removed(tmp_path: Path) -> None:
    game = ConnectFour()
    mirrored = "".join(game.move_to_str(game.mirror_move(m)) for m in game.parse_moves("11123222"))
    transposed = "12311222"  # the same stones as 11123222, played in another order
    assert game.from_notation(transposed).key() == game.from_notation("11123222").key()
    rows = [
        GOOD,
        {
            **GOOD,
            "moves": mirrored,
            "scores": GOOD["scores"][::-1],
            "optimal_moves": [5],
            "outcome_optimal_moves": [5],
            "move_outcomes": GOOD["move_outcomes"][::-1],
        },
        {**GOOD, "moves": transposed},
    ]
    path = tmp_path / "dups.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert select_balanced_openings(path, 8, 0) == ["11123222"]


def test_games_without_an_opening_set() -> None:
    assert openings_for(get_game("tictactoe")) == [()]
    assert openings_for(get_game("connect4", width=5, height=4), 10) == [()]
    with pytest.raises(TypeError):
        read_openings(DATA / "connect4_openings.txt", get_game("tictactoe"))

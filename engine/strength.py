"""Strength grading against solved Connect Four positions (the benchmark's JSON Lines format).

``load_positions`` reads and checks a positions file (every field, and that the fields agree
with each other and with the rules); ``grade`` scores a move chooser, and optionally a value
predictor, overall, per stone-count band and on the positions where the choice matters;
``format_table`` and ``to_json`` print the reports. Files number columns from 1, actions from 0.

A predicted value ``v`` (for the side to move, in [-1, 1]) is read as a win when
``v > 1/3``, a loss when ``v < -1/3``, and a draw in between.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import msgspec

from engine.errors import EngineError, IllegalMove
from engine.games.connect4 import ConnectFour, ConnectFourState

Outcome = Literal["win", "draw", "loss"]
WIN_THRESHOLD = 1 / 3  # value > this: win; value < -this: loss; otherwise draw
ALL, CHOICE_MATTERS = "all", "choice_matters"


class BadPositionsFile(EngineError, ValueError):
    """A positions file line that is not valid JSON, lacks a field, or contradicts itself."""


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """One solved position; the fields and their meaning are the benchmark README's."""

    moves: str
    stones: int
    to_move: int
    scores: tuple[int | None, ...]
    best_score: int
    optimal_moves: tuple[int, ...]
    outcome_optimal_moves: tuple[int, ...]
    outcome: Outcome
    move_outcomes: tuple[Outcome | None, ...]
    choice_matters: bool
    band: str

    def state(self, game: ConnectFour) -> ConnectFourState:
        return game.from_notation(self.moves)


class Tally(msgspec.Struct, frozen=True, kw_only=True):
    """Shares in [0, 1] over ``count`` positions; ``value_accuracy`` None without a predictor."""

    count: int
    outcome_optimal: float
    exactly_optimal: float
    value_accuracy: float | None = None


class StrengthReport(msgspec.Struct, frozen=True, kw_only=True):
    overall: Tally
    bands: dict[str, Tally]  # by band, in stone-count order
    choice_matters: Tally


def outcome_class(score: float) -> Outcome:
    return "win" if score > 0 else "loss" if score < 0 else "draw"


def value_class(value: float) -> Outcome:
    """The outcome a predicted value in [-1, 1] stands for (see the module docstring)."""
    if value != value:  # NaN
        raise ValueError("predicted value is NaN")
    return "win" if value > WIN_THRESHOLD else "loss" if value < -WIN_THRESHOLD else "draw"


_decoder = msgspec.json.Decoder(Position)
_BAND = re.compile(r"(\d+)-(\d+)")


def parse_positions(
    lines: Iterable[str | bytes], game: ConnectFour | None = None, source: str = "<positions>"
) -> list[Position]:
    """Decode and check JSON Lines; blank lines are skipped; errors name the line and field."""
    game = game or ConnectFour()
    positions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            position = _decoder.decode(line)
        except msgspec.ValidationError as err:
            raise BadPositionsFile(f"{source}, line {number}: {err}") from None
        except msgspec.DecodeError as err:
            raise BadPositionsFile(f"{source}, line {number}: not JSON ({err})") from None
        problem = _check(position, game)
        if problem:
            field, message = problem
            raise BadPositionsFile(f"{source}, line {number}: field `{field}`: {message}")
        positions.append(position)
    return positions


def load_positions(path: str | Path, game: ConnectFour | None = None) -> list[Position]:
    """Every position of a JSON Lines file (see ``parse_positions``)."""
    path = Path(path)
    with path.open("rb") as lines:
        return parse_positions(lines, game, source=str(path))


def _check(p: Position, game: ConnectFour) -> tuple[str, str] | None:
    """The first field that breaks the format or disagrees with the others, and why."""
    try:
        state = p.state(game)
    except IllegalMove as err:
        return "moves", str(err)
    if state.is_terminal():
        return "moves", "the game is already over"
    if p.stones != len(p.moves):
        return "stones", f"{p.stones} but moves has {len(p.moves)}"
    if p.to_move != 1 + p.stones % 2:
        return "to_move", f"{p.to_move} but {p.stones} stones are on the board"
    legal = state.legal_moves()
    if len(p.scores) != game.width or [s is not None for s in p.scores] != [
        c in legal for c in range(game.width)
    ]:
        return "scores", f"needs {game.width} entries, null exactly for the full columns"
    scores = {c: s for c, s in enumerate(p.scores) if s is not None}
    if p.best_score != max(scores.values()):
        return "best_score", f"{p.best_score} is not the largest score"
    if list(p.optimal_moves) != [c + 1 for c, s in scores.items() if s == p.best_score]:
        return "optimal_moves", "not the columns scoring best_score"
    if p.outcome != outcome_class(p.best_score):
        return "outcome", f"{p.outcome!r} but best_score is {p.best_score}"
    if list(p.move_outcomes) != [None if s is None else outcome_class(s) for s in p.scores]:
        return "move_outcomes", "does not match scores"
    if list(p.outcome_optimal_moves) != [c + 1 for c in scores if p.move_outcomes[c] == p.outcome]:
        return "outcome_optimal_moves", "not the columns whose outcome is the position's"
    if p.choice_matters != (len({p.move_outcomes[c] for c in scores}) > 1):
        return "choice_matters", "does not match move_outcomes"
    band = _BAND.fullmatch(p.band)
    if not band or not int(band[1]) <= p.stones <= int(band[2]):
        return "band", f"{p.band!r} is not a range 'lo-hi' holding {p.stones} stones"
    return None


class _Counter:
    def __init__(self) -> None:
        self.count = self.outcome_optimal = self.exactly_optimal = self.value_right = 0

    def tally(self, with_values: bool) -> Tally:
        n = max(self.count, 1)
        return Tally(
            count=self.count,
            outcome_optimal=self.outcome_optimal / n,
            exactly_optimal=self.exactly_optimal / n,
            value_accuracy=self.value_right / n if with_values else None,
        )


def grade(
    positions: Iterable[Position],
    choose_move: Callable[[ConnectFourState], int],
    predict_value: Callable[[ConnectFourState], float] | None = None,
    game: ConnectFour | None = None,
) -> StrengthReport:
    """Score ``choose_move`` (an action index, 0-based) and ``predict_value`` on ``positions``.

    A chooser that returns an illegal move raises ``IllegalMove``: that is a bug, not a loss.
    """
    game = game or ConnectFour()
    counters: dict[str, _Counter] = {ALL: _Counter(), CHOICE_MATTERS: _Counter()}
    bands: dict[str, _Counter] = {}
    for p in positions:
        state = p.state(game)
        move = choose_move(state)
        if move not in state.legal_moves():
            raise state.illegal(move)
        column = int(move) + 1
        value_right = predict_value is not None and value_class(predict_value(state)) == p.outcome
        targets = [counters[ALL], bands.setdefault(p.band, _Counter())]
        if p.choice_matters:
            targets.append(counters[CHOICE_MATTERS])
        for counter in targets:
            counter.count += 1
            counter.outcome_optimal += column in p.outcome_optimal_moves
            counter.exactly_optimal += column in p.optimal_moves
            counter.value_right += value_right
    with_values = predict_value is not None
    return StrengthReport(
        overall=counters[ALL].tally(with_values),
        bands={
            band: bands[band].tally(with_values)
            for band in sorted(bands, key=lambda b: [int(x) for x in b.split("-")])
        },
        choice_matters=counters[CHOICE_MATTERS].tally(with_values),
    )


def _rows(report: StrengthReport) -> list[tuple[str, Tally]]:
    return [*report.bands.items(), (ALL, report.overall), (CHOICE_MATTERS, report.choice_matters)]


def format_table(reports: dict[str, StrengthReport]) -> str:
    """A plain-text table, one row per player × band (then all, then choice_matters)."""
    header = ("player", "band", "n", "outcome-opt %", "exact %", "value %")
    rows = [header]
    for player, report in reports.items():
        for band, t in _rows(report):
            value = "-" if t.value_accuracy is None else f"{100 * t.value_accuracy:.1f}"
            rows.append(
                (
                    player,
                    band,
                    str(t.count),
                    f"{100 * t.outcome_optimal:.1f}",
                    f"{100 * t.exactly_optimal:.1f}",
                    value,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(reports: dict[str, StrengthReport]) -> str:
    """The reports as JSON: ``{player: {overall, bands, choice_matters}}``."""
    return msgspec.json.encode(reports).decode()

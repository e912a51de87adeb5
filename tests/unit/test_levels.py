"""The AI levels: settings, batched moves (one network call per simulation for many games),
deadlines, blunders, and calibration's ladder fit, respacing and config rewrite."""

from __future__ import annotations

import math
import time

import msgspec
import numpy as np
import pytest

from engine.games import get_game
from engine.mcts import UniformEvaluator
from engine.network import set_torch_threads
from handlers.matchmaking.calibrate import (
    RANDOM,
    fit_levels,
    level_name,
    render_levels,
    respace,
    write_levels,
)
from handlers.matchmaking.levels import (
    DEFAULT_LEVELS,
    LevelSettings,
    MoveRequest,
    choose_moves,
    initial_network,
    level_player,
    levels_by_number,
)

C4 = get_game("connect4")
TTT = get_game("tictactoe")


class CountingEvaluator(UniformEvaluator):
    """Uniform priors; counts calls and positions (what the batching must save)."""

    def __init__(self) -> None:
        self.calls = 0
        self.positions = 0

    def evaluate(self, states, legal=None):
        self.calls += 1
        self.positions += len(states)
        return super().evaluate(states, legal)


def level(number: int, **fields) -> LevelSettings:
    return msgspec.structs.replace(levels_by_number(DEFAULT_LEVELS)[number], **fields)


def test_default_levels_run_from_a_hot_blundering_sampler_to_a_full_search():
    by_number = levels_by_number(DEFAULT_LEVELS)
    first, last = by_number[1], by_number[8]
    assert first.kind == "raw_policy" and first.temperature >= 1.5 and first.blunder_rate > 0
    assert last.kind == "search" and last.blunder_rate == 0 and last.temperature == 0
    sims = [lv.simulations for lv in DEFAULT_LEVELS if lv.kind == "search"]
    assert sims == sorted(sims) and sims[-1] == max(sims)
    blunders = [lv.blunder_rate for lv in DEFAULT_LEVELS]
    assert blunders == sorted(blunders, reverse=True)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"number": 9, "kind": "search", "simulations": 1}, "1-8"),
        ({"number": 2, "kind": "search"}, "simulations >= 1"),
        ({"number": 2, "kind": "raw_policy", "blunder_rate": 1.5}, "blunder_rate"),
        ({"number": 2, "kind": "raw_policy", "temperature": -1}, "temperature"),
        ({"number": 2, "kind": "minimax"}, "kind"),
        ({"number": 2, "kind": "raw_policy", "depth": 3}, "depth"),
    ],
)
def test_bad_level_settings_are_refused_with_the_field(fields, message):
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert(fields, LevelSettings)


def test_the_table_must_be_levels_1_to_8_once_each():
    with pytest.raises(ValueError, match="1-8"):
        levels_by_number(DEFAULT_LEVELS[:7])
    with pytest.raises(ValueError, match="1-8"):
        levels_by_number([*DEFAULT_LEVELS[:7], DEFAULT_LEVELS[0]])


def test_many_games_searches_share_each_network_call():
    evaluator = CountingEvaluator()
    openings = [(), (3,), (3, 3), (2, 4), (0,), (6, 6, 6), (1, 2), (5,)]
    requests = [MoveRequest(moves=m, level=level(6, simulations=24), seed=i) for i, m in enumerate(openings)]
    batch = choose_moves(C4, evaluator, requests, max_think_ms=60_000)
    assert len(batch.choices) == len(requests)
    for choice, request in zip(batch.choices, requests, strict=True):
        assert choice.move in C4.from_moves(request.moves).legal_moves()
        assert choice.simulations == 24
    # one call per simulation (+ the roots' expansion) for all eight games, not eight times that
    assert evaluator.calls <= 24 + 1 < len(requests) * 24
    assert batch.evaluator_calls == evaluator.calls and batch.evaluations == evaluator.positions
    assert batch.evaluations / batch.evaluator_calls > 4


def test_raw_policy_moves_of_many_games_are_one_call_and_replay():
    requests = [MoveRequest(moves=(i % 7,), level=level(3, blunder_rate=0.0), seed=i) for i in range(10)]
    evaluator = CountingEvaluator()
    first = choose_moves(C4, evaluator, requests, max_think_ms=100)
    assert evaluator.calls == 1 and evaluator.positions == 10
    again = choose_moves(C4, CountingEvaluator(), requests, max_think_ms=100)
    assert first.choices == again.choices


def test_mixed_batches_answer_in_request_order():
    requests = [
        MoveRequest(moves=(0, 0, 0, 0, 0, 0), level=level(1, blunder_rate=0.0), seed=1),
        MoveRequest(moves=(), level=level(5, simulations=4), seed=2),
        MoveRequest(moves=(0, 0, 0, 0, 0, 0), level=level(8, simulations=4), seed=3),
    ]
    batch = choose_moves(C4, CountingEvaluator(), requests, max_think_ms=1000)
    assert [c.simulations for c in batch.choices] == [0, 4, 4]
    assert batch.choices[0].move != 0 and batch.choices[2].move != 0  # column 0 is full
    for choice, request in zip(batch.choices, requests, strict=True):
        assert choice.move in C4.from_moves(request.moves).legal_moves()


def test_a_search_stops_at_its_thinking_time():
    slow = level(8, simulations=1_000_000, think_ms=50)
    started = time.monotonic()
    one = [MoveRequest(moves=(), level=slow, seed=0)]
    batch = choose_moves(C4, CountingEvaluator(), one, max_think_ms=60_000)
    assert time.monotonic() - started < 5
    assert 0 < batch.choices[0].simulations < 1_000_000
    unbounded = [MoveRequest(moves=(), level=level(8, simulations=10**6, think_ms=0), seed=0)]
    capped = choose_moves(C4, CountingEvaluator(), unbounded, max_think_ms=50)
    assert 0 < capped.choices[0].simulations < 1_000_000


def test_blunders_are_random_legal_moves():
    always = level(8, blunder_rate=1.0, simulations=2)
    requests = [MoveRequest(moves=(3, 3), level=always, seed=s) for s in range(60)]
    evaluator = CountingEvaluator()
    moves = {c.move for c in choose_moves(C4, evaluator, requests, max_think_ms=100).choices}
    assert moves == set(range(7)) and evaluator.calls == 0  # no search for a blunder


def test_level_players_play_legal_games():
    set_torch_threads(1)
    net = initial_network(TTT)
    for number in (1, 4, 5, 8):
        player = level_player(level(number, simulations=4), net, seed=number)
        state = TTT.initial_state()
        while not state.is_terminal():
            state = state.play(player.choose(state))
        assert player.name == f"level-{number}"


# -- calibration: the ladder fit, respacing, the config rewrite ------------------------------


def synthetic_results(true_elo: dict[str, float], games: int = 400) -> list[tuple[str, str, int, int, int]]:
    """Expected results (no noise) of every pair that calibration plays, from known Elos."""
    names = [level_name(k) for k in range(1, 9)]
    pairs = [*zip(names, names[1:], strict=False), *((n, RANDOM) for n in names), (RANDOM, "pure")]
    results = []
    for a, b in pairs:
        p = 1.0 / (1.0 + 10 ** ((true_elo[b] - true_elo[a]) / 400))
        draws = round(games * min(p, 1 - p) / 5)  # a draw is half a point: the score stays p
        wins = round(games * p - draws / 2)
        results.append((a, b, wins, draws, games - wins - draws))
    return results


def test_the_ladder_fit_recovers_the_levels_elo_from_synthetic_results():
    true_elo = {RANDOM: 0.0, "pure": 250.0, **{level_name(k): -100.0 + 90.0 * k for k in range(1, 9)}}
    fit = fit_levels(synthetic_results(true_elo), DEFAULT_LEVELS)
    for k in range(1, 9):
        assert fit.levels[k] == pytest.approx(true_elo[level_name(k)], abs=8)
        assert 0 < fit.ci95[k] < 100
    assert fit.references[RANDOM] == 0.0
    assert fit.references["pure"] == pytest.approx(250, abs=8)


def test_the_fit_says_which_levels_did_not_play():
    results = [("level-1", RANDOM, 3, 1, 2)]
    with pytest.raises(ValueError, match=r"levels \[2, 3"):
        fit_levels(results, DEFAULT_LEVELS)


def test_respacing_aims_at_even_steps_between_the_ends():
    elo = {1: 0.0, 2: 20.0, 3: 40.0, 4: 60.0, 5: 300.0, 6: 500.0, 7: 600.0, 8: 700.0}
    new = respace(DEFAULT_LEVELS, elo)
    by_number = levels_by_number(DEFAULT_LEVELS)
    assert new[0] == by_number[1] and new[7] == by_number[8]  # the ends are kept
    assert [lv.number for lv in new] == list(range(1, 9))
    # target 100 lies between level 4 (60) and 5 (300): a kind change, the nearer end (4)
    assert new[1].kind == "raw_policy" and new[1] == msgspec.structs.replace(by_number[4], number=2)
    # target 400 lies halfway between level 5 (300, 8 sims) and 6 (500, 32 sims): 16 sims
    assert new[4].kind == "search" and new[4].simulations == 16
    assert new[4].temperature == pytest.approx(0.25)
    # target 600 is level 7 exactly
    assert new[6].simulations == by_number[7].simulations
    sims = [lv.simulations for lv in new if lv.kind == "search"]
    assert sims == sorted(sims)


def test_respacing_an_even_ladder_changes_nothing():
    elo = {k: 100.0 * k for k in range(1, 9)}
    assert respace(DEFAULT_LEVELS, elo) == list(DEFAULT_LEVELS)


def test_write_levels_rewrites_only_the_levels_section(tmp_path):
    path = tmp_path / "p2p.yaml"
    head = "# the header stays\nserver:\n  port: 8181   # a comment stays\n\n"
    tail = "\n# after the table\nratings:\n  tau: 0.7\n"
    path.write_text(head + "# the table\nlevels:\n  - {number: 1, kind: raw_policy}\n  # old\n" + tail)
    table = [msgspec.structs.replace(lv, elo=10.0 * lv.number) for lv in DEFAULT_LEVELS]
    write_levels(path, table)
    text = path.read_text()
    assert text.startswith(head + "# the table\nlevels:\n") and text.endswith(tail)
    assert "# old" not in text
    assert render_levels(table) in text
    from handlers.matchmaking.config import load_p2p_config

    config = load_p2p_config(path)
    assert config.levels == table and config.server.port == 8181 and config.ratings.tau == 0.7


def test_write_levels_refuses_a_table_that_does_not_load(tmp_path):
    path = tmp_path / "p2p.yaml"
    path.write_text("levels:\n  - {number: 1, kind: raw_policy}\n")
    before = path.read_text()
    from streams.errors import ConfigError

    with pytest.raises(ConfigError):
        write_levels(path, DEFAULT_LEVELS[:7])  # no level 8
    assert path.read_text() == before and list(tmp_path.iterdir()) == [path]


def test_respaced_simulations_interpolate_geometrically():
    a, b = level(6, simulations=10), level(7, simulations=1000)
    elo = {1: 0.0, 2: 100.0, 3: 200.0, 4: 300.0, 5: 400.0, 6: 500.0, 7: 700.0, 8: 700.0}
    table = [*DEFAULT_LEVELS[:5], a, b, DEFAULT_LEVELS[7]]
    new = respace(table, elo)
    assert new[5].simulations == 10  # target 500: level 6 itself
    assert new[6].simulations == round(math.sqrt(10 * 1000))  # target 600: halfway 500 → 700
    assert np.all(np.diff([lv.simulations for lv in new[4:]]) >= 0)

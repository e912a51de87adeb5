"""The strength bench: ``jetzero bench connect4`` end to end on a tiny checkpoint, its one-line
errors, and the batched grading in ``engine.bench_strength`` (real search, real net)."""

from __future__ import annotations

import json

import msgspec
import pytest
from typer.testing import CliRunner

from engine.bench_strength import PUBLIC_POSITIONS, measure_model, spread
from engine.checkpoint import make_meta, save_checkpoint_file
from engine.games.connect4 import ConnectFour
from engine.network import NetworkConfig, build_network, set_torch_threads
from engine.players import RawPolicyPlayer
from engine.strength import grade, load_positions, parse_positions
from scripts.bench_cli import app

C4 = ConnectFour()
TINY = NetworkConfig(blocks=0, channels=8, value_hidden=8)
FIXTURE_SIZE = 12
runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    set_torch_threads(1)


@pytest.fixture(scope="module")
def public():
    return load_positions(PUBLIC_POSITIONS, C4)


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory, public):
    """12 positions spread over the three bands of the shipped file."""
    path = tmp_path_factory.mktemp("positions") / "small.jsonl"
    path.write_bytes(b"\n".join(msgspec.json.encode(p) for p in spread(public, FIXTURE_SIZE)) + b"\n")
    return path


@pytest.fixture(scope="module")
def net():
    return build_network(C4, TINY, seed=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, net):
    path = tmp_path_factory.mktemp("models") / "tiny.ckpt"
    save_checkpoint_file(path, net, make_meta(net, game=C4, model_id="tiny-gen0"))
    return path


def invoke(*args: object):
    return runner.invoke(app, ["connect4", *map(str, args)])


def test_the_cli_grades_a_checkpoint_and_the_references(fixture_file, checkpoint):
    result = invoke(
        "--model", checkpoint, "--positions", fixture_file, "--sims", 16,
        "--reference-rollouts", 30, "--batch", 5, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "outcome-opt %" in lines[1] and "tiny-gen0" in lines[0]
    players = ["random", "pure-mcts-30", "raw-policy", "net-mcts-16"]
    for player in players:
        assert any(line.startswith(player) for line in lines[1:-1])
    summary = json.loads(lines[-1])
    assert summary["model"] == "tiny-gen0" and summary["positions"] == FIXTURE_SIZE
    assert list(summary["reports"]) == players
    positions = load_positions(fixture_file)
    choice = sum(p.choice_matters for p in positions)
    for player, report in summary["reports"].items():
        assert report["overall"]["count"] == FIXTURE_SIZE
        assert sum(t["count"] for t in report["bands"].values()) == FIXTURE_SIZE
        assert report["choice_matters"]["count"] == choice
        tallies = [report["overall"], report["choice_matters"], *report["bands"].values()]
        for tally in tallies:
            assert 0 <= tally["exactly_optimal"] <= tally["outcome_optimal"] <= 1
            value = tally["value_accuracy"]
            assert (value is None) == (player in ("random", "pure-mcts-30"))
            assert value is None or 0 <= value <= 1


def test_model_random_with_json_grades_only_the_references(fixture_file):
    result = invoke(
        "--model", "random", "--positions", fixture_file, "--limit", 5,
        "--reference-rollouts", 0, "--json", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    summary = json.loads(line)
    assert list(summary["reports"]) == ["random"]
    assert summary["reports"]["random"]["overall"]["count"] == 5


def test_a_corrupt_checkpoint_is_refused_with_one_line(tmp_path, fixture_file, checkpoint):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(checkpoint.read_bytes()[:-200])
    for model in (corrupt, tmp_path / "missing.ckpt"):
        result = invoke("--model", model, "--positions", fixture_file, "--no-references", "--quiet")
        assert result.exit_code == 2
        assert result.stdout == ""
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and "checkpoint" in line


def test_a_bad_positions_file_is_refused_with_one_line(tmp_path, checkpoint):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"moves": "44", "stones": 3}\n')
    result = invoke("--model", checkpoint, "--positions", bad)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "line 1" in line


# A position with exactly one winning move: X (to move) has three in column 1; O has three
# in columns 2 and 3, so any other move loses at once. Scores in the solver's convention.
ONE_WIN = "121212434373"


def one_win_position(moves: str):
    state = C4.from_notation(moves)
    (win,) = state.winning_moves()  # the premise, checked rather than assumed
    for move in state.legal_moves():
        if move != win:
            assert state.play(move).winning_moves()  # the opponent then wins at once
    scores = [15 if c == win else -15 for c in range(C4.width)]
    line = {
        "moves": moves, "stones": len(moves), "to_move": 1 + len(moves) % 2, "scores": scores,
        "best_score": 15, "optimal_moves": [win + 1], "outcome_optimal_moves": [win + 1],
        "outcome": "win", "move_outcomes": ["win" if s > 0 else "loss" for s in scores],
        "choice_matters": True, "band": "8-14",
    }  # fmt: skip
    return parse_positions([json.dumps(line)], C4)[0]


def test_mcts_finds_the_only_winning_move(net):
    mirrored = "".join(str(8 - int(c)) for c in ONE_WIN)
    positions = [one_win_position(ONE_WIN), one_win_position(mirrored)]
    reports = measure_model(net, positions, 64, batch=2)
    mcts = reports["net-mcts-64"].overall
    assert mcts.count == 2 and mcts.outcome_optimal == 1.0 and mcts.exactly_optimal == 1.0


def test_batched_raw_policy_grades_like_the_raw_policy_player(net, fixture_file):
    positions = load_positions(fixture_file)
    player = RawPolicyPlayer(net, device="cpu")
    expected = grade(positions, player.choose, player.value_of, C4)
    assert measure_model(net, positions, 0, batch=5, device="cpu")["raw-policy"] == expected


def test_spread_keeps_every_band_in_proportion(public):
    chosen = spread(public, 30)
    assert len(chosen) == 30 and len(set(map(id, chosen))) == 30
    for band in {p.band for p in public}:
        share = sum(p.band == band for p in public) / len(public)
        assert abs(sum(p.band == band for p in chosen) - 30 * share) <= 1
    assert spread(public, None) == public and spread(public, 10_000) == public


def test_half_precision_bench_compares_float16_with_float32_on_a_checkpoint(tmp_path, net, checkpoint,
                                                                           public):
    """bench/half_precision.py end to end on the CPU (float16 emulated): its float32 grades
    are ``measure_model``'s, and its agreement counts add up."""
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "half_precision.py"
    done = subprocess.run([sys.executable, str(bench), "--model", str(checkpoint), "--limit", "30",
                           "--sims", "8", "--seconds", "0.2", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = measure_model(net, spread(public, 30), 8, device="cpu")
    assert set(result["players"]) == set(expected) == {"raw-policy", "net-mcts-8"}
    for name, report in expected.items():
        got = result["players"][name]
        assert got["float32"]["outcome_optimal"] == round(report.overall.outcome_optimal, 4)
        assert got["positions"] == 30 and got["changed"] == round(30 * (1 - got["same_move"]))
        assert got["optimal_to_worse"] + got["worse_to_optimal"] <= got["changed"]
        moved = round(30 * (got["float32"]["outcome_optimal"] - got["float16"]["outcome_optimal"]))
        assert moved == got["optimal_to_worse"] - got["worse_to_optimal"]  # the grades' difference
        assert 0 < got["max_value_change"] < 0.1  # float16 did run, and stayed close
    assert result["forward_positions_per_s"]["float32"] > 0 and result["float16_to_float32"] > 0
    bad = subprocess.run([sys.executable, str(bench), "--model", str(tmp_path / "none.ckpt")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "half_precision:" in bad.stderr and "Traceback" not in bad.stderr

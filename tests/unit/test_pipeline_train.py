"""The candidate the pipeline trains, without a server: the same seed, snapshot and code give the
same weights (two real training processes, equal digests; another seed, other weights); a bad
snapshot (missing, empty, truncated, of another game, a game with an illegal move, an export of
the wrong stream) and a crashing training (a diverged loss, a checkout that predates the training)
are refused with one line, and exit 2 through the real script. The snapshot beside this file is a
tic-tac-toe run's 24 games, written by ``jetzero events export --stream GAMES --run snap``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from engine.checkpoint import load_checkpoint_file, make_meta, save_checkpoint_file
from engine.games import get_game
from engine.network import NetworkConfig, build_network
from engine.settings import TrainConfig
from handlers.pipeline.config import TrainSettings, load_pipeline_config
from handlers.pipeline.report import markdown_summary
from handlers.pipeline.snapshot import InvalidSnapshot, read_snapshot, snapshot_digest
from handlers.pipeline.train import TrainingFailed, check_snapshot, train_candidate, trainer_settings
from streams import codec
from streams.pipeline_events import TrainingRun, ValidationCompleted, ValidationRequested
from tests.pipeline_support import ROOT

SNAPSHOT = Path(__file__).with_name("test_pipeline_train.snapshot.jsonl")
TTT = get_game("tictactoe")
NET = NetworkConfig(blocks=1, channels=16, value_hidden=16)
SMALL = TrainSettings(steps=30, batch_size=32)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    net = build_network(TTT, NET, seed=3)
    path = tmp_path_factory.mktemp("models") / "baseline.pt"
    save_checkpoint_file(path, net, make_meta(net, game=TTT, created=0.0))
    return path


def train(baseline: Path, out: Path, settings: TrainSettings = SMALL, repo: Path = ROOT) -> TrainingRun:
    return train_candidate(repo=repo, snapshot=check_snapshot(SNAPSHOT, TTT), baseline=baseline, out=out,
                           game=TTT, game_params={}, train=TrainConfig(search_value_weight=0.5),
                           settings=settings)


def test_the_same_seed_snapshot_and_code_give_the_same_weights(baseline, tmp_path):
    first, second = train(baseline, tmp_path / "a.pt"), train(baseline, tmp_path / "b.pt")
    assert first.model_digest == second.model_digest
    assert (first.final_policy_loss, first.final_value_loss) == (second.final_policy_loss,
                                                                 second.final_value_loss)
    parent = load_checkpoint_file(baseline)[1]
    assert first.parent_digest == parent.digest != first.model_digest
    net, meta = load_checkpoint_file(tmp_path / "a.pt", expect_game=TTT, expect_arch=NET)
    assert meta.digest == first.model_digest and meta.parent_id == parent.model_id
    assert meta.extra["snapshot_digest"] == snapshot_digest(SNAPSHOT.read_bytes()) == first.snapshot_digest
    assert (first.steps, first.batch_size, first.snapshot_games) == (30, 32, 24)
    assert (first.snapshot_first_seq, first.snapshot_last_seq) == (1, 24) and first.samples > 100
    other = train(baseline, tmp_path / "c.pt", TrainSettings(steps=30, batch_size=32, seed=1))
    assert other.model_digest not in (first.model_digest, parent.digest)


def test_the_trainer_settings_are_the_runs_shortened_by_the_pipelines():
    run = TrainConfig(steps=1000, batch_size=256, lr=0.02, warmup_steps=100, optimizer="adamw")
    short = trainer_settings(run, TrainSettings(steps=40, batch_size=64))
    assert (short.steps, short.batch_size, short.lr, short.warmup_steps, short.optimizer) == (
        40, 64, 0.02, 39, "adamw")
    assert trainer_settings(run, TrainSettings(lr=0.5)).lr == 0.5
    assert load_pipeline_config(ROOT / "config" / "pipeline.yaml").train == TrainSettings()


def _lines() -> list[dict]:
    return [json.loads(line) for line in SNAPSHOT.read_text().splitlines()]


def _write(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def test_bad_snapshots_are_refused_naming_the_file_and_line(tmp_path):
    good = read_snapshot(SNAPSHOT, TTT)
    assert good.games == 24 and good.digest == snapshot_digest(SNAPSHOT.read_bytes())
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(SNAPSHOT.read_bytes()[:3000])
    illegal = _lines()[:3]
    illegal[1]["event"]["moves"][1] = illegal[1]["event"]["moves"][0]  # a square played twice
    events_stream = [{"seq": 1, "event": {"type": "loop.started", "id": "x", "time": 0.0, "run": "snap"}}]
    cases = {
        tmp_path / "missing.jsonl": "No such file or directory",
        empty: "is empty: export a run's games with `jetzero events export --stream GAMES",
        truncated: "line 3: not JSON",
        _write(tmp_path / "illegal.jsonl", illegal): "line 2: invalid game record: ply 1",
        _write(tmp_path / "events.jsonl", events_stream): "holds no game.finished event",
        _write(tmp_path / "bare.jsonl", [{"seq": 1}]): "line 1: not an exported event",
    }
    for path, expected in cases.items():
        with pytest.raises(InvalidSnapshot) as caught:
            read_snapshot(path, TTT)
        assert str(caught.value).startswith(f"snapshot {path}") and expected in str(caught.value), path
        assert "\n" not in str(caught.value)
    with pytest.raises(InvalidSnapshot, match="a tictactoe game, but the validation is of connect4"):
        read_snapshot(SNAPSHOT, get_game("connect4"))


def test_a_crashing_training_is_one_line(baseline, tmp_path):
    with pytest.raises(TrainingFailed) as caught:
        train(baseline, tmp_path / "nan.pt", TrainSettings(steps=5, batch_size=32, lr=1e30))
    assert str(caught.value).startswith("the training process failed (exit 2): training step ")
    assert "loss is nan" in str(caught.value) and not (tmp_path / "nan.pt").exists()
    old = tmp_path / "old-checkout"
    old.mkdir()
    with pytest.raises(TrainingFailed, match="has no handlers.pipeline.train_process: its code predates"):
        train(baseline, tmp_path / "old.pt", repo=old)


def validate(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "pipeline_orchestrator.py"), "--validate",
                           "--no-record", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_exit_2_through_the_script_with_one_line(tmp_path):
    config = tmp_path / "ttt.yaml"
    config.write_text("run: t\ngame: {name: tictactoe}\n"
                      "network: {blocks: 1, channels: 16, value_hidden: 16}\n")
    common = ["--config", str(config), "--junit", str(tmp_path / "junit.xml"), "-q"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    cases = {
        ("--train", "--data", str(empty)):
            f"error: could not run: training the candidate: snapshot {empty} is empty: export a run's games "
            "with `jetzero events export --stream GAMES --run RUN > FILE`",
        ("--train", "--data", str(SNAPSHOT), "--set", "train.lr=1.0e+30"):
            "error: could not run: training the candidate: the training process failed (exit 2): training "
            "step ",
        ("--data", str(SNAPSHOT)): "error: could not run: --data needs --train",
        ("--train", "--data", str(tmp_path / "none.jsonl")):
            f"error: could not run: --data {tmp_path / 'none.jsonl'}: no such file",
        ("--train", "--candidate", str(SNAPSHOT), "--data", str(SNAPSHOT)):
            "error: could not run: --train and --candidate exclude each other",
    }
    for args, expected in cases.items():
        done = validate(*args, *common)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(expected), done.stderr


def test_the_training_is_in_the_events_and_the_summary():
    run = TrainingRun(snapshot="log:main", snapshot_digest="ab" * 32, snapshot_games=24, snapshot_first_seq=1,
                      snapshot_last_seq=24, seed=0, steps=40, batch_size=64, samples=165, policy_loss=2.2,
                      value_loss=0.1, final_policy_loss=2.1, final_value_loss=0.09, seconds=0.1,
                      wall_seconds=2.2, parent_digest="cd" * 32, model_id="tictactoe-0030af6d948f",
                      model_digest="ef" * 32)
    for event in (ValidationRequested.new("r", validation_id="v", training=run),
                  ValidationCompleted.new("r", validation_id="v", verdict="passed", exit_code=0,
                                          training=run)):
        assert codec.decode(codec.encode(event)) == event
    old = {"type": "pipeline.validation_completed", "id": "i", "time": 0.0, "run": "r", "v": 1,
           "validation_id": "v", "verdict": "passed", "exit_code": 0}
    assert codec.decode(msgspec.msgpack.encode(old)).training is None  # type: ignore[union-attr]
    text = markdown_summary("passed", [], training=run)
    assert "### Candidate trained by the PR's training code" in text
    assert "- snapshot `log:main`: 24 games, GAMES #1..#24, sha256 `abababababababab`" in text
    assert "- 40 steps of 64 on 165 positions, seed 0, from the baseline `cdcdcdcdcdcd`" in text
    failed = msgspec.structs.replace(run, status="error", message="snapshot x is empty")
    assert "- **training failed**: snapshot x is empty" in markdown_summary("error", [], training=failed)

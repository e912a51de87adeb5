"""The config in force comes from the log: a loop process started after the files were edited
runs on what ``loop.started`` recorded; the next start records the edit; bad config through
the real entry points is one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from handlers.loop.config import load_in_force, read_in_force
from handlers.loop.process import child_command
from streams import events as ev
from streams import names
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN = "cf1"


def _promotion_file(tmp_path: Path, simulations: int) -> Path:
    text = (REPO / "config" / "promotion.yaml").read_text()
    assert "\nsimulations: 48\n" in text
    path = tmp_path / "promotion.yaml"
    path.write_text(text.replace("\nsimulations: 48\n", f"\nsimulations: {simulations}\n"))
    return path


async def _gates(store) -> list[ev.MatchScheduled]:
    return [s.event async for s in store.read(names.EVENTS)
            if isinstance(s.event, ev.MatchScheduled) and s.event.purpose == "gate"]


async def test_a_child_started_after_the_files_were_edited_keeps_the_recorded_config(
        store, nats_settings, tmp_path):
    promotion = _promotion_file(tmp_path, simulations=7)
    loop_path, _ = write_tiny_loop(nats_settings, tmp_path, RUN,
                                   promotion_config=str(promotion))
    in_force = load_in_force(loop_path)
    await store.append(ev.LoopStarted.new(RUN, by="test", **in_force.started_fields()))

    # both files edited after the start: the gates changed, the loop file no longer even loads
    _promotion_file(tmp_path, simulations=99)
    loop_path.write_text("")

    cmd, env = child_command("evaluator", 0, RUN, nats_settings)
    log_path = tmp_path / "evaluator.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        for model, generation in (("cf1-gen0", 0), ("cf1-gen1", 1)):
            await store.append(ev.CheckpointSaved.new(
                RUN, model_id=model, object_name=names.model_object(model), digest=model,
                generation=generation, game="tictactoe"))

        async def gate():
            assert proc.poll() is None, log_path.read_text()
            return await _gates(store)

        [scheduled] = await until(gate, 60, "the gate match of generation 1")
        assert scheduled.candidate.simulations == 7 and scheduled.opponent.simulations == 7
        assert in_force.promotion_sha256[:12] in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    # the next start records the edited files: that is when an edit takes effect
    write_tiny_loop(nats_settings, tmp_path, RUN, promotion_config=str(promotion))
    second = load_in_force(loop_path)
    seq = await store.append(ev.LoopStarted.new(RUN, by="test", **second.started_fields()))
    now = await read_in_force(store, RUN)
    assert now.seq == seq and now.promotion.simulations == 99
    assert now.promotion_sha256 != in_force.promotion_sha256


async def test_a_child_without_a_recorded_start_or_server_is_one_clear_line(nats_settings, tmp_path):
    cmd, env = child_command("referee", 0, "never-started", nats_settings)
    out = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "no loop.started" in out.stderr and "Traceback" not in out.stderr
    bare = subprocess.run(cmd, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k not in env},
                          capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "JETZERO_NATS" in bare.stderr and "Traceback" not in bare.stderr


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("content", "says"),
    [("", "empty"), ("- a\n- b\n", "must be a mapping"), ('run: "bad.run name"\n', "$.run"),
     ("training: {threshold_positions: -5}\n", "$.training.threshold_positions"),
     ("game: {name: chess}\n", "$.game")],
    ids=["empty", "list", "run-name", "negative-threshold", "unknown-game"],
)
def test_the_loop_script_refuses_a_bad_config_in_one_line(tmp_path, content, says):
    path = tmp_path / "loop.yaml"
    path.write_text(content)
    out = _cli("scripts/unified_ai_loop.py", "--start", "--config", str(path))
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr


def test_an_unwritable_log_dir_and_a_dotted_run_are_one_line(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    path = tmp_path / "loop.yaml"
    path.write_text(f"supervisor: {{log_dir: {blocker / 'logs'}}}\nnats: {{port: 4999}}\n")
    out = _cli("-m", "scripts.cli", "loop", "start", "--config", str(path))
    assert out.returncode == 2 and "supervisor.log_dir" in out.stderr and "Traceback" not in out.stderr
    out = _cli("-m", "scripts.cli", "events", "tail", "--run", "a.b", "--config", str(path))
    assert out.returncode == 2 and "$.run" in out.stderr and "Traceback" not in out.stderr


async def test_status_shows_the_config_in_force_not_the_edited_file(store, nats_settings, tmp_path):
    promotion = _promotion_file(tmp_path, simulations=7)
    loop_path, _ = write_tiny_loop(nats_settings, tmp_path, RUN, promotion_config=str(promotion))
    in_force = load_in_force(loop_path)
    seq = await store.append(ev.LoopStarted.new(RUN, by="test", **in_force.started_fields()))
    write_tiny_loop(nats_settings, tmp_path, RUN, promotion_config=str(promotion),
                    curriculum=[{"name": "edited", "simulations": 33}],
                    training={"threshold_positions": 777})
    out = _cli("-m", "scripts.cli", "loop", "status", "--json", "--config", str(loop_path))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["config_in_force"]["seq"] == seq
    assert report["config_in_force"]["config_sha256"] == in_force.loop_sha256
    assert report["curriculum"]["stage"] == "main" and report["curriculum"]["simulations"] == 16
    assert report["pool"]["next_training_at"] == 300
    text = _cli("-m", "scripts.cli", "loop", "status", "--config", str(loop_path)).stdout
    assert f"config in force: loop.started #{seq}" in text and in_force.loop_sha256[:12] in text

"""Progress bars (``scripts.progress``): drawn at a terminal, absent when stdout is not one,
and ``bench connect4 --record`` records its grades as ``model.graded``."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from streams import events as ev
from streams import names
from tests.loop_configs import nats_section

pytestmark = pytest.mark.integration
BENCH = ["bench", "connect4", "--model", "random", "--limit", "100", "--reference-rollouts", "5"]


def jetzero(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.cli", *args], capture_output=True, text=True,
                          timeout=120)


def at_a_terminal(*args: str) -> tuple[int, str]:
    """Run ``jetzero ARGS`` with stdin, stdout and stderr on a pseudo-terminal: exit code, output."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", *args], stdin=follower, stdout=follower,
                            stderr=follower, env=env, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: every holder of the terminal's other end has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_no_progress_when_stdout_is_not_a_terminal():
    out = jetzero(*BENCH)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert json.loads(out.stdout.splitlines()[-1])["positions"] == 100


def test_progress_bars_at_a_terminal_and_quiet_silences_them():
    code, shown = at_a_terminal(*BENCH)
    assert code == 0, shown
    assert "pure-mcts-5 positions" in shown and "100/100" in shown
    code, quiet = at_a_terminal(*BENCH, "--quiet")
    assert code == 0, quiet
    assert "pure-mcts-5 positions" not in quiet and "100/100" not in quiet


async def test_bench_record_appends_model_graded(store, tmp_path, nats_settings):
    config = tmp_path / "loop.yaml"
    config.write_text(f"run: g1\nnats: {json.dumps(nats_section(nats_settings))}\n")
    out = jetzero(*BENCH, "--record", "--config", str(config))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-2])
    graded = [s async for s in store.read(names.EVENTS) if isinstance(s.event, ev.ModelGraded)]
    assert len(graded) == 1 and f"recorded model.graded #{graded[0].seq} in run g1" in out.stdout
    event = graded[0].event
    assert event.run == "g1" and event.model_id == "random"
    assert {g.player: g.reference for g in event.grades} == {"random": True, "pure-mcts-5": True}
    for grade in event.grades:
        overall = summary["reports"][grade.player]["overall"]
        assert (grade.positions, grade.outcome_optimal) == (overall["count"], overall["outcome_optimal"])


async def test_events_replay_and_export_show_progress_only_at_a_terminal(store, tmp_path, nats_settings):
    config = tmp_path / "loop.yaml"
    config.write_text(f"run: e1\nnats: {json.dumps(nats_section(nats_settings))}\n")
    await store.append_many([ev.LoopHalted.new("e1", reason=f"r{i}") for i in range(2500)])
    replay = ["events", "replay", "-p", "loop_status", "--config", str(config)]
    code, shown = at_a_terminal(*replay)
    assert code == 0, shown
    assert "replay EVENTS" in shown and "2500/2500" in shown
    plain = jetzero(*replay)
    assert plain.returncode == 0 and plain.stderr == "" and "replay EVENTS" not in plain.stdout
    export = jetzero("events", "export", "--run", "e1", "--config", str(config))
    assert export.returncode == 0 and export.stderr == ""
    assert [json.loads(line)["seq"] for line in export.stdout.splitlines()] == list(range(1, 2501))

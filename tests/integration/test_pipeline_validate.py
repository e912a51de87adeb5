"""The pipeline end to end, through the real script (``scripts/pipeline_orchestrator.py`` in a
subprocess) on a throw-away git repository holding this working tree: an equal candidate passes
the non-regression match, a search patched to play random moves fails it, a search patched to
sleep fails speed, models of another game or architecture and bad base refs exit 2 with one line,
the base worktree is removed after Ctrl-C and SIGTERM, and the events land in a real log where
``jetzero pipeline history`` lists them. Tiny nets and few simulations keep each run to seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import torch
from junitparser import Failure, JUnitXml

from engine.games import get_game
from engine.network import NetworkConfig, build_network
from tests.loop_configs import nats_section
from tests.pipeline_support import (
    C4,
    RANDOM_MOVE_PATCH,
    SLEEP_PATCH,
    TINY,
    clone,
    git,
    make_repo,
    patch,
    save,
    trained_net,
)

pytestmark = pytest.mark.integration

SCRIPT = "scripts/pipeline_orchestrator.py"
ONLY_MATCH = ["--set", "quality.enabled=false", "--set", "strength.enabled=false",
              "--set", "speed.enabled=false", "--set", "match.simulations=8"]


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("seed"))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return save(trained_net(), tmp_path_factory.mktemp("models") / "baseline.pt")


@pytest.fixture
def pr(seed, tmp_path) -> Path:
    return clone(seed, tmp_path / "pr")


def validate(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240):
    """The script's exit code, stdout and stderr (``--no-record`` unless a config is given)."""
    record = [] if "--config" in args else ["--no-record"]
    return subprocess.run([sys.executable, SCRIPT, "--validate", *record, *args], cwd=repo,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def worktrees(repo: Path) -> list[str]:
    return [line.split()[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def cases(junit: Path) -> dict:
    return {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}


def test_an_equal_candidate_passes_non_regression_and_the_reports_say_so(pr, baseline, tmp_path):
    summary, junit = tmp_path / "summary.md", tmp_path / "junit.xml"
    done = validate(pr, "--pr", "12", "--base", "main", "--baseline-model", str(baseline),
                    "--junit", str(junit), "--set", "quality.positions=60", "--set", "strength.positions=60",
                    "--set", "strength.simulations=8", "--set", "match.simulations=8",
                    "--set", "speed.rounds=2", "--set", "speed.seconds=0.3", "--set", "speed.tolerance=0.5",
                    env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("PASSED: all gates passed")
    found = cases(junit)
    assert list(found) == ["quality", "strength", "match", "speed"]
    assert all(case.is_passed for case in found.values())
    assert "no regression" in found["match"].system_out and "penta_dd=" in found["match"].system_out
    text = summary.read_text()
    assert "## jetzero pipeline: PR #12 ✅ passed" in text
    assert "| match | ✅ passed | no regression: LLR +" in text
    assert "pentanomial [LL, LD, WL+DD, WD, WW] = [0, 0, " in text  # equal engines: every pair WL or DD
    assert "evaluations/s ratio **" in text
    assert worktrees(pr) == [str(pr)]


def test_a_search_patched_to_play_random_moves_fails_the_match(pr, baseline, tmp_path):
    patch(pr, "engine/mcts.py", RANDOM_MOVE_PATCH)
    junit = tmp_path / "junit.xml"
    done = validate(pr, "--base", "main", "--baseline-model", str(baseline), "--junit", str(junit),
                    *ONLY_MATCH)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("FAILED: failed gate(s): match: regression: the SPRT rejected the candidate")
    failure = cases(junit)["match"].result[0]
    assert isinstance(failure, Failure) and "llr=" in failure.message
    figures = dict(part.split("=") for part in failure.message.rsplit("[", 1)[1].rstrip("]").split(", "))
    assert float(figures["llr"]) <= float(figures["lower"])
    assert float(figures["penta_ll"]) > float(figures["penta_ww"])
    assert "## jetzero pipeline: this change ❌ failed" in done.stdout  # no GITHUB_STEP_SUMMARY: stdout
    assert worktrees(pr) == [str(pr)]


def test_a_search_patched_to_sleep_fails_speed(pr, baseline, tmp_path):
    patch(pr, "engine/mcts.py", SLEEP_PATCH)
    junit = tmp_path / "junit.xml"
    done = validate(pr, "--base", "main", "--baseline-model", str(baseline), "--junit", str(junit),
                    "--set", "quality.enabled=false", "--set", "strength.enabled=false",
                    "--set", "match.enabled=false", "--set", "speed.rounds=3", "--set", "speed.seconds=0.4")
    assert done.returncode == 1, done.stderr
    assert "speed: slower than the base beyond the tolerance" in done.stderr
    failure = cases(junit)["speed"].result[0]
    assert isinstance(failure, Failure) and "evals_ratio=" in failure.message


@pytest.mark.parametrize("kind", ["game", "architecture"])
def test_a_model_of_another_game_or_architecture_cannot_run(pr, baseline, tmp_path, kind):
    if kind == "game":
        other = save(build_network(get_game("tictactoe"), TINY), tmp_path / "ttt.pt", get_game("tictactoe"))
        expected = "is for tictactoe, not connect4"
    else:
        other = save(build_network(C4, NetworkConfig(blocks=2, channels=8)), tmp_path / "arch.pt")
        expected = "has architecture"
    junit = tmp_path / "junit.xml"
    done = validate(pr, "--base", "main", "--baseline-model", str(baseline), "--candidate", str(other),
                    "--junit", str(junit))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not run: candidate model {other}") and expected in last
    assert not cases(junit)["setup"].is_passed


def test_bad_base_refs_and_files_cannot_run(pr, baseline):
    done = validate(pr, "--base", "no-such-branch", "--baseline-model", str(baseline), *ONLY_MATCH)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: could not run: base ref 'no-such-branch' names no commit in {pr}")
    git(pr, "rm", "-q", "handlers/pipeline/engine_process.py")
    git(pr, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "before the engine")
    git(pr, "checkout", "-q", "HEAD~1", "--", "handlers/pipeline/engine_process.py")
    done = validate(pr, "--base", "HEAD", "--baseline-model", str(baseline), *ONLY_MATCH)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not run: base ref HEAD: the base checkout") and "predates" in last
    assert worktrees(pr) == [str(pr)]
    done = validate(pr, "--candidate", "/no/such/model.pt")
    assert (done.returncode, done.stderr.strip()) == (
        2, "error: could not run: --candidate /no/such/model.pt: no such file")


def _pids_in(folder: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "cwd").startswith(folder):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def _until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_base_worktree_and_engines_are_gone_after_ctrl_c_or_sigterm(pr, baseline, signum):
    proc = subprocess.Popen([sys.executable, SCRIPT, "--validate", "--no-record", "--base", "main",
                             "--baseline-model", str(baseline), "--set", "quality.enabled=false",
                             "--set", "strength.enabled=false", "--set", "match.simulations=400"],
                            cwd=pr, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tree = _until(lambda: next((w for w in worktrees(pr) if w != str(pr)), None), 60, "the worktree")
        engine = _until(lambda: _pids_in(tree), 60, "the base engine process")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; the base worktree and the engines are cleaned up" in err
    assert worktrees(pr) == [str(pr)] and not Path(tree).exists()
    assert not any(Path(f"/proc/{pid}").exists() for pid in engine)


def test_validations_are_recorded_and_listed_by_history(pr, nats_settings, tmp_path):
    config = tmp_path / "loop.yaml"
    config.write_text(f"run: ci\ngame: {{name: connect4}}\nnats: {json.dumps(nats_section(nats_settings))}\n"
                      f"network: {msgspec.json.encode(TINY).decode()}\n")
    done = validate(pr, "--pr", "31", "--config", str(config), "--set", "strength.enabled=false",
                    "--set", "match.enabled=false", "--set", "speed.enabled=false",
                    "--set", "quality.positions=40")
    assert done.returncode == 0, done.stderr
    assert "baseline model: a fresh 1x16 net" in done.stderr  # no champion in run ci's log
    listed = subprocess.run([sys.executable, "-m", "scripts.cli", "pipeline", "history",
                             "--config", str(config), "--json"], cwd=pr, capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["pr"], r["verdict"], r["exit_code"]) for r in rows] == [(31, "passed", 0)]
    assert [g["gate"] for g in rows[0]["gates"]] == ["quality"]
    assert rows[0]["gates"][0]["figures"]["positions"] == 40
    assert rows[0]["candidate_model"] == rows[0]["baseline_model"] != ""

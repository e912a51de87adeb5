"""``validate --train`` end to end on a real nats-server: a tiny tic-tac-toe run records its games
(``jetzero selfplay``), the pipeline exports them from the log, trains the candidate with this
checkout's training code from the run's champion, and validates it; a snapshot exported by hand
with ``jetzero events export`` and passed as ``--data`` trains the very same weights. The
events in the log carry the training (snapshot digest and range, steps, losses, seconds, the
candidate's digest, not the baseline's), and so does the markdown summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys

import pytest

from streams import names
from streams.pipeline_events import ValidationCompleted, ValidationRequested
from tests.loop_configs import write_tiny_loop
from tests.pipeline_support import ROOT

pytestmark = pytest.mark.integration

TINY_TRAIN = ["--set", "strength.enabled=false", "--set", "match.enabled=false",
              "--set", "speed.enabled=false", "--set", "quality.positions=60",
              "--set", "train.steps=25", "--set", "train.batch_size=32"]


def jetzero(*args: str, env: dict[str, str] | None = None,
            stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.cli", *args], cwd=ROOT, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=180, env={**os.environ, **(env or {})})


async def pipeline_events(store, run: str) -> list:
    subjects = names.aggregate_filter(names.EVENTS, run, names.AGG_PIPELINE)
    return [item.event async for item in store.read(names.EVENTS, subject_filter=subjects)]


async def test_validate_train_trains_the_candidate_from_a_runs_games(nats_settings, store, tmp_path):
    config, _ = write_tiny_loop(nats_settings, tmp_path, run="ci")
    played = await asyncio.to_thread(jetzero, "selfplay", "--games", "16", "--config", str(config))
    assert played.returncode == 0, played.stderr

    summary = tmp_path / "summary.md"
    from_log = await asyncio.to_thread(
        jetzero, "pipeline", "validate", "--pr", "7", "--train", "--config", str(config),
        "--junit", str(tmp_path / "junit.xml"), *TINY_TRAIN, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert from_log.returncode == 0, from_log.stderr
    assert "baseline model: the run's champion from the log" in from_log.stderr
    assert "training the candidate: 25 steps of 32 (seed 0) on 16 games of log:ci" in from_log.stderr

    snapshot = tmp_path / "games.jsonl"
    with open(snapshot, "w") as out:
        exported = await asyncio.to_thread(jetzero, "events", "export", "--stream", "GAMES", "--run", "ci",
                                           "--config", str(config), "--quiet", stdout=out)
    assert exported.returncode == 0, exported.stderr
    from_file = await asyncio.to_thread(
        jetzero, "pipeline", "validate", "--pr", "8", "--train", "--data", str(snapshot), "--config",
        str(config), "--junit", str(tmp_path / "junit2.xml"), *TINY_TRAIN)
    assert from_file.returncode == 0, from_file.stderr

    events = await pipeline_events(store, "ci")
    requested = [e for e in events if isinstance(e, ValidationRequested)]
    completed = [e for e in events if isinstance(e, ValidationCompleted)]
    assert [e.pr for e in requested] == [7, 8] and [(e.pr, e.verdict) for e in completed] == [
        (7, "passed"), (8, "passed")]
    digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    for event in requested:
        run = event.training
        assert run is not None and run.status == "trained"
        assert event.candidate_digest == run.model_digest != event.baseline_digest == run.parent_digest
        assert event.baseline_model == "ci-gen0"  # the champion
        assert (run.steps, run.batch_size, run.seed, run.snapshot_games) == (25, 32, 0, 16)
        assert run.snapshot_digest == digest and (run.snapshot_first_seq, run.snapshot_last_seq) == (1, 16)
        assert run.samples > 0 and run.seconds > 0 and run.wall_seconds >= run.seconds
        assert 0 < run.final_policy_loss < 3 and 0 <= run.final_value_loss < 2
        assert event.settings["train"]["steps"] == 25
    assert [r.training.snapshot for r in requested] == ["log:ci", str(snapshot)]  # type: ignore[union-attr]
    # one snapshot, one seed, one code: the same weights, whichever way the snapshot came
    assert requested[0].training.model_digest == requested[1].training.model_digest  # type: ignore[union-attr]
    assert [e.training for e in completed] == [e.training for e in requested]
    text = summary.read_text()
    assert "## jetzero pipeline: PR #7 ✅ passed" in text
    assert f"- snapshot `log:ci`: 16 games, GAMES #1..#16, sha256 `{digest[:16]}`" in text
    assert "- 25 steps of 32 on " in text and "seed 0, from the baseline" in text

"""Training the candidate for a validation (``--train``): the PR's training code, as a subprocess.

``train_candidate`` checks the data snapshot here first (``read_snapshot``: an empty or corrupt
one is refused before anything starts), then runs ``python -m handlers.pipeline.train_process``
in the PR's checkout (that checkout's code on ``PYTHONPATH``, like the engines), hands it the
job on stdin, and waits at most ``train.timeout_s``. The trainer's settings are the run's
(``training.train`` of the loop config) with the pipeline's ``train:`` steps, batch size and,
when set, learning rate. The checkpoint the process writes is the candidate; the returned
``TrainingRun`` has the snapshot, the seed, the losses, the seconds and both digests.
Everything that goes wrong raises ``TrainingFailed`` with one line (the process's own
``error:`` line, or the last line of its traceback): the validation exits 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from engine.games.base import Game
from engine.settings import TrainConfig
from handlers.pipeline.config import TrainSettings
from handlers.pipeline.snapshot import InvalidSnapshot, Snapshot, read_snapshot
from handlers.pipeline.train_process import TrainFigures, TrainJob
from streams.errors import JetzeroError
from streams.pipeline_events import TrainingRun
from streams.server import die_with_parent

__all__ = ["MODULE", "TrainingFailed", "check_snapshot", "train_candidate", "trainer_settings"]

MODULE = "handlers.pipeline.train_process"


class TrainingFailed(JetzeroError):
    """The candidate could not be trained (bad snapshot, crashed or diverged training): exit 2."""


def trainer_settings(run_train: TrainConfig, settings: TrainSettings) -> TrainConfig:
    """The run's trainer settings, shortened to the pipeline's steps and batch size."""
    lr = settings.lr or run_train.lr
    return msgspec.structs.replace(run_train, steps=settings.steps, batch_size=settings.batch_size, lr=lr,
                                   warmup_steps=min(run_train.warmup_steps, settings.steps - 1))


def check_snapshot(path: str | Path, game: Game) -> Snapshot:
    """The snapshot at ``path``, or ``TrainingFailed`` saying what is wrong with it."""
    try:
        return read_snapshot(path, game)
    except InvalidSnapshot as exc:
        raise TrainingFailed(str(exc)) from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run_process(root: Path, job: TrainJob, threads: int, timeout: float) -> tuple[TrainFigures, float]:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:
        try:
            done = subprocess.run([sys.executable, "-m", MODULE], cwd=root, env=env,
                                  input=msgspec.json.encode(job), stdout=subprocess.PIPE, stderr=err,
                                  timeout=timeout, start_new_session=True, preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            raise TrainingFailed(f"the training ran past train.timeout_s ({timeout:g} s)") from None
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - start
    if done.returncode != 0:
        line = _last_line(stderr).removeprefix("error: ") or f"exit code {done.returncode}, no output"
        raise TrainingFailed(f"the training process failed (exit {done.returncode}): {line}")
    try:
        return msgspec.json.decode(_last_line(done.stdout.decode()), type=TrainFigures), wall
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise TrainingFailed(f"the training process wrote no figures: {exc}") from None


def train_candidate(*, repo: str | Path, snapshot: Snapshot, baseline: str | Path, out: str | Path,
                    game: Game, game_params: dict[str, int], train: TrainConfig, settings: TrainSettings,
                    threads: int = 1, label: str = "") -> TrainingRun:
    """Train the candidate into ``out`` with the code of ``repo`` (see the module docstring)."""
    root = Path(repo).resolve()
    if not (root / (MODULE.replace(".", "/") + ".py")).is_file():
        raise TrainingFailed(f"the candidate checkout ({root}) has no {MODULE}: its code predates the "
                             f"pipeline's training, so the pipeline cannot train with it")
    job = TrainJob(snapshot=str(Path(snapshot.path).resolve()), model=str(Path(baseline).resolve()),
                   out=str(Path(out).resolve()), game=game.name, game_params=dict(game_params),
                   train=msgspec.to_builtins(trainer_settings(train, settings)), seed=settings.seed,
                   threads=threads, augment=settings.augment)
    figures, wall = _run_process(root, job, threads, settings.timeout_s)
    return TrainingRun(
        snapshot=label or snapshot.path, snapshot_digest=figures.snapshot_digest,
        snapshot_games=figures.games, snapshot_first_seq=figures.snapshot_first_seq,
        snapshot_last_seq=figures.snapshot_last_seq, seed=settings.seed, steps=figures.steps,
        batch_size=figures.batch_size, samples=figures.samples, policy_loss=figures.policy_loss,
        value_loss=figures.value_loss, final_policy_loss=figures.final_policy_loss,
        final_value_loss=figures.final_value_loss, seconds=figures.seconds, wall_seconds=wall,
        parent_digest=figures.parent_digest, model_id=figures.model_id, model_digest=figures.model_digest)

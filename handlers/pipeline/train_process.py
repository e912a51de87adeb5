"""The training process: the PR's training code trains a candidate for a validation.

    python -m handlers.pipeline.train_process        (from the root of a checkout; a job on stdin)

The job (one JSON object, ``TrainJob``) names the data snapshot, the model to start from, the
file to write, the game, the trainer's settings and the seed. The process runs that checkout's
own code: the snapshot's games become samples (``engine.samples``), the trainer's step function
(``engine.train.TrainSession``, the one the loop's trainer runs) trains the starting net on
the CPU from the seed (torch seeded, deterministic algorithms, the given threads), and the
checkpoint (weights-only format, digest) is written atomically. Its last stdout line is the
figures (``TrainFigures`` as JSON). A job it cannot do (a bad snapshot or model, a diverged
loss) is one ``error: ...`` line on stderr and exit 2; any other failure is a traceback, exit 1.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import msgspec

__all__ = ["TrainFigures", "TrainJob", "main", "train"]

EXIT_CANNOT = 2


class TrainJob(msgspec.Struct, frozen=True, kw_only=True):
    snapshot: str  # a snapshot file (handlers.pipeline.snapshot)
    model: str  # the checkpoint to start from (the baseline's)
    out: str  # where the trained checkpoint goes
    game: str
    game_params: dict[str, int] = {}
    train: dict[str, Any] = {}  # engine.settings.TrainConfig as plain data (steps, batch size, ...)
    seed: int = 0
    threads: int = 1
    augment: bool = True


class TrainFigures(msgspec.Struct, frozen=True, kw_only=True):
    steps: int
    batch_size: int
    samples: int
    games: int
    snapshot_digest: str
    snapshot_first_seq: int
    snapshot_last_seq: int
    policy_loss: float
    value_loss: float
    final_policy_loss: float
    final_value_loss: float
    seconds: float
    parent_digest: str
    model_id: str
    model_digest: str


def _seed_everything(seed: int, threads: int) -> None:
    import torch

    from engine.network import set_torch_threads

    set_torch_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def train(job: TrainJob) -> TrainFigures:
    """Run ``job`` (see the module docstring); the figures of the run."""
    import numpy as np

    from engine.checkpoint import load_checkpoint_file, make_meta, save_checkpoint_file
    from engine.games import get_game
    from engine.samples import samples_from_records
    from engine.settings import TrainConfig
    from engine.train import TrainSession
    from handlers.pipeline.snapshot import read_snapshot

    _seed_everything(job.seed, job.threads)
    game = get_game(job.game, **job.game_params)
    snapshot = read_snapshot(job.snapshot, game)
    samples = samples_from_records(game, snapshot.records)
    if len(samples) == 0:
        raise ValueError(f"snapshot {job.snapshot}: its {snapshot.games} games hold no searched move")
    cfg = msgspec.convert(job.train, TrainConfig)
    net, parent = load_checkpoint_file(job.model, expect_game=game)
    start = time.perf_counter()
    session = TrainSession(net, samples, cfg, np.random.default_rng(job.seed), game=game,
                           augment=job.augment, device="cpu")
    report = session.run()
    seconds = time.perf_counter() - start
    meta = make_meta(net, game=game, game_params=job.game_params, parent_id=parent.model_id,
                     step=parent.step + report.steps, generation=parent.generation + 1, created=0.0,
                     extra={"source": "pipeline training", "snapshot_digest": snapshot.digest,
                            "seed": job.seed, "train": msgspec.to_builtins(cfg)})
    save_checkpoint_file(job.out, net, meta)
    return TrainFigures(
        steps=report.steps, batch_size=session.batch, samples=len(samples), games=snapshot.games,
        snapshot_digest=snapshot.digest, snapshot_first_seq=snapshot.first_seq,
        snapshot_last_seq=snapshot.last_seq, policy_loss=report.policy_loss,
        value_loss=report.value_loss, final_policy_loss=report.final_policy_loss,
        final_value_loss=report.final_value_loss, seconds=seconds, parent_digest=parent.digest,
        model_id=meta.model_id, model_digest=meta.digest)


def main() -> int:
    from engine.errors import CheckpointError, TrainingDiverged
    from streams.errors import JetzeroError

    try:
        job = msgspec.json.decode(sys.stdin.buffer.read(), type=TrainJob)
        figures = train(job)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, CheckpointError, TrainingDiverged,
            JetzeroError, OSError) as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        return EXIT_CANNOT
    sys.stdout.write(msgspec.json.encode(figures).decode() + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

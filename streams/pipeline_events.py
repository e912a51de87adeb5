"""Events of the CI pipeline surface (``handlers/pipeline``) on the ``EVENTS`` stream.

A validation of a pull request is one ``pipeline.validation_requested`` (what is compared:
PR, base ref and commit, candidate and baseline models, the gates and settings) and one
``pipeline.validation_completed`` (the verdict, the exit code, and every gate with its
figures), both on the pipeline aggregate and correlated by ``validation_id``. When the pipeline
trained the candidate itself (``--train``), both carry ``training``: the data snapshot (its
digest and GAMES range), the seed and sizes, and the run's figures (losses, seconds, the digest
of the model it wrote). New fields get defaults; types never change.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams import names
from streams.envelope import Event


class GateOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One gate of a validation: ``status`` passed | failed | error | skipped, ``message`` the
    readable reason, ``figures`` every number behind it."""

    gate: str
    status: str
    message: str = ""
    figures: dict[str, float] = {}
    seconds: float = 0.0


class TrainingRun(msgspec.Struct, frozen=True, kw_only=True):
    """The candidate the pipeline trained: a short run of the PR's training code from ``seed`` on
    a data snapshot (game.finished events exported from a run's log), starting from the
    baseline's weights. ``status`` trained | error (then ``message`` says why)."""

    status: str = "trained"
    message: str = ""
    snapshot: str = ""  # the file, or "log:<run>" when exported from the log for this validation
    snapshot_digest: str = ""  # sha256 of the snapshot file's bytes
    snapshot_games: int = 0
    snapshot_first_seq: int = 0  # the GAMES sequences the snapshot covers
    snapshot_last_seq: int = 0
    seed: int = 0
    steps: int = 0
    batch_size: int = 0
    samples: int = 0  # training positions in the snapshot
    policy_loss: float = 0.0  # means over the run
    value_loss: float = 0.0
    final_policy_loss: float = 0.0  # the last step's
    final_value_loss: float = 0.0
    seconds: float = 0.0  # the training itself (the child process's clock)
    wall_seconds: float = 0.0  # the whole subprocess: start, load, train, save
    parent_digest: str = ""  # the baseline's weights it started from
    model_id: str = ""
    model_digest: str = ""  # the trained candidate's weights


class _Pipeline(Event, frozen=True, kw_only=True):
    validation_id: str
    pr: int = 0

    def aggregate(self) -> str:
        return names.AGG_PIPELINE


class ValidationRequested(_Pipeline, frozen=True, kw_only=True, tag="pipeline.validation_requested"):
    base_ref: str = ""
    base_commit: str = ""
    head_commit: str = ""
    candidate_model: str = ""
    candidate_digest: str = ""
    baseline_model: str = ""
    baseline_digest: str = ""
    gates: list[str] = []
    settings: dict[str, Any] = {}  # the pipeline config in force, whole
    host: str = ""
    training: TrainingRun | None = None  # the candidate the pipeline trained (--train)


class ValidationCompleted(_Pipeline, frozen=True, kw_only=True, tag="pipeline.validation_completed"):
    verdict: str  # passed | failed | error
    exit_code: int
    reason: str = ""
    gates: list[GateOutcome] = []
    seconds: float = 0.0
    base_commit: str = ""
    head_commit: str = ""
    training: TrainingRun | None = None  # as in the request; also when the training failed


PipelineEvent = ValidationRequested | ValidationCompleted

"""Events of the CI pipeline surface (``handlers/pipeline``) on the ``EVENTS`` stream.

A validation of a pull request is one ``pipeline.validation_requested`` (what is compared:
PR, base ref and commit, candidate and baseline models, the gates and settings) and one
``pipeline.validation_completed`` (the verdict, the exit code, and every gate with its
figures), both on the pipeline aggregate and correlated by ``validation_id``. When the pipeline
trained the candidate itself (``--train``), both carry ``training``: the data snapshot (its
digest and GAMES range), the seed and sizes, and the run's figures (losses, seconds, the digest
of the model it wrote). New fields get defaults; types never change.

A match played over WORK (``handlers.pipeline.remote``) adds, on the validation's own aggregate
(``names.pipeline_validation_aggregate``): one ``pipeline.pair_played`` per pair, whoever played
it (an eval agent, or the pipeline itself for a unit nobody took in time), its id derived from
the validation and the pair index so a pair played twice is stored once; and one
``pipeline.match_decided`` once the SPRT decides (agents skip the units still queued). The units
are ``work.pipeline_unit`` items on WORK: a few pairs each, and both sides' code and model as
object-store names and digests (``CodeVersion``).
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    played_by: dict[str, int] = {}  # match pairs counted, by who played them (agents, ``local:<host>``)


class CodeVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One side of a match over WORK: its code (a tar.gz of the checkout's files) and its model,
    each an object in ``names.OBJ_MODELS`` named by its sha256."""

    label: str  # candidate | base
    commit: str = ""  # what the code is (HEAD, ``+dirty`` for a working tree with changes)
    code_object: str
    code_digest: str
    model_object: str
    model_digest: str


class UnitPair(msgspec.Struct, frozen=True, kw_only=True):
    """One pair of a unit: the pair's index in the match, its opening, which game id gets the
    candidate first (``flip``: as the local match draws it; no effect on play)."""

    pair_index: int
    opening: list[int] = []
    flip: bool = False


class PipelineMatchUnit(Event, frozen=True, kw_only=True, tag="work.pipeline_unit"):
    """A few pairs of a validation's non-regression match, for any pipeline match player."""

    validation_id: str
    unit_id: int
    game: str
    game_params: dict[str, int] = {}
    candidate: CodeVersion
    base: CodeVersion
    simulations: int
    threads: int = 1
    seed: int = 0
    move_timeout_s: float = 120.0
    pairs: list[UnitPair] = []

    STREAM: ClassVar[str] = names.WORK

    def aggregate(self) -> str:
        return names.AGG_PIPELINE


class _ValidationMatch(Event, frozen=True, kw_only=True):
    validation_id: str

    def aggregate(self) -> str:
        return names.pipeline_validation_aggregate(self.validation_id)


class PipelinePairPlayed(_ValidationMatch, frozen=True, kw_only=True, tag="pipeline.pair_played"):
    """One pair's result: ``pentanomial`` index 0..4 (LL, LD, WL+DD, WD, WW, the candidate's),
    or -1 when it was not played (``illegal``: a move an engine played that the rules refuse;
    ``error``: the player could not play it, so the pipeline plays it itself)."""

    unit_id: int
    pair_index: int
    pentanomial: int = -1
    games: list[list[int]] = []  # the two games' moves, candidate first in the first
    outcomes: list[int] = []
    worker: str = ""  # who played it: an agent's pipeline player, or ``local:<host>``
    illegal: str = ""
    error: str = ""


class PipelineMatchDecided(_ValidationMatch, frozen=True, kw_only=True, tag="pipeline.match_decided"):
    """The match's SPRT decided (or its cap was reached): units still queued are not played."""

    verdict: str
    pairs: int = 0
    pentanomial: list[int] = []


PipelineEvent = (ValidationRequested | ValidationCompleted | PipelineMatchUnit | PipelinePairPlayed
                 | PipelineMatchDecided)

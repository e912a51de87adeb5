"""Events of the ``EVENTS`` stream: the control log of a run, kept forever.

Loop life cycle, pool, training, models, matches, promotion, health, nodes, command
outcomes and rejected (poison) input. New fields get defaults; types never change.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streams import names
from streams.envelope import Event


class _Loop(Event, frozen=True, kw_only=True):
    by: str = ""
    reason: str = ""

    def aggregate(self) -> str:
        return names.AGG_LOOP


class LoopStarted(_Loop, frozen=True, kw_only=True, tag="loop.started"):
    """A start, with the config in force: every process of this start runs on what it records."""

    config: dict[str, Any] = {}  # the loop config, whole
    host: str = ""
    promotion: dict[str, Any] = {}  # the promotion config, whole
    config_path: str = ""
    config_sha256: str = ""  # sha256 of the loop config file's bytes
    promotion_path: str = ""
    promotion_sha256: str = ""
    # what this start's machine made of the config: cores, GPUs, the sizes (workers, torch
    # threads) and the devices (cpu / cuda:N) chosen for each role
    resolved: dict[str, Any] = {}


class LoopHalted(_Loop, frozen=True, kw_only=True, tag="loop.halted"):
    automatic: bool = False


class LoopResumed(_Loop, frozen=True, kw_only=True, tag="loop.resumed"):
    pass


class LoopStopRequested(_Loop, frozen=True, kw_only=True, tag="loop.stop_requested"):
    pass


class LoopStopped(_Loop, frozen=True, kw_only=True, tag="loop.stopped"):
    pass


class ProcessRestarted(_Loop, frozen=True, kw_only=True, tag="process.restarted"):
    process: str
    exit_code: int | None = None
    restarts: int = 1
    backoff_s: float = 0.0


class PoolBatchSynced(Event, frozen=True, kw_only=True, tag="pool.batch_synced"):
    shard_id: str
    object_name: str
    digest: str
    games: int
    positions: int
    games_first_seq: int
    games_last_seq: int
    models: list[str] = []
    stages: list[str] = []
    fence: int = 0  # the singleton role's lease revision when emitted (0: not fenced)

    def aggregate(self) -> str:
        return names.AGG_POOL


class TrainingStarted(Event, frozen=True, kw_only=True, tag="training.started"):
    trainer: str
    parent_model: str
    shards: list[str]
    window_positions: int
    samples_planned: int
    fence: int = 0  # the singleton role's lease revision when emitted (0: not fenced)

    def aggregate(self) -> str:
        return "training"


class CheckpointSaved(Event, frozen=True, kw_only=True, tag="checkpoint.saved"):
    model_id: str
    object_name: str
    digest: str
    parent_model: str = ""
    generation: int = 0
    step: int = 0
    game: str = ""
    architecture: dict[str, Any] = {}
    policy_loss: float = 0.0
    value_loss: float = 0.0
    policy_entropy: float = 0.0
    samples_trained: int = 0
    source: str = "trainer"
    fence: int = 0  # the singleton role's lease revision when emitted (0: not fenced)

    def aggregate(self) -> str:
        return "models"


class SprtParams(msgspec.Struct, frozen=True, kw_only=True):
    elo0: float = 0.0
    elo1: float = 10.0
    alpha: float = 0.05
    beta: float = 0.05
    model: str = "logistic"


class PlayerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Who plays: a model id with search settings, or a reference player."""

    kind: str  # "model" | "random" | "pure_mcts"
    model_id: str = ""
    simulations: int = 0

    @property
    def label(self) -> str:
        return self.model_id if self.kind == "model" else f"{self.kind}:{self.simulations}"


class _Match(Event, frozen=True, kw_only=True):
    match_id: str

    def aggregate(self) -> str:
        return f"match-{self.match_id}"


class MatchScheduled(_Match, frozen=True, kw_only=True, tag="match.scheduled"):
    candidate: PlayerSpec
    opponent: PlayerSpec
    purpose: str = "gate"  # gate | regression | reference | watch
    max_pairs: int = 100
    pairs_per_unit: int = 2
    openings: int = 0
    sprt: SprtParams = SprtParams()
    set_size: int = 0  # matches scheduled together for this candidate (0: unknown)
    fence: int = 0  # the singleton role's lease revision when emitted (0: not fenced)


class MatchPairPlayed(_Match, frozen=True, kw_only=True, tag="match.pair_played"):
    unit_id: str
    pair_index: int
    opening: list[int]
    pentanomial: int  # 0 LL, 1 LD, 2 WL/DD, 3 WD, 4 WW from the candidate's view
    games: list[list[int]] = []  # move lists, candidate first then opponent first
    outcomes: list[int] = []  # player-0 outcomes of those games
    worker: str = ""


class MatchCompleted(_Match, frozen=True, kw_only=True, tag="match.completed"):
    verdict: str  # accept | reject | inconclusive
    pairs: int
    pentanomial: list[int]
    elo: float
    elo_ci95: float
    llr: float
    lower: float
    upper: float
    reason: str = ""
    fence: int = 0  # the singleton role's lease revision when emitted (0: not fenced)


class GateResult(msgspec.Struct, frozen=True, kw_only=True):
    gate: str
    passed: bool
    detail: str = ""
    figures: dict[str, float] = {}


class _Champion(Event, frozen=True, kw_only=True):
    fence: int = 0  # the singleton role's lease revision when emitted (0: not fenced)

    def aggregate(self) -> str:
        return names.AGG_CHAMPION


class CandidatePromoted(_Champion, frozen=True, kw_only=True, tag="candidate.promoted"):
    model_id: str
    previous_champion: str = ""
    generation: int = 0
    gates: list[GateResult] = []


class CandidateRejected(_Champion, frozen=True, kw_only=True, tag="candidate.rejected"):
    model_id: str
    reason: str
    gates: list[GateResult] = []


class ChampionRolledBack(_Champion, frozen=True, kw_only=True, tag="champion.rolled_back"):
    to_promotion_seq: int
    model_id: str
    reverted_models: list[str] = []
    reason: str = ""
    automatic: bool = False
    evidence: dict[str, float] = {}


class Grade(msgspec.Struct, frozen=True, kw_only=True):
    """One player's overall shares on solved positions (``engine.strength.Tally``)."""

    player: str  # raw-policy, net-mcts-<sims>, random, pure-mcts-<rollouts>
    positions: int = 0
    outcome_optimal: float = 0.0
    exactly_optimal: float = 0.0
    value_accuracy: float | None = None
    reference: bool = False  # a reference player, not the model


class ModelGraded(Event, frozen=True, kw_only=True, tag="model.graded"):
    """A model (and the reference players) graded on solved positions (``bench connect4 --record``)."""

    model_id: str  # "random" when only the references were graded
    positions_file: str = ""
    grades: list[Grade] = []

    def aggregate(self) -> str:
        return "models"


class HealthCheckFailed(Event, frozen=True, kw_only=True, tag="health.check_failed"):
    check: str
    severity: str  # warning | critical
    detail: str
    node: str = ""
    value: float = 0.0
    threshold: float = 0.0

    def aggregate(self) -> str:
        return names.AGG_HEALTH


class _Node(Event, frozen=True, kw_only=True):
    node: str

    def aggregate(self) -> str:
        return f"node-{self.node}"


class NodeJoined(_Node, frozen=True, kw_only=True, tag="node.joined"):
    host: str = ""
    roles: list[str] = []
    model_id: str = ""
    model_digest: str = ""
    software_version: str = ""  # jetzero's package version on the node
    config_sha256: str = ""  # the loop config in force it runs on (loop.started's digest)
    session: str = ""  # this join's id: a restart of the agent is a new session


class NodeLeft(_Node, frozen=True, kw_only=True, tag="node.left"):
    reason: str = ""


class _CommandOutcome(Event, frozen=True, kw_only=True):
    command_id: str
    command: str

    def aggregate(self) -> str:
        return names.AGG_COMMANDS


class CommandAccepted(_CommandOutcome, frozen=True, kw_only=True, tag="command.accepted"):
    detail: str = ""


class CommandRejected(_CommandOutcome, frozen=True, kw_only=True, tag="command.rejected"):
    reason: str


class EventRejected(Event, frozen=True, kw_only=True, tag="event.rejected"):
    """Poison input: bytes on a subject that do not decode; recorded, acked, counted."""

    stream: str
    subject: str
    seq: int
    reason: str
    handler: str = ""
    payload_prefix: str = ""

    def aggregate(self) -> str:
        return names.AGG_REJECTED


ControlEvent = (
    LoopStarted
    | LoopHalted
    | LoopResumed
    | LoopStopRequested
    | LoopStopped
    | ProcessRestarted
    | PoolBatchSynced
    | TrainingStarted
    | CheckpointSaved
    | MatchScheduled
    | MatchPairPlayed
    | MatchCompleted
    | CandidatePromoted
    | CandidateRejected
    | ChampionRolledBack
    | HealthCheckFailed
    | ModelGraded
    | NodeJoined
    | NodeLeft
    | CommandAccepted
    | CommandRejected
    | EventRejected
)

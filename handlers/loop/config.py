"""The unified loop's typed config (``config/unified_loop.yaml``), decoded with field paths.

Every section is a frozen msgspec Struct with defaults; unknown keys are refused. The
engine's own settings (network, training) are the engine's Structs, embedded as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from engine.selfplay import check_playout_cap
from engine.settings import NetworkConfig, TrainConfig
from streams.config import NatsSettings, load_config

_STRICT = dict(frozen=True, kw_only=True, forbid_unknown_fields=True)


class GameSpec(msgspec.Struct, **_STRICT):
    name: str = "connect4"
    params: dict[str, int] = {}


class CurriculumStage(msgspec.Struct, **_STRICT):
    """Selfplay settings of one stage; a stage lasts until the champion reaches a generation."""

    name: str
    until_generation: int | None = None  # None: the last stage, forever
    simulations: int = 128
    temperature: float = 1.0
    temperature_moves: int = 10
    dirichlet_alpha: float = 1.0
    dirichlet_fraction: float = 0.25
    random_opening_moves: int = 0
    use_openings: bool = False  # start from the game's balanced opening set
    # playout cap randomization: this fraction of moves gets the full search (`simulations`,
    # root noise, a training sample), the rest `fast_simulations` (played, not trained on)
    full_search_fraction: float = 1.0
    fast_simulations: int = 0

    def __post_init__(self) -> None:
        check_playout_cap(self.full_search_fraction, self.fast_simulations, self.simulations, "stage")


# Connect Four on 2 cores: cheap games until generation 4, then deeper searches. Both stages
# open with 3 random moves and sample 20 plies: varied middle games teach the net positions
# that well-played games never reach (measured in hour-long runs of bench/learn_connect4.py:
# the raw policy 83.1 / 70.1 against 79.9 / 66.3 with 2 and 16; with search level within
# noise, 92.5 / 84.3 against 93.2 / 84.6).
DEFAULT_CURRICULUM = (
    CurriculumStage(name="opening-variety", until_generation=4, simulations=64, temperature_moves=20,
                    random_opening_moves=3),
    CurriculumStage(name="main", until_generation=None, simulations=96, temperature_moves=20,
                    random_opening_moves=3),
)


class SelfplaySection(msgspec.Struct, **_STRICT):
    workers: int = 2
    games_in_flight: int = 64
    torch_threads: int = 1
    seed: int = 0
    # niceness of selfplay processes: > 0 lets training and matches run first, selfplay
    # takes the rest of the machine
    nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 5


class SyncSection(msgspec.Struct, **_STRICT):
    games_per_shard: int = 64
    max_wait_s: float = 30.0  # a partial shard is written after this long without new games


class TrainingSection(msgspec.Struct, **_STRICT):
    threshold_positions: int = 15_000  # train when this many new positions arrived
    window: Literal["fixed", "power"] = "power"
    window_positions: int = 80_000  # fixed: the window; power: its lower bound
    window_exponent: float = 0.75  # power: window = window_positions * (total/window_positions)^e
    max_samples_per_position: float = 8.0  # training samples per newly arrived position
    torch_threads: int = 1  # 2 threads on 2 busy cores spin-wait: ~1.8x the CPU per step
    train: TrainConfig = TrainConfig(search_value_weight=0.5)  # value target: half outcome, half search
    seed: int = 0
    check_every_steps: int = 50  # halt, stop and the lease are checked between such chunks


class EvaluationSection(msgspec.Struct, **_STRICT):
    workers: int = 1
    simulations: int = 64
    torch_threads: int = 1
    # match units a worker fetches and plays together (one batched search per model)
    units_per_batch: Annotated[int, msgspec.Meta(ge=1)] = 16


class HealthSection(msgspec.Struct, **_STRICT):
    interval_s: float = 3.0  # how often every worker and handler checks the loop status
    selfplay_stall_s: float = 300.0
    max_consumer_lag: int = 10_000
    max_rejections: int = 20  # event.rejected in one run before it is a failure
    max_candidate_rejections: int = 10  # candidates rejected in a row before it is a failure
    min_free_disk_gb: float = 1.0
    auto_halt_on_critical: bool = True


class MetricsSection(msgspec.Struct, **_STRICT):
    host: str = "127.0.0.1"
    port: int = 9464


class SupervisorSection(msgspec.Struct, **_STRICT):
    log_dir: str = "data/logs"
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 60.0


class LoopConfig(msgspec.Struct, **_STRICT):
    run: str = "main"
    game: GameSpec = GameSpec()
    nats: NatsSettings = NatsSettings()
    network: NetworkConfig = NetworkConfig()
    selfplay: SelfplaySection = SelfplaySection()
    curriculum: list[CurriculumStage] = msgspec.field(default_factory=lambda: list(DEFAULT_CURRICULUM))
    sync: SyncSection = SyncSection()
    training: TrainingSection = TrainingSection()
    evaluation: EvaluationSection = EvaluationSection()
    promotion_config: str = "config/promotion.yaml"
    health: HealthSection = HealthSection()
    metrics: MetricsSection = MetricsSection()
    supervisor: SupervisorSection = SupervisorSection()

    def __post_init__(self) -> None:
        if not self.curriculum:
            raise ValueError("curriculum needs at least one stage")
        if self.curriculum[-1].until_generation is not None:
            raise ValueError("the last curriculum stage must have until_generation: null")


def load_loop_config(path: str | Path, overrides: dict[str, Any] | None = None) -> LoopConfig:
    return load_config(path, LoopConfig, overrides)

"""The unified loop's typed config (``config/unified_loop.yaml``), decoded with field paths,
and the config in force: what ``loop.started`` recorded, which every loop process runs on.

Every section is a frozen msgspec Struct with defaults; unknown keys are refused and every
value is range-checked (``msgspec.Meta`` constraints where they can say it), so a bad value
is one ``ConfigError`` line naming its field's path (``$.training.threshold_positions``).
The engine's own settings (network, training) are the engine's Structs, embedded as they are.

The supervisor reads the loop config and the promotion config it names once
(:func:`load_in_force`) and records both whole, with the files' sha256 digests, in
``loop.started``; every process it starts reads them back from that event
(:func:`read_in_force`), never from the files: an edited file takes effect at the next start.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from engine.devices import (
    DEVICE_PATTERN,
    DeviceUnavailable,
    batches_in_flight_for,
    machine,
    plan_sizes,
    resolve_device,
)
from engine.games import get_game
from engine.selfplay import check_playout_cap
from engine.settings import NetworkConfig, TrainConfig
from streams import events as ev
from streams import names
from streams.config import NatsSettings, convert_config, load_config_with_digest, read_document
from streams.envelope import tag_of
from streams.errors import ConfigError
from streams.store import EventStore

DEFAULT_CONFIG_PATH = Path("config/unified_loop.yaml")  # the one default of every --config
DEFAULT_PROMOTION_PATH = "config/promotion.yaml"  # the loop config's promotion_config default
# The promotion config's Struct, named rather than imported: the promotion surface sits above
# the loop (it imports this module), like the services ``process.SERVICES`` names.
PROMOTION_CONFIG_TYPE = ("handlers.promotion.config", "PromotionConfig")

Count = Annotated[int, msgspec.Meta(ge=0)]  # 0 or more
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Seed = Annotated[int, msgspec.Meta(ge=0)]  # numpy seeds are non-negative
RunName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")]  # a subject token
# "auto": sized for the machine that reads the config (engine.devices.plan_sizes); a loaded
# LoopConfig holds the number (resolved in LoopConfig.__post_init__)
AutoCount = Count | Literal["auto"]
AutoPositive = Positive | Literal["auto"]
Device = Annotated[str, msgspec.Meta(pattern=DEVICE_PATTERN)]  # auto | cpu | cuda | cuda:N

_STRICT = dict(frozen=True, kw_only=True, forbid_unknown_fields=True)


class GameSpec(msgspec.Struct, **_STRICT):
    name: str = "connect4"
    params: dict[str, int] = {}

    def __post_init__(self) -> None:
        get_game(self.name, **self.params)  # an unknown name or parameter: UnknownGame (a ValueError)


class CurriculumStage(msgspec.Struct, **_STRICT):
    """Selfplay settings of one stage; a stage lasts until the champion reaches a generation."""

    name: str
    until_generation: Positive | None = None  # None: the last stage, forever
    simulations: Positive = 128
    temperature: NonNegative = 1.0
    temperature_moves: Count = 10
    dirichlet_alpha: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    dirichlet_fraction: Fraction = 0.25
    random_opening_moves: Count = 0
    use_openings: bool = False  # start from the game's balanced opening set
    # playout cap randomization: this fraction of moves gets the full search (`simulations`,
    # root noise, a training sample), the rest `fast_simulations` (played, not trained on)
    full_search_fraction: float = 1.0
    fast_simulations: Count = 0

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
    workers: AutoCount = "auto"
    games_in_flight: Positive = 64  # per process on the CPU
    gpu_games_in_flight: Positive = 1024  # per process on a GPU (a batch the GPU is busy with)
    torch_threads: AutoPositive = "auto"
    device: Device = "auto"  # auto: CUDA when torch sees a GPU, else the CPU
    half_precision: bool = False  # float16 inference on CUDA
    # auto: 2 on a GPU (half the games search while the other half's batch is on the GPU),
    # 1 on the CPU (engine.devices.batches_in_flight_for)
    batches_in_flight: AutoPositive = "auto"
    # worker i of the run's n-th start plays from the seed [seed, i, n, restarts so far]: two
    # runs with one seed play the same games; a restarted worker does not replay its games
    seed: Seed = 0
    # niceness of selfplay processes: > 0 lets training and matches run first, selfplay
    # takes the rest of the machine
    nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 5


class SyncSection(msgspec.Struct, **_STRICT):
    games_per_shard: Positive = 64
    max_wait_s: Seconds = 30.0  # a partial shard is written after this long without new games


class TrainingSection(msgspec.Struct, **_STRICT):
    threshold_positions: Positive = 15_000  # train when this many new positions arrived
    window: Literal["fixed", "power"] = "power"
    window_positions: Positive = 80_000  # fixed: the window; power: its lower bound
    window_exponent: Fraction = 0.75  # power: window = window_positions * (total/window_positions)^e
    max_samples_per_position: Annotated[float, msgspec.Meta(gt=0)] = 8.0  # samples per new position
    torch_threads: AutoPositive = "auto"  # 2 threads on 2 busy cores spin-wait: ~1.8x the CPU per step
    device: Device = "auto"
    train: TrainConfig = TrainConfig(search_value_weight=0.5)  # value target: half outcome, half search
    seed: Seed = 0
    check_every_steps: Positive = 50  # halt, stop and the lease are checked between such chunks


class EvaluationSection(msgspec.Struct, **_STRICT):
    """Match-playing processes; their search per move is the promotion config's ``simulations``."""

    workers: AutoCount = "auto"
    torch_threads: AutoPositive = "auto"
    device: Device = "auto"
    half_precision: bool = False  # float16 inference on CUDA
    # match units a worker fetches and plays together (one batched search per model)
    units_per_batch: Annotated[int, msgspec.Meta(ge=1)] = 16


class HealthSection(msgspec.Struct, **_STRICT):
    interval_s: Seconds = 3.0  # how often every worker and handler checks the loop status
    selfplay_stall_s: Seconds = 300.0
    max_consumer_lag: Positive = 10_000
    max_rejections: Count = 20  # event.rejected in one run before it is a failure
    max_candidate_rejections: Positive = 10  # candidates rejected in a row before it is a failure
    min_free_disk_gb: NonNegative = 1.0
    auto_halt_on_critical: bool = True


class MetricsSection(msgspec.Struct, **_STRICT):
    host: str = "127.0.0.1"
    port: Port = 9464


class SupervisorSection(msgspec.Struct, **_STRICT):
    log_dir: str = "data/logs"
    restart_backoff_s: NonNegative = 1.0
    restart_backoff_max_s: NonNegative = 60.0

    def __post_init__(self) -> None:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("restart_backoff_max_s must not be below restart_backoff_s")


class LoopConfig(msgspec.Struct, **_STRICT):
    run: RunName = "main"
    game: GameSpec = GameSpec()
    nats: NatsSettings = NatsSettings()
    network: NetworkConfig = NetworkConfig()
    selfplay: SelfplaySection = SelfplaySection()
    curriculum: list[CurriculumStage] = msgspec.field(default_factory=lambda: list(DEFAULT_CURRICULUM))
    sync: SyncSection = SyncSection()
    training: TrainingSection = TrainingSection()
    evaluation: EvaluationSection = EvaluationSection()
    promotion_config: str = DEFAULT_PROMOTION_PATH
    health: HealthSection = HealthSection()
    metrics: MetricsSection = MetricsSection()
    supervisor: SupervisorSection = SupervisorSection()

    def __post_init__(self) -> None:
        if not self.curriculum:
            raise ValueError("curriculum needs at least one stage")
        if self.curriculum[-1].until_generation is not None:
            raise ValueError("the last curriculum stage must have until_generation: null")
        self._resolve_sizes()

    def _resolve_sizes(self) -> None:
        """Every ``auto`` size becomes this machine's number (``engine.devices.plan_sizes``)."""
        autos = {
            ("selfplay", "workers"): "selfplay_workers", ("selfplay", "torch_threads"): "selfplay_threads",
            ("evaluation", "workers"): "evaluation_workers",
            ("evaluation", "torch_threads"): "evaluation_threads",
            ("training", "torch_threads"): "training_threads",
        }
        if not any(getattr(getattr(self, sec), f) == "auto" for sec, f in autos):
            return
        sizes = plan_sizes(*machine())
        for section in ("selfplay", "evaluation", "training"):
            current = getattr(self, section)
            chosen = {f: getattr(sizes, k) for (sec, f), k in autos.items()
                      if sec == section and getattr(current, f) == "auto"}
            if chosen:
                msgspec.structs.force_setattr(self, section, msgspec.structs.replace(current, **chosen))


def resolved_settings(config: LoopConfig, *, cuda_count: int | None = None) -> dict[str, Any]:
    """The sizes and devices this machine gives ``config``, as ``loop.started`` records them
    (``ConfigError`` naming the field when a device setting cannot be honoured here)."""
    cores, gpus = machine()
    devices = {}
    for section in ("selfplay", "evaluation", "training"):
        spec = getattr(config, section).device
        try:
            devices[f"{section}.device"] = resolve_device(spec, cuda_count=cuda_count)
        except DeviceUnavailable as exc:
            raise ConfigError(f"{section}.device: {exc}") from None
    batches = batches_in_flight_for(devices["selfplay.device"], config.selfplay.batches_in_flight)
    return {
        "cores": cores, "gpus": gpus, "selfplay.batches_in_flight": batches,
        "selfplay.workers": config.selfplay.workers, "selfplay.torch_threads": config.selfplay.torch_threads,
        "evaluation.workers": config.evaluation.workers,
        "evaluation.torch_threads": config.evaluation.torch_threads,
        "training.torch_threads": config.training.torch_threads, **devices,
    }


def load_loop_config(
    path: str | Path = DEFAULT_CONFIG_PATH, overrides: dict[str, Any] | None = None
) -> LoopConfig:
    """Read the loop config; ``overrides`` are dotted keys set on top (``{"run": "b"}``)."""
    return load_config_with_digest(path, LoopConfig, overrides)[0]


def prepare_log_dir(config: LoopConfig) -> Path:
    """Create ``supervisor.log_dir`` (``ConfigError`` naming the field if it cannot be written)."""
    path = Path(config.supervisor.log_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"supervisor.log_dir: cannot create {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"supervisor.log_dir: {path} is not writable")
    return path


class ConfigInForce(msgspec.Struct, frozen=True, kw_only=True):
    """The loop config and the promotion config of one start, with their files' digests.

    ``promotion`` is a ``handlers.promotion.config.PromotionConfig``. ``seq`` and ``time``
    are the recording ``loop.started``'s (0 before it is appended).
    """

    loop: LoopConfig
    promotion: Any
    loop_path: str = ""
    promotion_path: str = ""
    loop_sha256: str = ""
    promotion_sha256: str = ""
    seq: int = 0
    time: float = 0.0

    def started_fields(self) -> dict[str, Any]:
        """The fields of ``loop.started`` that record this config (its sizes and devices as
        this machine resolves them in ``resolved``)."""
        return dict(
            config=msgspec.to_builtins(self.loop), promotion=msgspec.to_builtins(self.promotion),
            resolved=resolved_settings(self.loop),
            config_path=self.loop_path, config_sha256=self.loop_sha256,
            promotion_path=self.promotion_path, promotion_sha256=self.promotion_sha256,
        )


def decode_promotion(data: Any, source: str) -> Any:
    """Plain data → ``PromotionConfig`` (``ConfigError`` with the field path)."""
    module, name = PROMOTION_CONFIG_TYPE
    return convert_config(data, getattr(importlib.import_module(module), name), source)


def load_in_force(
    path: str | Path = DEFAULT_CONFIG_PATH, overrides: dict[str, Any] | None = None
) -> ConfigInForce:
    """Decode and validate the loop config at ``path`` and the promotion config it names."""
    loop, loop_sha = load_config_with_digest(path, LoopConfig, overrides)
    data, promotion_sha = read_document(loop.promotion_config)
    promotion = decode_promotion(data, f"{loop.promotion_config} (promotion_config of {path})")
    return ConfigInForce(loop=loop, promotion=promotion, loop_path=str(path),
                         promotion_path=loop.promotion_config, loop_sha256=loop_sha,
                         promotion_sha256=promotion_sha)


def recorded_in_force(event: ev.LoopStarted, seq: int = 0) -> ConfigInForce:
    """The config in force as ``event`` recorded it (``ConfigError`` if it no longer decodes)."""
    where = f"loop.started #{seq}"
    if not event.config or not event.promotion:
        raise ConfigError(f"{where} of run {event.run} records no loop or no promotion config "
                          "(written before configs were recorded): start the loop again")
    return ConfigInForce(
        loop=convert_config(event.config, LoopConfig, f"{where}: config"),
        promotion=decode_promotion(event.promotion, f"{where}: promotion"),
        loop_path=event.config_path, promotion_path=event.promotion_path,
        loop_sha256=event.config_sha256, promotion_sha256=event.promotion_sha256,
        seq=seq, time=event.time,
    )


async def _latest_start(store: EventStore, run: str) -> tuple[ev.LoopStarted, int] | None:
    subject = names.subject(names.EVENTS, run, names.AGG_LOOP, tag_of(ev.LoopStarted))
    stored = await store.last(names.EVENTS, subject)
    if stored is None or not isinstance(stored.event, ev.LoopStarted):
        return None
    return stored.event, stored.seq


async def read_in_force(store: EventStore, run: str) -> ConfigInForce:
    """The config in force of ``run``: what its latest ``loop.started`` recorded."""
    latest = await _latest_start(store, run)
    if latest is None:
        raise ConfigError(f"run {run} has no loop.started in the log: start the loop first")
    return recorded_in_force(*latest)


async def in_force_summary(store: EventStore, run: str) -> dict[str, Any] | None:
    """Which config is in force (for ``--status``): the latest ``loop.started``'s sequence,
    time, files and digests, without decoding the configs; None before the first start."""
    latest = await _latest_start(store, run)
    if latest is None:
        return None
    e, seq = latest
    return {"seq": seq, "time": e.time, "config_path": e.config_path,
            "config_sha256": e.config_sha256, "promotion_path": e.promotion_path,
            "promotion_sha256": e.promotion_sha256}


async def shown_config(store: EventStore, config: LoopConfig) -> LoopConfig:
    """The loop config ``--status`` reports against: the one in force (an edited file is not
    in force until the next start), reached through ``config``'s server; ``config`` itself
    before the first start or when the recorded one no longer decodes."""
    try:
        in_force = await read_in_force(store, config.run)
    except ConfigError:
        return config
    return msgspec.structs.replace(in_force.loop, nats=config.nats)

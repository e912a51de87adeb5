"""The pipeline settings (``config/pipeline.yaml``): which gates run, and their thresholds.

``PipelineConfig`` is a frozen msgspec Struct read with ``streams.config.load_config`` (unknown
keys and bad values refused with ``ConfigError`` naming the field). Every knob is commented in
the shipped YAML, sized so a default validation takes a few minutes on a 2-core machine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec

from engine.sprt import MODELS, wald_bounds
from streams.config import load_config

__all__ = [
    "DEFAULT_PATH",
    "MatchGate",
    "PipelineConfig",
    "QualityGate",
    "SpeedGate",
    "StrengthGate",
    "TestsGate",
    "TrainSettings",
    "WorkSettings",
    "load_pipeline_config",
]

DEFAULT_PATH = Path("config/pipeline.yaml")
_STRICT = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True}


def _at_least(value: float, low: float, where: str) -> None:
    if not (math.isfinite(value) and value >= low):
        raise ValueError(f"{where} must be at least {low:g}, got {value}")


def _fraction(value: float, where: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where} must lie between 0 and 1, got {value}")


class QualityGate(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    """The model's own soundness: finite weights and outputs, policy mass on legal moves."""

    enabled: bool = True
    positions: int = 300
    min_legal_mass: float = 0.9

    def __post_init__(self) -> None:
        _at_least(self.positions, 1, "quality.positions")
        _fraction(self.min_legal_mass, "quality.min_legal_mass")


class StrengthGate(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    """Solver accuracy and value calibration on the shipped solved positions, against the baseline's."""

    enabled: bool = True
    positions: int = 300
    simulations: int = 32
    tolerance: float = 0.03
    value_tolerance: float = 0.05

    def __post_init__(self) -> None:
        _at_least(self.positions, 1, "strength.positions")
        _at_least(self.simulations, 0, "strength.simulations")
        _fraction(self.tolerance, "strength.tolerance")
        _at_least(self.value_tolerance, 0.0, "strength.value_tolerance")


class SprtBounds(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    elo0: float = -40.0
    elo1: float = 0.0
    alpha: float = 0.05
    beta: float = 0.05
    model: str = "logistic"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"match.sprt.model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not (math.isfinite(self.elo0) and math.isfinite(self.elo1) and self.elo0 < self.elo1):
            raise ValueError(f"match.sprt.elo0 must be below elo1, got {self.elo0} and {self.elo1}")
        wald_bounds(self.alpha, self.beta)


class WorkSettings(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    """The match over WORK: played by the run's eval agents when any are connected."""

    enabled: bool = True  # false: always played here
    pairs_per_unit: int = 2
    units_per_agent: int = 2  # units handed out at once per live agent (none once the SPRT decides)
    unit_timeout_s: float = 120.0  # a unit not played within this (from its hand-out) is played here

    def __post_init__(self) -> None:
        _at_least(self.pairs_per_unit, 1, "match.work.pairs_per_unit")
        _at_least(self.units_per_agent, 1, "match.work.units_per_agent")
        _at_least(self.unit_timeout_s, 1.0, "match.work.unit_timeout_s")


class MatchGate(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    """Candidate against baseline in colour-swapped pairs over shared openings, pentanomial SPRT."""

    enabled: bool = True
    simulations: int = 32
    max_pairs: int = 64
    pairs_in_flight: int = 8
    sprt: SprtBounds = SprtBounds()
    inconclusive: str = "pass"  # pass | fail: the verdict when max_pairs is reached undecided
    move_timeout_s: float = 120.0
    work: WorkSettings = WorkSettings()

    def __post_init__(self) -> None:
        _at_least(self.simulations, 1, "match.simulations")
        _at_least(self.max_pairs, 1, "match.max_pairs")
        _at_least(self.pairs_in_flight, 1, "match.pairs_in_flight")
        _at_least(self.move_timeout_s, 1.0, "match.move_timeout_s")
        if self.inconclusive not in ("pass", "fail"):
            raise ValueError(f"match.inconclusive must be pass or fail, got {self.inconclusive!r}")


class SpeedGate(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    """Selfplay evaluations/s and simulations/s of both sides' code, interleaved rounds."""

    enabled: bool = True
    rounds: int = 6
    seconds: float = 1.0
    games: int = 16
    simulations: int = 32
    tolerance: float = 0.15

    def __post_init__(self) -> None:
        _at_least(self.rounds, 1, "speed.rounds")
        _at_least(self.seconds, 0.05, "speed.seconds")
        _at_least(self.games, 1, "speed.games")
        _at_least(self.simulations, 1, "speed.simulations")
        _fraction(self.tolerance, "speed.tolerance")


class TestsGate(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    """The PR's own test command (run from the PR's checkout; exit 0 passes)."""

    __test__ = False  # not a pytest class
    enabled: bool = False
    command: str = ""
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.enabled and not self.command.strip():
            raise ValueError("tests.command is needed when tests.enabled is true")
        _at_least(self.timeout_s, 1.0, "tests.timeout_s")


class TrainSettings(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    """The candidate the pipeline trains (``--train``): a short run of the PR's training code,
    from ``seed``, on a data snapshot, starting from the baseline's weights. The rest of the
    optimiser settings are the run's (``training.train`` of the loop config)."""

    steps: int = 200
    batch_size: int = 64
    seed: int = 0
    lr: float = 0.0  # 0: the run's training.train.lr
    augment: bool = True  # a random symmetry per sample, as the trainer does
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        _at_least(self.steps, 1, "train.steps")
        _at_least(self.batch_size, 1, "train.batch_size")
        _at_least(self.seed, 0, "train.seed")
        _at_least(self.lr, 0.0, "train.lr")
        _at_least(self.timeout_s, 1.0, "train.timeout_s")


class PipelineConfig(msgspec.Struct, **_STRICT):  # type: ignore[call-arg]
    torch_threads: int = 1
    seed: int = 0
    quality: QualityGate = QualityGate()
    strength: StrengthGate = StrengthGate()
    match: MatchGate = MatchGate()
    speed: SpeedGate = SpeedGate()
    tests: TestsGate = TestsGate()
    train: TrainSettings = TrainSettings()

    def __post_init__(self) -> None:
        _at_least(self.torch_threads, 1, "torch_threads")

    def enabled(self) -> list[str]:
        """Names of the gates that run, in the order they run."""
        return [name for name in ("quality", "strength", "match", "speed", "tests")
                if getattr(self, name).enabled]


def load_pipeline_config(path: str | Path = DEFAULT_PATH, overrides: dict[str, Any] | None = None
                         ) -> PipelineConfig:
    """Read ``path`` into a ``PipelineConfig``; ``overrides`` are dotted keys set on top."""
    return load_config(path, PipelineConfig, overrides)

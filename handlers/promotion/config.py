"""The promotion settings (``config/promotion.yaml``): gates, match sizes, regression, watch.

``PromotionConfig`` is a frozen msgspec Struct; load it with :func:`load_promotion_config`
(unknown keys and bad values are refused with ``ConfigError`` naming the field). In the loop
the supervisor records it in ``loop.started`` and the evaluator, the promoter and the eval
workers get it from there as an argument (``handlers.loop.config.read_in_force``); the CLI's
``promotion judge`` reads the file. Every knob is commented in the shipped YAML. The server
is the loop config's ``nats:`` section (its one home).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgspec

from engine.sprt import MODELS, wald_bounds
from handlers.loop.config import DEFAULT_PROMOTION_PATH
from streams.config import load_config
from streams.events import PlayerSpec, SprtParams

REFERENCE_KINDS = ("random", "pure_mcts")


class SprtConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """H0: Elo <= ``elo0`` against H1: Elo >= ``elo1`` with error rates ``alpha``, ``beta``."""

    elo0: float = 0.0
    elo1: float = 10.0
    alpha: float = 0.05
    beta: float = 0.05
    model: str = "logistic"  # logistic | normalized

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"sprt.model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not (math.isfinite(self.elo0) and math.isfinite(self.elo1)):
            raise ValueError("sprt.elo0 and sprt.elo1 must be finite")
        if self.elo0 >= self.elo1:
            raise ValueError(f"sprt.elo0 must be below sprt.elo1, got {self.elo0} >= {self.elo1}")
        wald_bounds(self.alpha, self.beta)  # raises ValueError naming alpha or beta

    def params(self) -> SprtParams:
        return SprtParams(elo0=self.elo0, elo1=self.elo1, alpha=self.alpha, beta=self.beta, model=self.model)


class ReferencePlayer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A fixed opponent: ``random``, or ``pure_mcts`` with ``simulations`` random rollouts."""

    kind: str
    simulations: int = 0

    def __post_init__(self) -> None:
        if self.kind not in REFERENCE_KINDS:
            raise ValueError(
                f"reference player kind must be one of {', '.join(REFERENCE_KINDS)}, got {self.kind!r}"
            )
        if self.kind == "pure_mcts" and self.simulations < 1:
            raise ValueError("a pure_mcts reference player needs simulations >= 1")
        if self.kind == "random" and self.simulations != 0:
            raise ValueError("a random reference player takes no simulations")

    def spec(self) -> PlayerSpec:
        return PlayerSpec(kind=self.kind, simulations=self.simulations)


def _check_significance(value: float, where: str) -> None:
    if not 0.0 < value < 0.5:
        raise ValueError(f"{where} must lie strictly between 0 and 0.5, got {value}")


def _check_pairs(value: int, where: str) -> None:
    if value < 1:
        raise ValueError(f"{where} must be at least 1, got {value}")


class RegressionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """No significant loss against earlier champions and reference players."""

    previous_champions: int = 2
    reference_players: tuple[ReferencePlayer, ...] = (
        ReferencePlayer(kind="random"),
        ReferencePlayer(kind="pure_mcts", simulations=200),
    )
    max_pairs: int = 100
    sprt: SprtConfig = SprtConfig(elo0=-20.0, elo1=0.0)
    significance: float = 0.05

    def __post_init__(self) -> None:
        if self.previous_champions < 0:
            raise ValueError("regression.previous_champions must not be negative")
        _check_pairs(self.max_pairs, "regression.max_pairs")
        _check_significance(self.significance, "regression.significance")


class WatchConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """After a promotion: new champion against its predecessor; roll back if clearly worse."""

    enabled: bool = True
    max_pairs: int = 200
    sprt: SprtConfig = SprtConfig(elo0=-20.0, elo1=0.0)
    significance: float = 0.01

    def __post_init__(self) -> None:
        _check_pairs(self.max_pairs, "watch.max_pairs")
        _check_significance(self.significance, "watch.significance")


class PromotionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the evaluator and the promoter need to judge a candidate."""

    simulations: int = 100  # search per move of every model player in every match
    sprt: SprtConfig = SprtConfig()
    elo_threshold: float = 0.0
    max_pairs: int = 400
    pairs_per_unit: int = 2
    regression: RegressionConfig = RegressionConfig()
    watch: WatchConfig = WatchConfig()

    def __post_init__(self) -> None:
        if self.simulations < 1:
            raise ValueError(f"simulations must be at least 1, got {self.simulations}")
        if not math.isfinite(self.elo_threshold):
            raise ValueError("elo_threshold must be finite")
        _check_pairs(self.max_pairs, "max_pairs")
        _check_pairs(self.pairs_per_unit, "pairs_per_unit")

    def model_player(self, model_id: str) -> PlayerSpec:
        """A model as a match player, with the configured search."""
        return PlayerSpec(kind="model", model_id=model_id, simulations=self.simulations)


DEFAULT_PATH = Path(DEFAULT_PROMOTION_PATH)


def load_promotion_config(
    path: str | Path = DEFAULT_PATH, overrides: dict[str, Any] | None = None
) -> PromotionConfig:
    """Read ``path`` into a ``PromotionConfig``; ``overrides`` are dotted keys set on top."""
    return load_config(path, PromotionConfig, overrides)

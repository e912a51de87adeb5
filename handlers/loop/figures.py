"""The figures ``--status`` and the metrics share, computed once from one set of projection states.

``FIGURE_PROJECTIONS`` names the read models (from ``projections.PROJECTIONS``) the figures
come from; ``figures`` is pure: their states and the time in, ``Figures`` out. ``--status``
folds those projections from the log and the metrics follow them live, and both report what
``figures`` returns, so the two never disagree on one log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from projections.loop_status import LoopStatus
from projections.tally import GameTally, games_per_minute

__all__ = ["FIGURE_PROJECTIONS", "Figures", "figures", "latest_checkpoint"]

FIGURE_PROJECTIONS = ("loop_status", "journal", "model_registry", "matches", "ratings", "pool", "game_tally")


class Figures(msgspec.Struct, frozen=True, kw_only=True):
    """Every figure shared by status and metrics (None: no such read model, or nothing yet)."""

    games: int = 0  # selfplay games recorded in GAMES
    positions: int = 0
    games_per_minute: float = 0.0
    last_game_time: float = 0.0
    models_saved: int | None = None
    training_steps: int = 0  # of the furthest checkpoint
    policy_loss: float | None = None  # of the latest checkpoint
    value_loss: float | None = None
    pool_games: int | None = None
    pool_positions: int | None = None
    pool_shards: int | None = None
    pool_positions_since_training: int | None = None
    champion: str = ""
    champion_generation: int | None = None
    champion_elo: float | None = None
    champion_elo_ci95: float | None = None
    halted: bool = False
    running: bool = False
    restarts: int = 0
    health_failures: int = 0
    rejected_events: int = 0


def latest_checkpoint(registry: Any) -> Any:
    """The most recently saved checkpoint of a model registry, or None."""
    models = list(getattr(registry, "models", {}).values())
    return max(models, key=lambda m: m.saved_seq) if models else None


def figures(states: Mapping[str, Any], now: float) -> Figures:
    """The shared figures from the states of ``FIGURE_PROJECTIONS`` (missing ones count as empty)."""
    status: LoopStatus = states.get("loop_status") or LoopStatus()
    journal = states.get("journal")
    registry = states.get("model_registry")
    ratings = states.get("ratings")
    pool = states.get("pool")
    tally: GameTally = states.get("game_tally") or GameTally()
    latest = latest_checkpoint(registry)
    champion = getattr(registry, "champion", None)
    rating = ratings.ladder.get(champion.model_id) if ratings is not None and champion else None
    return Figures(
        games=tally.games,
        positions=tally.positions,
        games_per_minute=games_per_minute(tally, now),
        last_game_time=tally.last_game_time,
        models_saved=len(registry.models) if registry is not None else None,
        training_steps=max((m.step for m in registry.models.values()), default=0) if registry else 0,
        policy_loss=latest.policy_loss if latest else None,
        value_loss=latest.value_loss if latest else None,
        pool_games=pool.games if pool is not None else None,
        pool_positions=pool.positions if pool is not None else None,
        pool_shards=len(pool.shards) if pool is not None else None,
        pool_positions_since_training=pool.positions_since_training if pool is not None else None,
        champion=champion.model_id if champion else "",
        champion_generation=champion.generation if champion else None,
        champion_elo=rating.elo if rating else None,
        champion_elo_ci95=rating.ci95 if rating else None,
        halted=status.halted,
        running=status.state == "running",
        restarts=status.restarts,
        health_failures=journal.health_failure_count if journal else 0,
        rejected_events=journal.poison_count if journal else 0,
    )

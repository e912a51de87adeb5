"""Pure folds of events into read models, and the runner that feeds them.

``PROJECTIONS`` is the one registry of read models, an explicit list: each name maps to a
factory that takes the loop config in force (only the curriculum reads it: its stages) and
returns a fresh projection. ``jetzero events replay --projection``, ``--status`` and the
metrics all build their projections from it. A projection module that fails to import fails
this package's import: nothing is left out quietly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from projections.base import BaseProjection, Projection, fold
from projections.cluster_view import ClusterViewProjection
from projections.curriculum import CurriculumProjection
from projections.journal import JournalProjection
from projections.loop_status import LoopStatusProjection
from projections.matches import MatchesProjection
from projections.matchmaking import MatchmakingProjection
from projections.models import ModelRegistryProjection
from projections.pool import PoolProjection
from projections.ratings import RatingsProjection
from projections.tally import GameTallyProjection
from projections.timeline import ThroughputProjection, TimelineProjection

__all__ = [
    "PROJECTIONS",
    "BaseProjection",
    "LoopStatusProjection",
    "Projection",
    "ProjectionFactory",
    "build_projection",
    "fold",
]

ProjectionFactory = Callable[[Any], Projection]  # the loop config in force -> a fresh projection

PROJECTIONS: dict[str, ProjectionFactory] = {
    LoopStatusProjection.name: lambda config: LoopStatusProjection(),
    JournalProjection.name: lambda config: JournalProjection(),
    ModelRegistryProjection.name: lambda config: ModelRegistryProjection(),
    MatchesProjection.name: lambda config: MatchesProjection(),
    RatingsProjection.name: lambda config: RatingsProjection(),
    PoolProjection.name: lambda config: PoolProjection(),
    GameTallyProjection.name: lambda config: GameTallyProjection(),
    CurriculumProjection.name: lambda config: CurriculumProjection(config.curriculum),
    TimelineProjection.name: lambda config: TimelineProjection(),
    ThroughputProjection.name: lambda config: ThroughputProjection(),
    MatchmakingProjection.name: lambda config: MatchmakingProjection(),
    ClusterViewProjection.name: lambda config: ClusterViewProjection(),
}


def build_projection(name: str, config: Any) -> Projection:
    """A fresh ``name`` projection under the loop ``config`` in force (KeyError: unknown name)."""
    return PROJECTIONS[name](config)

"""Pure folds of events into read models, and the runner that feeds them.

``PROJECTIONS`` names every projection that ``jetzero events replay --projection`` knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from projections.base import BaseProjection, Projection, fold
from projections.loop_status import LoopStatusProjection


def _registry() -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {"loop_status": LoopStatusProjection}
    from projections.journal import JournalProjection

    found["journal"] = JournalProjection
    for module, cls in (
        ("projections.models", "ModelRegistryProjection"),
        ("projections.matches", "MatchesProjection"),
        ("projections.ratings", "RatingsProjection"),
        ("projections.pool", "PoolProjection"),
        ("projections.curriculum", "CurriculumProjection"),
    ):
        try:
            mod = __import__(module, fromlist=[cls])
        except ImportError:
            continue
        factory = getattr(mod, cls, None)
        if factory is not None:
            found[factory.name] = factory
    return found


PROJECTIONS = _registry()

__all__ = ["BaseProjection", "Projection", "fold", "PROJECTIONS", "LoopStatusProjection"]

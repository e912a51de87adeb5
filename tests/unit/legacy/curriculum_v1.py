"""(Frozen v1 copy, for the old-vs-new tests; not used by the project.)

Curriculum read model: which selfplay stage the loop is in, from the champion's generation.

Stage ``i`` of the configured stages lasts while the effective champion's generation is
below its ``until_generation`` (the last stage has none and lasts forever). The champion
follows the model registry's rules: the first generation-0 checkpoint, then each
``candidate.promoted``, and after ``champion.rolled_back`` the model of the promotion rolled
back to — so a rollback can bring an earlier stage back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from projections.base import BaseProjection
from streams import events as ev
from streams.envelope import Event

__all__ = [
    "CurriculumProjection",
    "CurriculumState",
    "StageChange",
    "stage_index_for",
]


class _OneStage(msgspec.Struct, frozen=True):
    name: str = "main"
    until_generation: int | None = None


class StageChange(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time: float
    from_stage: str
    to_stage: str
    generation: int
    cause: str  # initial | promotion | rollback


class CurriculumState(msgspec.Struct, frozen=True, kw_only=True):
    stage_index: int = 0
    stage: str = ""
    champion: str = ""
    generation: int = 0  # the effective champion's generation
    generations: dict[str, int] = {}  # every checkpoint's generation
    promotions: dict[int, str] = {}  # sequence of each promotion (initial included) -> model
    changes: tuple[StageChange, ...] = ()
    last_seq: int = 0


def stage_index_for(stages: Sequence[Any], generation: int) -> int:
    """The index of the stage a champion of ``generation`` plays selfplay in."""
    for index, stage in enumerate(stages):
        if stage.until_generation is None or generation < stage.until_generation:
            return index
    return len(stages) - 1


class CurriculumProjection(BaseProjection[CurriculumState]):
    name = "curriculum"
    state_type = CurriculumState

    def __init__(self, stages: Sequence[Any] | None = None):
        """``stages``: the configured stages (default: one stage, ``main``, forever)."""
        if stages is not None and not stages:
            raise ValueError("a curriculum needs at least one stage")
        self.stages = list(stages) if stages is not None else [_OneStage()]

    def initial(self) -> CurriculumState:
        return CurriculumState(stage_index=0, stage=self.stages[0].name)

    def apply(self, state: CurriculumState, event: Event) -> CurriculumState:
        return self.apply_at(state, event, 0)

    def apply_at(self, state: CurriculumState, event: Event, seq: int) -> CurriculumState:
        match event:
            case ev.CheckpointSaved():
                s = msgspec.structs.replace(
                    state,
                    generations={**state.generations, event.model_id: event.generation},
                    last_seq=max(seq, state.last_seq),
                )
                if state.champion or state.promotions or event.generation != 0:
                    return s
                s = msgspec.structs.replace(s, promotions={seq: event.model_id})
                return self._crown(s, event, seq, event.model_id, 0, "initial")
            case ev.CandidatePromoted() if event.model_id in state.generations:
                generation = state.generations[event.model_id]
                s = msgspec.structs.replace(state, promotions={**state.promotions, seq: event.model_id})
                return self._crown(s, event, seq, event.model_id, generation, "promotion")
            case ev.ChampionRolledBack() if event.to_promotion_seq in state.promotions:
                # refused like the model registry refuses them: a model with no checkpoint, a
                # rollback to no promotion (projections.models)
                model = state.promotions[event.to_promotion_seq]
                generation = state.generations.get(model, 0)
                return self._crown(state, event, seq, model, generation, "rollback")
        return state

    def _crown(
        self, s: CurriculumState, event: Event, seq: int, model: str, generation: int, cause: str
    ) -> CurriculumState:
        index = stage_index_for(self.stages, generation)
        changes = s.changes
        if index != s.stage_index or not changes:
            changes = (
                *changes,
                StageChange(
                    seq=seq,
                    time=event.time,
                    from_stage=s.stage,
                    to_stage=self.stages[index].name,
                    generation=generation,
                    cause=cause,
                ),
            )
        return msgspec.structs.replace(
            s,
            champion=model,
            generation=generation,
            stage_index=index,
            stage=self.stages[index].name,
            changes=changes,
            last_seq=max(seq, s.last_seq),
        )

"""Pure planning of a training run: when one is due, its window, parent and step budget.

``plan_training`` turns the pool and the registry into the ``training.started`` to append
(or None): the window's shards (``projections.pool.training_window``), the parent (the newest
checkpoint not reverted; after a rollback, one saved since it, else the champion) and the
samples planned (at most ``max_samples_per_position`` per new position and ``train.steps``
steps). The trainer runs the plan in chunks of steps (one ``TrainSession``); ``combined`` adds up
the chunks' reports.
"""

from __future__ import annotations

import time

from engine.train import TrainReport
from handlers.loop.config import TrainingSection
from projections.models import ModelRecord, ModelRegistry
from projections.pool import Pool, training_window
from streams import events as ev
from streams.envelope import derived_id

__all__ = [
    "HANDLER",
    "choose_parent",
    "combined",
    "initial_model_id",
    "model_id_for",
    "plan_training",
    "steps_for",
]

HANDLER = "trainer"


def initial_model_id(run: str) -> str:
    return f"{run}-gen0"


def model_id_for(run: str, generation: int, training_id: str) -> str:
    return f"{run}-gen{generation}-{training_id[:8]}"


def choose_parent(registry: ModelRegistry) -> ModelRecord | None:
    """The newest checkpoint not reverted; after a rollback, one saved since it, else the champion."""
    since = registry.rollbacks[-1].seq if registry.rollbacks else 0
    champion = registry.champion.model_id if registry.champion else ""
    best: ModelRecord | None = None
    for record in registry.models.values():
        if record.model_id in registry.reverted_models:
            continue
        if record.saved_seq <= since and record.model_id != champion:
            continue
        if best is None or record.saved_seq > best.saved_seq:
            best = record
    return best


def steps_for(new_positions: int, window_positions: int, config: TrainingSection) -> tuple[int, int]:
    """``(steps, batch size)``: samples trained stay within ``max_samples_per_position`` per
    new position (at least one step) and ``train.steps``."""
    batch = max(1, min(config.train.batch_size, window_positions))
    allowed = int(config.max_samples_per_position * new_positions) // batch
    return max(1, min(config.train.steps, allowed)), batch


def plan_training(
    pool: Pool,
    registry: ModelRegistry,
    config: TrainingSection,
    *,
    run: str,
    trainer: str,
    force_positions: int | None = None,
) -> ev.TrainingStarted | None:
    """The ``training.started`` to append now, or None (under the threshold, no parent, no data).

    ``force_positions``: plan regardless of the threshold, as if that many positions were new
    (to replace an open training whose parent was reverted).
    """
    new = pool.positions_since_training if force_positions is None else force_positions
    if force_positions is None and new < config.threshold_positions:
        return None
    last, parent = pool.last_shard, choose_parent(registry)
    if last is None or parent is None:
        return None
    window = training_window(pool, registry, config)
    positions = sum(s.positions for s in window)
    if positions == 0:
        return None
    steps, batch = steps_for(new, positions, config)
    return ev.TrainingStarted(
        id=derived_id(f"{run}/{last.shard_id}", HANDLER, len(pool.trainings)),
        time=time.time(),
        run=run,
        trainer=trainer,
        parent_model=parent.model_id,
        shards=[s.shard_id for s in window],
        window_positions=positions,
        samples_planned=steps * batch,
    )


def combined(reports: list[TrainReport]) -> TrainReport:
    steps = sum(r.steps for r in reports)

    def mean(field: str) -> float:
        return sum(getattr(r, field) * r.steps for r in reports) / steps

    last = reports[-1]
    return TrainReport(
        steps=steps,
        samples_seen=sum(r.samples_seen for r in reports),
        policy_loss=mean("policy_loss"),
        value_loss=mean("value_loss"),
        policy_entropy=mean("policy_entropy"),
        final_policy_loss=last.final_policy_loss,
        final_value_loss=last.final_value_loss,
        final_lr=last.final_lr,
    )

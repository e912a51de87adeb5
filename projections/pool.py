"""Training-pool read model: the shards synced from selfplay games, and the trainings run on them.

Rules of the fold:

- ``pool.batch_synced`` adds a shard (object name, digest, games, positions, the GAMES
  sequence range of its batch, the model that played it). One batch gives one shard per
  model, all with the batch's range. A shard whose range overlaps another batch's range, or
  that repeats a (range, model) already held, is ignored and counted in ``ignored_batches``:
  a batch redone after a crash counts once.
- ``training.started`` records a training (its shards, parent, plan, and the positions that
  arrived since the previous one) and resets ``positions_since_training``. A training stays
  open until a ``checkpoint.saved`` or a critical ``health.check_failed`` names it as cause
  (``nan_loss``: diverged; another check: failed);
  an open training is the trainer's to retry. A newer training supersedes an open one.
- :func:`training_window` picks the newest shards up to the window size (fixed, or growing
  as a power of the pool's size) and leaves out shards played by reverted models.
- Version skew (``handlers/cluster``): ``cluster.policy_set`` gives ``max_model_lag``; a shard
  whose model was more generations than that behind the champion when the shard was synced
  (:func:`shard_lag`, from the registry) stays in the pool but out of the window.

The fold is linear in the events: shards, ranges and trainings sit in persistent collections
(``projections.persistent``); the tuples readers see are built when first read.
"""

from __future__ import annotations

from bisect import bisect_left
from functools import cached_property
from typing import Any, Protocol

import msgspec

from projections import persistent
from projections.base import BaseProjection
from streams import events as ev
from streams.cluster_events import ClusterPolicySet
from streams.envelope import Event

__all__ = [
    "Pool",
    "PoolProjection",
    "Shard",
    "Training",
    "WindowSettings",
    "shard_lag",
    "training_window",
    "window_size",
]

OPEN, CHECKPOINT, DIVERGED, FAILED, SUPERSEDED = "", "checkpoint", "diverged", "failed", "superseded"
NAN_LOSS, CRITICAL = "nan_loss", "critical"


class Shard(msgspec.Struct, frozen=True, kw_only=True):
    """One stored shard of training samples."""

    shard_id: str
    object_name: str
    digest: str
    games: int
    positions: int
    games_first_seq: int  # the GAMES range of the batch the shard came from
    games_last_seq: int
    models: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    seq: int = 0  # the EVENTS sequence of its pool.batch_synced
    time: float = 0.0

    @property
    def model_id(self) -> str:
        """The model that played the shard's games ("" if several or unknown)."""
        return self.models[0] if len(self.models) == 1 else ""


class Training(msgspec.Struct, frozen=True, kw_only=True):
    """One ``training.started`` and how it ended (``outcome`` "" while open)."""

    training_id: str
    seq: int = 0
    time: float = 0.0
    trainer: str = ""
    parent_model: str = ""
    shards: tuple[str, ...] = ()
    window_positions: int = 0
    samples_planned: int = 0
    new_positions: int = 0  # positions that arrived since the previous training
    outcome: str = OPEN  # "" | checkpoint | diverged | failed | superseded
    model_id: str = ""

    @property
    def open(self) -> bool:
        return self.outcome == OPEN


def _range_key(first: int, last: int) -> str:
    return f"{first}:{last}"


# dict=True: the tuples readers see (shards, ranges, trainings) are built once per state, when
# first read; forbid_unknown_fields: a snapshot of the v1 layout does not decode.
class Pool(msgspec.Struct, frozen=True, kw_only=True, dict=True, forbid_unknown_fields=True):
    shard_seq: persistent.Seq[Shard] = ()  # in the order synced, newest last
    shard_ids: persistent.Levels[str, Shard] = ()  # the newest shard of each id
    range_set: persistent.Seq[tuple[int, int]] = ()  # distinct batch ranges (a sorted set)
    range_shards: persistent.Levels[str, tuple[tuple[str, tuple[str, ...]], ...]] = ()  # (id, models)
    games: int = 0
    positions: int = 0
    positions_since_training: int = 0
    training_ids: persistent.Levels[str, Training] = ()  # by id, in the order started
    last_training: str = ""  # the id of the latest training
    ignored_batches: int = 0
    last_seq: int = 0
    max_model_lag: int = -1  # cluster.policy_set; -1: no limit

    @cached_property
    def shards(self) -> tuple[Shard, ...]:
        """Every shard, in the order synced, newest last."""
        return persistent.items(self.shard_seq)

    @cached_property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The distinct batch ranges, sorted."""
        return persistent.sorted_items(self.range_set)

    @cached_property
    def trainings(self) -> tuple[Training, ...]:
        """Every training, in the order started."""
        return tuple(persistent.merged(self.training_ids).values())

    @property
    def shard_count(self) -> int:
        return sum(len(level) for level in self.shard_seq)

    @property
    def last_shard(self) -> Shard | None:
        return persistent.last(self.shard_seq)

    @property
    def open_training(self) -> Training | None:
        """The last training if it has neither a checkpoint nor a failure yet."""
        last = self.training(self.last_training) if self.last_training else None
        return last if last is not None and last.open else None

    def shard(self, shard_id: str) -> Shard | None:
        return persistent.get(self.shard_ids, shard_id)

    def training(self, training_id: str) -> Training | None:
        return persistent.get(self.training_ids, training_id)


def _overlaps(ranges: persistent.Seq[tuple[int, int]], first: int, last: int) -> bool:
    """Whether [first, last] overlaps a held range other than exactly (first, last). Held ranges
    are disjoint, so in each sorted level only the neighbours of (first, last) can."""
    for level in ranges:
        i = bisect_left(level, (first, last))
        for j in (i - 1, i, i + 1):
            if 0 <= j < len(level):
                a, b = level[j]
                if (a, b) != (first, last) and a <= last and first <= b:
                    return True
    return False


class PoolProjection(BaseProjection[Pool]):
    name = "pool"
    version = 3  # v3: max_model_lag; v2: persistent collections (linear fold), tag-style handlers
    state_type = Pool

    def initial(self) -> Pool:
        return Pool()

    def apply(self, state: Pool, event: Event) -> Pool:
        return self.apply_at(state, event, 0)

    def apply_at(self, state: Pool, event: Event, seq: int) -> Pool:
        method = self.handler(event)
        if method is None:
            return state
        new = method(state, event, seq)
        return new if new is state else msgspec.structs.replace(new, last_seq=max(seq, state.last_seq))

    def on_pool_batch_synced(self, s: Pool, e: ev.PoolBatchSynced, seq: int) -> Pool:
        first, last = e.games_first_seq, e.games_last_seq
        models = tuple(e.models)
        key = _range_key(first, last)
        held = persistent.get(s.range_shards, key)
        repeated = held is not None and any(sid == e.shard_id or m == models for sid, m in held)
        if last < first or repeated or _overlaps(s.range_set, first, last):
            return msgspec.structs.replace(s, ignored_batches=s.ignored_batches + 1)
        shard = Shard(
            shard_id=e.shard_id,
            object_name=e.object_name,
            digest=e.digest,
            games=e.games,
            positions=e.positions,
            games_first_seq=first,
            games_last_seq=last,
            models=models,
            stages=tuple(e.stages),
            seq=seq,
            time=e.time,
        )
        return msgspec.structs.replace(
            s,
            shard_seq=persistent.append(s.shard_seq, shard),
            shard_ids=persistent.put(s.shard_ids, e.shard_id, shard),
            range_set=s.range_set if held is not None else persistent.add_sorted(s.range_set, (first, last)),
            range_shards=persistent.put(s.range_shards, key, (*(held or ()), (e.shard_id, models))),
            games=s.games + e.games,
            positions=s.positions + e.positions,
            positions_since_training=s.positions_since_training + e.positions,
        )

    def on_training_started(self, s: Pool, e: ev.TrainingStarted, seq: int) -> Pool:
        if s.training(e.id) is not None:
            return s
        trainings = s.training_ids
        current = s.open_training
        if current is not None:
            trainings = persistent.put(trainings, current.training_id,
                                       msgspec.structs.replace(current, outcome=SUPERSEDED))
        training = Training(
            training_id=e.id,
            seq=seq,
            time=e.time,
            trainer=e.trainer,
            parent_model=e.parent_model,
            shards=tuple(e.shards),
            window_positions=e.window_positions,
            samples_planned=e.samples_planned,
            new_positions=s.positions_since_training,
        )
        return msgspec.structs.replace(s, training_ids=persistent.put(trainings, e.id, training),
                                       last_training=e.id, positions_since_training=0)

    def _close(self, s: Pool, training_id: str, outcome: str, model_id: str = "") -> Pool:
        t = s.training(training_id)
        if t is None or not t.open:
            return s
        closed = msgspec.structs.replace(t, outcome=outcome, model_id=model_id)
        return msgspec.structs.replace(s, training_ids=persistent.put(s.training_ids, training_id, closed))

    def on_checkpoint_saved(self, s: Pool, e: ev.CheckpointSaved, seq: int) -> Pool:
        return self._close(s, e.causation_id, CHECKPOINT, e.model_id) if e.causation_id else s

    def on_cluster_policy_set(self, s: Pool, e: ClusterPolicySet, seq: int) -> Pool:
        return msgspec.structs.replace(s, max_model_lag=e.max_model_lag)

    def on_health_check_failed(self, s: Pool, e: ev.HealthCheckFailed, seq: int) -> Pool:
        if e.severity != CRITICAL or not e.causation_id:
            return s
        return self._close(s, e.causation_id, DIVERGED if e.check == NAN_LOSS else FAILED)


class WindowSettings(Protocol):
    """What the window needs from the training config (``TrainingSection`` has it)."""

    @property
    def window(self) -> str: ...  # "fixed" | "power"
    @property
    def window_positions(self) -> int: ...
    @property
    def window_exponent(self) -> float: ...


def window_size(total: int, config: WindowSettings) -> int:
    """Positions in the window for a pool of ``total`` eligible positions.

    Fixed: ``window_positions``. Power (KataGo style): ``window_positions *
    (total / window_positions) ** window_exponent``. Never below ``window_positions`` and
    never above ``total``.
    """
    base = max(1, config.window_positions)
    if total <= 0:
        return 0
    size = float(base)
    if config.window == "power" and total > base:
        size = base * (total / base) ** config.window_exponent
    return int(min(max(size, base), total))


def _excluded(reverted: Any) -> frozenset[str]:
    found = getattr(reverted, "reverted_models", None)
    return frozenset(found if found is not None else reverted or ())


def _champion_generations(registry: Any) -> list[tuple[int, int]]:
    """``(seq, generation)`` of every champion decision, in log order (promotions, rollbacks)."""
    models = registry.models
    points = [(p.seq, p.generation) for p in registry.promotions]
    points += [(b.seq, models[b.model_id].generation if b.model_id in models else 0)
               for b in registry.rollbacks]
    return sorted(points)


def shard_lag(registry: Any, shard: Shard, points: list[tuple[int, int]] | None = None) -> int:
    """Generations the model of ``shard`` was behind the champion when the shard was synced
    (the champion of the last decision before it); 0 when unknown."""
    points = _champion_generations(registry) if points is None else points
    champion = 0
    for seq, generation in points:
        if seq >= shard.seq:
            break
        champion = generation
    records = [registry.models[m] for m in shard.models if m in registry.models]
    if not records:
        return 0
    return max(champion - min(r.generation for r in records), 0)


def training_window(pool: Pool, reverted: Any, config: WindowSettings) -> list[Shard]:
    """The shards to train on, newest first, up to :func:`window_size` positions.

    ``reverted`` is the model registry (its ``reverted_models``) or a collection of model
    ids; shards played by any of them are left out; given the registry, so are shards whose
    :func:`shard_lag` exceeds the pool's ``max_model_lag``. Shards are taken whole: the newest
    one always, then older ones while the positions taken are fewer than the window.
    """
    excluded = _excluded(reverted)
    eligible = [s for s in pool.shards if not excluded.intersection(s.models)]
    max_lag = getattr(pool, "max_model_lag", -1)  # a v1 pool (tests/unit/legacy) has none
    if max_lag >= 0 and hasattr(reverted, "promotions"):
        points = _champion_generations(reverted)
        eligible = [s for s in eligible if shard_lag(reverted, s, points) <= max_lag]
    size = window_size(sum(s.positions for s in eligible), config)
    window: list[Shard] = []
    taken = 0
    for shard in reversed(eligible):
        if taken >= size:
            break
        window.append(shard)
        taken += shard.positions
    return window

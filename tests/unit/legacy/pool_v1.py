"""(Frozen v1 copy, for the old-vs-new tests; not used by the project.)

Training-pool read model: the shards synced from selfplay games, and the trainings run on them.

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
"""

from __future__ import annotations

from bisect import bisect_left

import msgspec

from projections.base import BaseProjection
from streams import events as ev
from streams.envelope import Event

__all__ = [
    "Pool",
    "PoolProjection",
    "Shard",
    "Training",
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


class Pool(msgspec.Struct, frozen=True, kw_only=True):
    shards: tuple[Shard, ...] = ()  # in the order synced, newest last
    ranges: tuple[tuple[int, int], ...] = ()  # distinct batch ranges, sorted
    games: int = 0
    positions: int = 0
    positions_since_training: int = 0
    trainings: tuple[Training, ...] = ()
    ignored_batches: int = 0
    last_seq: int = 0

    @property
    def last_shard(self) -> Shard | None:
        return self.shards[-1] if self.shards else None

    @property
    def open_training(self) -> Training | None:
        """The last training if it has neither a checkpoint nor a failure yet."""
        if self.trainings and self.trainings[-1].open:
            return self.trainings[-1]
        return None

    def shard(self, shard_id: str) -> Shard | None:
        return next((s for s in reversed(self.shards) if s.shard_id == shard_id), None)

    def training(self, training_id: str) -> Training | None:
        return next((t for t in reversed(self.trainings) if t.training_id == training_id), None)


def _holds(ranges: tuple[tuple[int, int], ...], key: tuple[int, int]) -> bool:
    i = bisect_left(ranges, key)
    return i < len(ranges) and ranges[i] == key


def _overlaps(ranges: tuple[tuple[int, int], ...], first: int, last: int) -> bool:
    """Whether [first, last] overlaps a held range other than exactly (first, last)."""
    i = bisect_left(ranges, (first, last))
    for j in (i - 1, i, i + 1):
        if 0 <= j < len(ranges):
            a, b = ranges[j]
            if (a, b) != (first, last) and a <= last and first <= b:
                return True
    return False


class PoolProjection(BaseProjection[Pool]):
    name = "pool"
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
        known = _holds(s.ranges, (first, last))
        repeated = known and any(
            x.shard_id == e.shard_id or x.models == models
            for x in reversed(s.shards)
            if (x.games_first_seq, x.games_last_seq) == (first, last)
        )
        if last < first or repeated or _overlaps(s.ranges, first, last):
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
        ranges = s.ranges
        if not known:
            i = bisect_left(ranges, (first, last))
            ranges = (*ranges[:i], (first, last), *ranges[i:])
        return msgspec.structs.replace(
            s,
            shards=(*s.shards, shard),
            ranges=ranges,
            games=s.games + e.games,
            positions=s.positions + e.positions,
            positions_since_training=s.positions_since_training + e.positions,
        )

    def on_training_started(self, s: Pool, e: ev.TrainingStarted, seq: int) -> Pool:
        if s.training(e.id) is not None:
            return s
        trainings = s.trainings
        if trainings and trainings[-1].open:
            trainings = (*trainings[:-1], msgspec.structs.replace(trainings[-1], outcome=SUPERSEDED))
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
        return msgspec.structs.replace(s, trainings=(*trainings, training), positions_since_training=0)

    def _close(self, s: Pool, training_id: str, outcome: str, model_id: str = "") -> Pool:
        for i in range(len(s.trainings) - 1, -1, -1):
            t = s.trainings[i]
            if t.training_id == training_id:
                if not t.open:
                    return s
                closed = msgspec.structs.replace(t, outcome=outcome, model_id=model_id)
                return msgspec.structs.replace(s, trainings=(*s.trainings[:i], closed, *s.trainings[i + 1 :]))
        return s

    def on_checkpoint_saved(self, s: Pool, e: ev.CheckpointSaved, seq: int) -> Pool:
        return self._close(s, e.causation_id, CHECKPOINT, e.model_id) if e.causation_id else s

    def on_health_check_failed(self, s: Pool, e: ev.HealthCheckFailed, seq: int) -> Pool:
        if e.severity != CRITICAL or not e.causation_id:
            return s
        return self._close(s, e.causation_id, DIVERGED if e.check == NAN_LOSS else FAILED)

"""The sync handler: finished selfplay games (GAMES) become training-pool shards.

Games are held, unacknowledged, until ``games_per_shard`` have arrived or ``max_wait_s``
has passed since the first of them. A batch covers a GAMES sequence range and gives one
shard per model that played in it (so a rollback can drop one model's games). Each shard's
samples go to the OBJ_POOL object store first; then ``pool.batch_synced`` is appended with
an id derived from the shard id; then the position is remembered and the batch acked.

The remembered position means "every game up to here is in a shard (or rejected)". So on
start the durable consumer is made again from the game after it: games an earlier process
held unacknowledged when it was killed come back at once and in order, not after their ack
wait behind newer games (which would have moved the position past them, and then they were
skipped: lost). Delivered in order from the position, a batch over ``first..last`` holds
every game of the run in that range.

After a crash between those steps the batch comes back: a batch already recorded past the
remembered position is rebuilt over the very same range (same shard ids, so its events are
deduplicated and shards already in the pool are not stored again); it is flushed once its
last game is back (or, should retention have dropped that game, once nothing more comes).
Undecodable or invalid games become ``event.rejected`` through the handler shell, and the
handler goes on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from engine.games import get_game
from engine.games.base import Game
from engine.samples import samples_from_records
from engine.selfplay import GameRecord, InvalidGameRecord, check_record
from handlers.loop.config import LoopConfig
from handlers.runtime.shell import HandlerShell
from projections.pool import Pool, PoolProjection
from projections.runner import ProjectionRunner
from streams import codec, names
from streams.consumer import Delivery
from streams.envelope import derived_id
from streams.errors import DecodeError
from streams.events import PoolBatchSynced
from streams.games import GameFinished, policy_array
from streams.kv import Heartbeat, Position, beat, load_position, save_position
from streams.objects import put_object
from streams.store import EventStore

__all__ = [
    "HANDLER",
    "PoolSync",
    "ShardPlan",
    "interrupted_batch",
    "plan_shards",
    "record_of",
    "serve",
    "shard_id_for",
]

HANDLER = "sync"
log = logging.getLogger(__name__)


# -- pure parts ---------------------------------------------------------------------------


def record_of(game: GameFinished) -> GameRecord:
    """The engine's record of a finished game (moves before the first policy: the opening);
    ``InvalidGameRecord`` when its packed policies are malformed."""
    try:
        policies = policy_array(game)
    except ValueError as exc:
        raise InvalidGameRecord(str(exc)) from exc
    return GameRecord(
        moves=tuple(game.moves),
        policies=tuple(map(tuple, policies.tolist())),
        outcome=game.outcome,
        plies=len(game.moves),
        opening_plies=len(game.moves) - len(policies),
        root_values=tuple(game.root_values),
        full_search=tuple(game.full_search),
    )


def shard_id_for(first_seq: int, last_seq: int, model_id: str) -> str:
    """The shard of ``model_id``'s games in the batch over GAMES ``first_seq..last_seq``."""
    return f"games-{first_seq}-{last_seq}-{names.token(model_id or 'unknown')}"


class ShardPlan(NamedTuple):
    shard_id: str
    model_id: str
    first_seq: int
    last_seq: int
    games: tuple[GameFinished, ...]


def plan_shards(first_seq: int, last_seq: int, games: Sequence[tuple[int, GameFinished]]) -> list[ShardPlan]:
    """One shard per model for the batch over ``first_seq..last_seq``, games in sequence order."""
    by_model: dict[str, list[GameFinished]] = {}
    for _, game in sorted(games, key=lambda pair: pair[0]):
        by_model.setdefault(game.model_id, []).append(game)
    return [
        ShardPlan(shard_id_for(first_seq, last_seq, model), model, first_seq, last_seq, tuple(gs))
        for model, gs in sorted(by_model.items())
    ]


def interrupted_batch(pool: Pool, position_seq: int) -> tuple[int, int] | None:
    """The range of a batch recorded in the pool but not finished (past the position)."""
    ranges = [r for r in pool.ranges if r[0] > position_seq]
    return min(ranges) if ranges else None


# -- the handler --------------------------------------------------------------------------


@dataclass
class _Pending:
    delivery: Delivery
    game: GameFinished
    arrived: float


@dataclass
class SyncStats:
    games: int = 0
    shards: int = 0
    shards_already_synced: int = 0
    batches: int = 0
    skipped_redelivered: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class PoolSync:
    """Turns the run's GAMES into pool shards; ``step`` fetches once and flushes what is due."""

    def __init__(
        self,
        store: EventStore,
        run: str,
        config: LoopConfig,
        *,
        node: str = "",
        ack_wait: float | None = None,
    ):
        """``ack_wait``: how long the server waits for an ack before redelivering (default:
        comfortably more than ``max_wait_s``; the held games are kept alive meanwhile)."""
        self.store = store
        self.run = run
        self.settings = config.sync
        self.game: Game = get_game(config.game.name, **config.game.params)
        self.node = node or f"{socket.gethostname()}-{HANDLER}"
        self.ack_wait = ack_wait or max(60.0, 2 * self.settings.max_wait_s + 30.0)
        # The shell gives the durable consumer and the way poison input is recorded.
        self.shell = HandlerShell(
            store,
            run,
            HANDLER,
            names.GAMES,
            names.run_filter(names.GAMES, run),
            self._not_used,
            ack_wait=self.ack_wait,
        )
        self.pool = ProjectionRunner(store, PoolProjection(), run)
        self.pending: dict[int, _Pending] = {}
        self.position = Position(0)
        self.resume: tuple[int, int] | None = None
        self.stats = SyncStats()
        self._touched = time.monotonic()

    @staticmethod
    async def _not_used(event, seq):  # pragma: no cover - the shell's react is not used here
        raise AssertionError("sync handles its deliveries itself")

    async def open(self) -> None:
        per_batch = self.settings.games_per_shard
        self.position = await load_position(self.store.log, self.run, HANDLER)
        await self.shell.consumer.open_from(
            self.position.seq + 1, ack_wait=self.ack_wait, max_ack_pending=max(1000, 2 * per_batch + 512)
        )
        self.pending.clear()
        await self.pool.catch_up()
        self.resume = interrupted_batch(self.pool.state, self.position.seq)
        if self.resume:
            log.info("sync: redoing the interrupted batch over GAMES %d..%d", *self.resume)

    async def close(self) -> None:
        await self.shell.consumer.close()

    # -- receiving ------------------------------------------------------------------------

    async def receive(self, delivery: Delivery) -> None:
        """Hold a valid game; acknowledge what was done before; record poison and go on."""
        if delivery.seq <= self.position.seq:
            self.stats.skipped_redelivered += 1
            await delivery.ack()
            return
        reason = ""
        try:
            event = codec.decode(delivery.data)
        except DecodeError as exc:
            event, reason = None, str(exc)
        if event is not None:
            reason = self._invalid(event)
        if reason:
            await self.shell.reject(delivery, reason)
            await delivery.ack()
            return
        assert isinstance(event, GameFinished)
        held = self.pending.get(delivery.seq)
        arrived = held.arrived if held else time.monotonic()
        self.pending[delivery.seq] = _Pending(delivery, event, arrived)

    def _invalid(self, event: object) -> str:
        if not isinstance(event, GameFinished):
            kind = getattr(event, "type", None) or getattr(event, "tag", type(event).__name__)
            return f"not a game.finished event: {kind}"
        if event.game != self.game.name:
            return f"game {event.game!r} in a {self.game.name} run"
        try:
            check_record(self.game, record_of(event))
        except InvalidGameRecord as exc:
            return f"invalid game record: {exc}"
        return ""

    # -- flushing -------------------------------------------------------------------------

    def due(self, now: float | None = None, *, idle: bool = False) -> bool:
        """A batch is ready: enough games, or the first has waited ``max_wait_s``. An
        interrupted batch waits for its last game (``idle``: nothing more came, so the rest of
        its range is gone from GAMES)."""
        if not self.pending:
            return False
        now = time.monotonic() if now is None else now
        waited = now - min(p.arrived for p in self.pending.values()) >= self.settings.max_wait_s
        if self.resume is not None:
            return max(self.pending) >= self.resume[1] or (waited and idle)
        return len(self.pending) >= self.settings.games_per_shard or waited

    async def flush(self) -> int:
        """Write the next batch's shards, remember the position, ack; returns shards written."""
        seqs = sorted(self.pending)
        if self.resume is not None:
            first, last = self.resume
            batch = [s for s in seqs if s <= last]
        else:
            batch = seqs[: self.settings.games_per_shard]
            first, last = batch[0], batch[-1]
        plans = plan_shards(first, last, [(s, self.pending[s].game) for s in batch])
        await self.pool.catch_up()
        written = 0
        for plan in plans:
            written += await self._store_shard(plan)
        self.position = Position(last, plans[-1].shard_id if plans else "")
        await save_position(self.store.log, self.run, HANDLER, self.position)
        for s in batch:
            await self.pending.pop(s).delivery.ack()
        self.stats.batches += 1
        self.stats.games += len(batch)
        self.resume = interrupted_batch(self.pool.state, self.position.seq)
        return written

    async def _store_shard(self, plan: ShardPlan) -> int:
        if self.pool.state.shard(plan.shard_id) is not None:
            self.stats.shards_already_synced += 1
            return 0
        records = [record_of(g) for g in plan.games]
        data, positions = await asyncio.to_thread(self._shard_bytes, records)
        object_name = names.shard_object(self.run, plan.shard_id)
        digest = await put_object(self.store.log, names.OBJ_POOL, object_name, data)
        cause = plan.games[-1]
        await self.store.append(
            PoolBatchSynced(
                id=derived_id(f"{self.run}/{plan.shard_id}", HANDLER),
                time=time.time(),
                run=self.run,
                causation_id=cause.id,
                correlation_id=cause.correlation_id or cause.id,
                shard_id=plan.shard_id,
                object_name=object_name,
                digest=digest,
                games=len(records),
                positions=positions,
                games_first_seq=plan.first_seq,
                games_last_seq=plan.last_seq,
                models=[plan.model_id],
                stages=sorted({g.stage for g in plan.games if g.stage}),
            )
        )
        self.stats.shards += 1
        return 1

    def _shard_bytes(self, records: list[GameRecord]) -> tuple[bytes, int]:
        samples = samples_from_records(self.game, records)
        return samples.to_bytes(), len(samples)

    # -- running --------------------------------------------------------------------------

    async def keep_alive(self) -> None:
        """Tell the server the held games are still being worked on (no redelivery)."""
        if time.monotonic() - self._touched < self.ack_wait / 3:
            return
        self._touched = time.monotonic()
        for pending in self.pending.values():
            await pending.delivery.in_progress()

    async def step(self, timeout: float = 0.5) -> int:
        """Fetch once, then flush every batch that is due; returns shards written."""
        room = max(1, min(256, 2 * self.settings.games_per_shard - len(self.pending)))
        deliveries = await self.shell.consumer.fetch(room, timeout=timeout)
        for delivery in deliveries:
            await self.receive(delivery)
        await self.keep_alive()
        written = 0
        while self.due(idle=not deliveries):
            written += await self.flush()
        return written

    async def heartbeat(self) -> None:
        await beat(
            self.store.log,
            self.run,
            Heartbeat(
                node=self.node,
                host="",
                roles=[HANDLER],
                detail={
                    "pending_games": float(len(self.pending)),
                    "shards_synced": float(self.stats.shards),
                    "games_synced": float(self.stats.games),
                    "rejected": float(self.shell.stats.rejected),
                },
            ),
        )

    async def run_until(
        self,
        stop: asyncio.Event,
        *,
        paused: Callable[[], bool] = lambda: False,
        poll: float = 0.5,
        beat_every: float = 3.0,
    ) -> None:
        """Sync until ``stop``; while ``paused()`` nothing is fetched or written."""
        await self.open()
        last_beat = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - last_beat >= beat_every:
                    await self.heartbeat()
                    last_beat = time.monotonic()
                if paused():
                    await self.keep_alive()
                    try:
                        await asyncio.wait_for(stop.wait(), poll)
                    except TimeoutError:
                        pass
                    continue
                await self.step(timeout=poll)
        finally:
            await self.close()


async def serve(ctx, config: LoopConfig) -> None:
    """The sync service: GAMES into pool shards until stopped; paused while halted."""
    sync = PoolSync(ctx.store, ctx.run, config, node=ctx.extra.get("node", ""))
    await sync.run_until(ctx.stop, paused=lambda: ctx.halted, beat_every=config.health.interval_s)

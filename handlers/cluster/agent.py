"""The node agent: the one process anyone starts on any machine of the cluster.

``jetzero agent --roles selfplay,eval --connect URL --creds FILE`` runs one ``Agent``:

- **join**: refused (``node.refused`` recorded, ``AgentRefused`` naming the version needed)
  if its software is below the run's ``min_version`` (``handlers.cluster.policy``); waits for
  the config in force (the run's latest ``loop.started``) and a champion; pulls the champion,
  verifies its digest (``handlers.cluster.model_sync``) and records ``node.joined``;
- **works**: the selfplay worker of the loop (``handlers.loop.selfplay.play``, playing the
  model this agent synced, not whatever the registry names) and the evaluation worker
  (``handlers.promotion.eval_worker.EvalWorker``) with, beside it, the CI pipeline's match
  player (``handlers.pipeline.work_player``), each restarted after a crash, all
  restarted on the new config when a new ``loop.started`` is recorded; both pause while the
  loop is halted;
- **singleton roles**: for its node's ``train`` / ``sync`` / ``promote`` roles it competes for
  the trainer, sync, promoter and evaluator, each run only while this node holds its fenced
  lease (``handlers.cluster.singletons``), started once the config in force is known;
- **model sync**: on ``candidate.promoted`` / ``champion.rolled_back`` it pulls the new
  champion, and only once its digest checks does selfplay switch to it (between games);
  a model that fails is refused (``node.model_refused``) and the old one played on;
- **commands**: ``command.node_resync`` addressed to it (``jetzero cluster heal``) makes it
  sync again; it answers with the ``node.model_synced`` / ``node.model_refused`` it causes;
- **heartbeat**: its ``NodeStatus`` in the nodes KV (roles, model and digest, software
  version, config digest, games/s, evals/s) every ``health.interval_s``; ``node.left`` and
  the status removed when it stops.

A lost connection is reconnected forever (``streams.connection``), and the agent keeps
working on what it has meanwhile: selfplay publishes through a ``GameOutbox``, so its finished
games wait in memory (up to ``OUTBOX_LIMIT``, then play waits) while no server answers, and
are stored once one does. Nothing is published twice: every event's id is derived from its
cause or fixed when the game finishes, a resent game is deduplicated by its id (and, past the
stream's duplicate window, looked up before it is resent), and a sync already recorded for
the same champion is not recorded again after a restart. Stopping is bounded: the games not
yet stored get ``FLUSH_S``, ``node.left`` gets ``LEAVE_S``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import logging
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from handlers.cluster import model_sync
from handlers.cluster.nodes import NodeStatus, drop_status, put_status, software_version, version_below
from handlers.cluster.policy import current_policy
from handlers.cluster.singletons import ROLE_SERVICES, serve_singleton, singletons_of
from handlers.loop.config import ConfigInForce, read_in_force
from handlers.loop.selfplay import play
from handlers.promotion.eval_worker import EvalWorker
from handlers.runtime.service import ServiceContext
from projections.loop_status import LoopStatusProjection
from projections.models import Champion, ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.cluster_events import NodeRefused
from streams.commands import NodeResync
from streams.config import NatsSettings
from streams.connection import connect
from streams.envelope import Event, derived_id, tag_of
from streams.errors import AgentRefused, ConfigError
from streams.kv import Heartbeat, get_value
from streams.store import EventStore

__all__ = ["AGENT_ROLES", "Agent", "AgentOptions", "GameOutbox", "run_agent"]

AGENT_ROLES = ("selfplay", "eval")
RESTART_BACKOFF_S = 1.0
WAIT_POLL_S = 0.5
OUTBOX_LIMIT = 10_000  # finished games held while no server answers; then selfplay waits
OUTBOX_BATCH = 1_000  # games stored by one append
OUTBOX_ATTEMPT_S = 5.0  # one append's wait for its acknowledgements before it is resent
FLUSH_S = 5.0  # at stop: how long the games not yet stored may take
LEAVE_S = 5.0  # at stop: how long node.left may take (past it, the status's TTL says it)
WORKERS_STOP_S = 30.0
PIPELINE_PLAYER = "handlers.pipeline.work_player"  # plays the CI pipeline's match units (eval role)

log = logging.getLogger(__name__)


@dataclass
class AgentOptions:
    name: str
    roles: tuple[str, ...]
    software_version: str = field(default_factory=software_version)
    beat_s: float | None = None  # None: the config in force's health.interval_s

    def __post_init__(self) -> None:
        names.token(self.name)
        if self.name != names.token(self.name):
            raise ConfigError(f"agent name {self.name!r} must be letters, digits, '-' or '_'")
        unknown = [r for r in self.roles if r not in AGENT_ROLES and r not in ROLE_SERVICES]
        if unknown or not self.roles:
            raise ConfigError(f"--roles: {', '.join(unknown) or 'none given'}: an agent takes "
                              f"{' and '.join(AGENT_ROLES)} work, and the singleton roles "
                              f"{', '.join(ROLE_SERVICES)} (under fenced leases)")


class GameOutbox(EventStore):
    """The store an agent's selfplay worker publishes through: ``append_many`` hands the
    finished games over and returns at once (its sequences are 0: not stored yet), so play
    goes on while no server answers. ``send`` stores them, oldest first, resending the same
    events until acknowledged: the stream deduplicates a resent id within its duplicate
    window, and past it the ids already stored are looked up and not resent. Every other
    call is the store's own."""

    def __init__(self, store: EventStore, limit: int = OUTBOX_LIMIT):
        super().__init__(store.log)
        self.limit = limit
        self.pending: deque[Event] = deque()
        self.stored = 0
        self.closed = False  # stopping: no more waiting for room
        self._changed = asyncio.Condition()

    async def append_many(self, events: Iterable[Event], *, window: int = 4000,
                          timeout: float = 30.0) -> list[int]:
        batch = list(events)
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.pending) < self.limit or self.closed)
            self.pending.extend(batch)
            self._changed.notify_all()
        return [0] * len(batch)

    async def send(self) -> None:
        """Store the held games until cancelled."""
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self.pending))
                batch = [self.pending[i] for i in range(min(OUTBOX_BATCH, len(self.pending)))]
            await self._store(batch)
            async with self._changed:
                for _ in batch:
                    self.pending.popleft()
                self.stored += len(batch)
                self._changed.notify_all()

    async def _store(self, batch: list[Event]) -> None:
        """Append ``batch`` until it is acknowledged, every copy under its own id."""
        first_sent = time.time()
        window = self.log.settings.duplicate_window_s
        while batch:
            try:
                await super().append_many(batch, timeout=OUTBOX_ATTEMPT_S)
                return
            except Exception as exc:  # noqa: BLE001 - no server, no leader: resent after a pause
                log.warning("game outbox: %d games not stored yet (%s: %s); resending",
                            len(batch), exc.__class__.__name__, exc)
            await asyncio.sleep(RESTART_BACKOFF_S)
            if time.time() - first_sent > 0.8 * window:  # dedupe may have forgotten the first copy
                batch, first_sent = await self._not_stored(batch, first_sent), time.time()

    async def _not_stored(self, batch: list[Event], since: float) -> list[Event]:
        """The events of ``batch`` not stored since ``since`` (all of them if that cannot be read)."""
        stored: set[str] = set()
        try:
            for aggregate in {(e.STREAM, e.run, e.aggregate()) for e in batch}:
                async for s in self.read(aggregate[0], subject_filter=names.aggregate_filter(*aggregate),
                                         start_time=since - 1.0):
                    stored.add(getattr(s.event, "id", ""))
        except Exception as exc:  # noqa: BLE001 - unknown: looked up again before the next resend
            log.warning("game outbox: stored games not read (%s)", exc)
            return batch
        return [e for e in batch if e.id not in stored]

    def close(self) -> None:
        """Stop making selfplay wait for room (the agent is stopping)."""
        self.closed = True

    async def flush(self, within: float) -> int:
        """Wait up to ``within`` seconds for every held game to be stored; how many were not."""
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: not self.pending), within)
        except TimeoutError:
            pass
        return len(self.pending)


class Agent:
    """One node agent on an open connection (``ctx``: store, run, loop status, stop)."""

    def __init__(self, ctx: ServiceContext, options: AgentOptions):
        self.ctx = ctx
        self.options = options
        self.name = options.name
        self.session = uuid.uuid4().hex
        self.registry = ProjectionRunner(ctx.store, ModelRegistryProjection(), ctx.run, use_snapshots=False)
        self.sync = model_sync.ModelSync(ctx.store, ctx.run, self.name, self.registry)
        self.in_force: ConfigInForce | None = None
        self.joined: ev.NodeJoined | None = None
        self.eval_worker: EvalWorker | None = None
        self._workers: list[tuple[asyncio.Task, asyncio.Event]] = []
        self._tasks: list[asyncio.Task] = []
        self.index = 0  # the selfplay worker's seed index (this node, this join)
        self._singletons_running = False
        self.outbox = GameOutbox(ctx.store)

    @property
    def store(self) -> EventStore:
        return self.ctx.store

    # -- joining ----------------------------------------------------------------------------

    async def check_version(self) -> None:
        """Refuse to join below the run's ``min_version``: ``node.refused``, then ``AgentRefused``."""
        policy = await current_policy(self.store, self.ctx.run)
        mine = self.options.software_version
        if not version_below(mine, policy.min_version):
            return
        reason = (f"jetzero {mine} on {self.name} is below the cluster's min_version "
                  f"{policy.min_version}: install jetzero {policy.min_version} or newer")
        await self.store.append(NodeRefused(
            id=derived_id(f"{self.ctx.run}/{self.name}/{mine}", "agent-refused", int(policy.time * 1000)),
            time=time.time(), run=self.ctx.run, causation_id=policy.id, node=self.name,
            software_version=mine, min_version=policy.min_version, host=socket.gethostname(),
            roles=list(self.options.roles), reason=reason))
        raise AgentRefused(reason)

    async def wait_for_config(self) -> ConfigInForce | None:
        """The config in force, once the run has one (None if stopped first)."""
        said = False
        while not self.ctx.stop.is_set():
            try:
                return await read_in_force(self.store, self.ctx.run)
            except ConfigError as exc:
                if not said:
                    log.info("agent %s: waiting for the config in force (%s)", self.name, exc)
                    said = True
            if await self.ctx.sleep(WAIT_POLL_S):
                break
        return None

    async def join(self) -> bool:
        """Version check, config in force, the champion synced, ``node.joined``; False if stopped."""
        await self.check_version()
        self.in_force = await self.wait_for_config()
        if self.in_force is None:
            return False
        self._start_singletons(self.in_force)  # a fresh run's trainer makes the first champion
        await self.registry.follow()
        while not self.ctx.stop.is_set() and self.sync.current is None:
            if self.registry.state.champion is not None:
                await self.sync.to_champion("join")
            if self.sync.current is None and await self.ctx.sleep(WAIT_POLL_S):
                return False
        if self.ctx.stop.is_set():
            return False
        node_agg = names.node_aggregate(self.name)
        joins = 0
        async for _ in self.store.read(names.EVENTS, subject_filter=names.subject(
                names.EVENTS, self.ctx.run, node_agg, tag_of(ev.NodeJoined))):
            joins += 1
        self.index = int(hashlib.sha256(f"{self.name}/{joins}".encode()).hexdigest()[:12], 16)
        current = self.sync.current
        assert current is not None
        self.joined = ev.NodeJoined(
            id=derived_id(self.session, "agent-joined"), time=time.time(), run=self.ctx.run,
            node=self.name, host=socket.gethostname(), roles=list(self.options.roles),
            model_id=current.model_id, model_digest=self.sync.digest,
            software_version=self.options.software_version,
            config_sha256=self.in_force.loop_sha256, session=self.session,
        )
        await self.store.append(self.joined)
        log.info("agent %s joined run %s (roles %s, model %s)", self.name, self.ctx.run,
                 ",".join(self.options.roles), current.model_id)
        return True

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Join, then work until stopped; ``node.left`` on the way out."""
        if not await self.join():
            await self._stop_workers()
            await self.registry.stop()
            return
        commands_from = await self.store.last_seq(names.COMMANDS) + 1
        self._tasks = [
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._retrying("game outbox", self.outbox.send)),
            asyncio.create_task(self._retrying("model sync", self._follow_champion)),
            asyncio.create_task(self._retrying("command inbox", lambda: self._inbox(commands_from))),
        ]
        reason = "stopped"
        try:
            starts = self.ctx.status.state.starts
            self._start_workers()
            while not await self.ctx.sleep(WAIT_POLL_S):
                for task in self._tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if self.ctx.status.state.starts != starts:  # a new loop.started: its config
                    starts = self.ctx.status.state.starts
                    fresh = await read_in_force(self.store, self.ctx.run)
                    if fresh.seq != (self.in_force.seq if self.in_force else 0):
                        log.info("agent %s: config in force changed (loop.started #%d)", self.name, fresh.seq)
                        await self._stop_workers()
                        self.in_force = fresh
                        self._start_workers()
        except BaseException as exc:
            reason = f"failed: {exc.__class__.__name__}: {exc}"
            raise
        finally:
            self.outbox.close()
            await self._stop_workers()
            if unsent := await self.outbox.flush(FLUSH_S):
                log.warning("agent %s: %d finished games not stored within %.0f s of stopping",
                            self.name, unsent, FLUSH_S)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.registry.stop()
            await self._leave(reason)

    async def _leave(self, reason: str) -> None:
        if self.joined is None:
            return
        left = ev.NodeLeft(id=derived_id(self.joined.id, "agent-left"), time=time.time(),
                           run=self.ctx.run, causation_id=self.joined.id, node=self.name, reason=reason)
        try:
            await asyncio.wait_for(self._record_leaving(left), LEAVE_S)
        except Exception as exc:  # noqa: BLE001 - leaving over a dead connection: the TTL says it
            log.warning("agent %s: node.left not recorded: %s", self.name,
                        exc or exc.__class__.__name__)

    async def _record_leaving(self, left: ev.NodeLeft) -> None:
        await self.store.append(left)
        await drop_status(self.store.log, self.ctx.run, self.name)

    def _start_singletons(self, in_force: ConfigInForce) -> None:
        """The node's singleton services, each run while this node holds its fenced lease."""
        for service in singletons_of(self.options.roles):
            self._spawn(service, self._singleton(service, in_force))
        self._singletons_running = True

    def _singleton(self, service: str, in_force: ConfigInForce) -> Callable[[asyncio.Event], Awaitable[None]]:
        async def body(stop: asyncio.Event) -> None:
            await serve_singleton(dataclasses.replace(self.ctx, stop=stop), service, in_force, node=self.name)

        return body

    def _start_workers(self) -> None:
        in_force = self.in_force
        assert in_force is not None
        if not self._singletons_running:  # stopped with the workers on a config change
            self._start_singletons(in_force)
        if "selfplay" in self.options.roles:
            self._spawn("selfplay", lambda stop: self._selfplay(in_force, stop))
        if "eval" in self.options.roles:
            self._spawn("eval", lambda stop: self._evaluate(in_force, stop))
            self._spawn("pipeline", self._pipeline_matches)

    def _spawn(self, role: str, body: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        stop = asyncio.Event()
        self._workers.append((asyncio.create_task(self._keep_running(role, body, stop)), stop))

    async def _keep_running(self, role: str, body: Callable[[asyncio.Event], Awaitable[None]],
                            stop: asyncio.Event) -> None:
        """Run ``body`` until ``stop``; a crash (a lost connection's failed append) restarts it."""
        while not stop.is_set():
            try:
                await body(stop)
            except Exception as exc:  # noqa: BLE001 - logged, restarted after a pause
                log.warning("agent %s: %s worker failed (%s: %s); restarting", self.name, role,
                            exc.__class__.__name__, exc)
                try:
                    await asyncio.wait_for(stop.wait(), RESTART_BACKOFF_S)
                except TimeoutError:
                    pass
            else:
                if not stop.is_set():  # returned by itself (the loop stopped): wait for more
                    try:
                        await asyncio.wait_for(stop.wait(), WAIT_POLL_S)
                    except TimeoutError:
                        pass

    async def _stop_workers(self) -> None:
        self._singletons_running = False
        for _, stop in self._workers:
            stop.set()
        tasks = [task for task, _ in self._workers]
        self._workers = []
        try:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WORKERS_STOP_S)
        except TimeoutError:
            log.warning("agent %s: a worker did not stop within %.0f s", self.name, WORKERS_STOP_S)

    async def _selfplay(self, in_force: ConfigInForce, stop: asyncio.Event) -> None:
        extra = {"node": self.selfplay_name, "index": self.index, "champion": self.playing}
        await play(dataclasses.replace(self.ctx, stop=stop, extra=extra, store=self.outbox), in_force.loop)

    async def _evaluate(self, in_force: ConfigInForce, stop: asyncio.Event) -> None:
        self.eval_worker = EvalWorker(
            self.store, self.ctx.run, in_force.loop, stop=stop, halted=lambda: self.ctx.halted,
            node=f"{self.name}-eval", simulations=in_force.promotion.simulations)
        await self.eval_worker.run_until_stopped()

    async def _pipeline_matches(self, stop: asyncio.Event) -> None:
        """The CI pipeline's match units (named by string: cluster and pipeline are peers)."""
        player = importlib.import_module(PIPELINE_PLAYER)
        await player.serve(dataclasses.replace(self.ctx, stop=stop), node=f"{self.name}-pipeline",
                           beat_s=self.options.beat_s or 1.0)

    def playing(self) -> Champion | None:
        """The model selfplay plays from its next game: the last one this agent verified."""
        return self.sync.current

    @property
    def selfplay_name(self) -> str:
        return f"{self.name}-selfplay"

    async def _retrying(self, what: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body`` forever: a failure (the connection lost mid-append) is retried."""
        while True:
            try:
                await body()
            except Exception as exc:  # noqa: BLE001 - logged, retried after a pause
                log.warning("agent %s: %s failed (%s: %s); retrying", self.name, what,
                            exc.__class__.__name__, exc)
                await asyncio.sleep(RESTART_BACKOFF_S)

    async def _follow_champion(self) -> None:
        while True:
            await self.registry.wait_for(lambda s: s.champion_last_seq != self.sync.seen_seq,
                                         timeout=None)  # type: ignore[arg-type]
            await self.sync.to_champion(model_sync.trigger_of(self.registry.state))

    async def _inbox(self, start_seq: int) -> None:
        """Commands addressed to this node from its join on (a resync asked before it is
        answered by the sync at join)."""
        subjects = names.aggregate_filter(names.COMMANDS, self.ctx.run, names.node_aggregate(self.name))
        async for stored in self.store.read(names.COMMANDS, subject_filter=subjects, start_seq=start_seq,
                                            follow=True):
            if isinstance(stored.event, NodeResync) and stored.event.node == self.name:
                log.info("agent %s: resync asked by %s", self.name, stored.event.by or "someone")
                await self.sync.to_champion("resync", command=stored.event)

    # -- heartbeat --------------------------------------------------------------------------

    async def status(self) -> NodeStatus:
        in_force = self.in_force
        current = self.sync.current
        games_per_s, games = await self._selfplay_rate()
        worker = self.eval_worker
        evals_per_s = worker.stats.games_per_minute(time.monotonic()) / 60.0 if worker else 0.0
        return NodeStatus(
            node=self.name, host=socket.gethostname(), session=self.session,
            roles=list(self.options.roles),
            model_id=current.model_id if current else "", model_digest=self.sync.digest,
            generation=current.generation if current else 0,
            software_version=self.options.software_version,
            config_sha256=in_force.loop_sha256 if in_force else "",
            games_per_s=games_per_s, evals_per_s=evals_per_s, games=games,
            match_pairs=worker.stats.pairs_played if worker else 0,
            state="paused" if self.ctx.halted else "running",
        )

    async def _selfplay_rate(self) -> tuple[float, int]:
        """Games/s and games of this node's selfplay worker, from the heartbeat it writes."""
        if "selfplay" not in self.options.roles:
            return 0.0, 0
        data = await get_value(self.store.log, names.KV_HEARTBEATS,
                               names.heartbeat_key(self.ctx.run, self.selfplay_name))
        if not data:
            return 0.0, 0
        try:
            beat = msgspec.msgpack.decode(data, type=Heartbeat)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return 0.0, 0
        return beat.detail.get("games_per_minute", 0.0) / 60.0, int(beat.detail.get("games", 0.0))

    async def _heartbeat(self) -> None:
        every = self.options.beat_s or (self.in_force.loop.health.interval_s if self.in_force else 3.0)
        while True:
            try:
                await put_status(self.store.log, self.ctx.run, await self.status())
            except Exception as exc:  # noqa: BLE001 - a lost beat is retried on the next tick
                log.warning("agent %s: heartbeat failed: %s", self.name, exc)
            await asyncio.sleep(every)  # a timer, not synchronisation


async def run_agent(settings: NatsSettings, run: str, options: AgentOptions, *,
                    stop: asyncio.Event | None = None) -> None:
    """Connect (reconnecting forever; streams are not created: the cluster's admin did) and run
    one agent until ``stop`` (or SIGTERM / SIGINT when no ``stop`` is given)."""
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
        import signal  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    conn = await connect(settings, name=f"jetzero-agent-{options.name}", ensure=False)
    store = EventStore(conn)
    status = ProjectionRunner(store, LoopStatusProjection(), run, use_snapshots=False)
    try:
        await status.follow()
        ctx = ServiceContext(f"agent-{options.name}", run, conn, store, status, stop)
        await Agent(ctx, options).run()
    finally:
        await status.stop()
        await conn.close()

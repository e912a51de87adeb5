"""The health service: pure checks over a snapshot, episodes, automatic halt, metrics endpoint.

Every ``health.interval_s`` the service takes a ``HealthInputs`` snapshot (projections plus
live readings) and runs the checks, each a pure function returning ``Failure``s:

    check                  severity   fails when
    selfplay_stalled       warning    running, not halted, no game for more than selfplay_stall_s
                                      (counted from the last game, the start or the resume)
    consumer_lag:<handler> warning    not halted and a durable consumer lags more than
                                      max_consumer_lag (halted handlers are paused on purpose)
    nan_loss               critical   the latest checkpoint's or a heartbeat's loss is NaN / inf
                                      (the name the trainer and the pool projection use)
    rejected_events        warning    more than max_rejections event.rejected in the run
    candidate_rejections   warning    more than max_candidate_rejections in a row since the
                                      last promotion
    disk_space             critical   free disk of the data dir below min_free_disk_gb (1e9 bytes)
    metrics_endpoint       warning    the metrics port could not be opened

A failure is recorded (``health.check_failed``) once per *episode*: when its check goes from
passing to failing. Ids derive from the check and the episode's start, and the open episodes
are remembered in KV, so a restarted health process does not record them again. A critical
failure that opens an episode also appends ``loop.halted`` (automatic, by ``health``) when
``auto_halt_on_critical`` and the loop is not halted; a human resume inside the same episode
is respected, not fought. Critical failures other processes record (the trainer's
``nan_loss``) halt the loop the same way: one recorded since the last start, halt or resume,
while the loop is not halted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from handlers.loop.config import HealthSection, LoopConfig
from handlers.loop.figures import latest_checkpoint
from handlers.loop.metrics import (
    LiveReadings,
    MetricsServer,
    MetricsSources,
    build_registry,
    follow_projections,
    read_live,
)
from projections.journal import Note
from projections.loop_status import LoopStatus
from projections.tally import GameTally
from streams import events as ev
from streams import names
from streams.envelope import derived_id
from streams.errors import ConcurrencyConflict
from streams.kv import Heartbeat, beat, get_value, put_value

__all__ = [
    "CRITICAL",
    "WARNING",
    "Decision",
    "Failure",
    "HealthInputs",
    "HealthService",
    "advance",
    "check_consumer_lag",
    "check_disk",
    "check_losses",
    "check_metrics_endpoint",
    "check_rejections",
    "check_selfplay_stall",
    "consecutive_rejections",
    "decide",
    "health_inputs",
    "recorded_critical",
    "run_checks",
    "serve",
]

log = logging.getLogger(__name__)
WARNING, CRITICAL = "warning", "critical"
HANDLER = "health"
EPISODES_KEY = "health-episodes"  # position key under which open episodes are remembered
GB = 1e9


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    check: str
    severity: str
    detail: str
    value: float = 0.0
    threshold: float = 0.0


class HealthInputs(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the checks look at, taken at ``now``."""

    now: float
    status: LoopStatus = LoopStatus()
    games: int = 0
    last_game_time: float = 0.0
    consumer_lags: dict[str, int] = {}
    rejected_events: int = 0
    consecutive_rejections: int = 0
    free_disk_bytes: int | None = None
    losses: dict[str, float] = {}
    metrics_error: str = ""
    recorded_critical: tuple[Note, ...] = ()  # critical failures recorded since start/halt/resume


# -- the checks (pure) ---------------------------------------------------------------------------


def check_selfplay_stall(i: HealthInputs, cfg: HealthSection) -> list[Failure]:
    s = i.status
    if s.state != "running" or s.halted:
        return []
    since = max(i.last_game_time, s.since, s.halted_since)  # halted_since: resumed at, here
    idle = i.now - since
    if idle <= cfg.selfplay_stall_s:
        return []
    last = "no game yet" if not i.last_game_time else f"{i.games} games so far"
    return [Failure(check="selfplay_stalled", severity=WARNING, value=idle,
                    threshold=cfg.selfplay_stall_s,
                    detail=f"no selfplay game for {idle:.0f} s ({last})")]


def check_consumer_lag(i: HealthInputs, cfg: HealthSection) -> list[Failure]:
    if i.status.halted:
        return []
    return [
        Failure(check=f"consumer_lag:{handler}", severity=WARNING, value=float(lag),
                threshold=float(cfg.max_consumer_lag),
                detail=f"consumer {handler} is {lag} messages behind")
        for handler, lag in sorted(i.consumer_lags.items())
        if lag > cfg.max_consumer_lag
    ]


def check_losses(i: HealthInputs, cfg: HealthSection) -> list[Failure]:
    bad = {source: value for source, value in sorted(i.losses.items()) if not math.isfinite(value)}
    if not bad:
        return []
    listed = ", ".join(f"{source} = {value}" for source, value in bad.items())
    return [Failure(check="nan_loss", severity=CRITICAL, value=float(len(bad)),
                    detail=f"training loss is not finite: {listed}")]


def check_rejections(i: HealthInputs, cfg: HealthSection) -> list[Failure]:
    out = []
    if i.rejected_events > cfg.max_rejections:
        out.append(Failure(check="rejected_events", severity=WARNING,
                           value=float(i.rejected_events), threshold=float(cfg.max_rejections),
                           detail=f"{i.rejected_events} poison inputs (undecodable, unknown, refused) "
                                  f"recorded (event.rejected) in this run"))
    if i.consecutive_rejections > cfg.max_candidate_rejections:
        out.append(Failure(check="candidate_rejections", severity=WARNING,
                           value=float(i.consecutive_rejections),
                           threshold=float(cfg.max_candidate_rejections),
                           detail=f"{i.consecutive_rejections} candidates rejected in a row "
                                  f"since the last promotion"))
    return out


def check_disk(i: HealthInputs, cfg: HealthSection) -> list[Failure]:
    if i.free_disk_bytes is None:
        return []
    free_gb = i.free_disk_bytes / GB
    if free_gb >= cfg.min_free_disk_gb:
        return []
    return [Failure(check="disk_space", severity=CRITICAL, value=free_gb,
                    threshold=cfg.min_free_disk_gb,
                    detail=f"{free_gb:.2f} GB free on the data dir's disk, "
                           f"under the {cfg.min_free_disk_gb:g} GB minimum")]


def check_metrics_endpoint(i: HealthInputs, cfg: HealthSection) -> list[Failure]:
    if not i.metrics_error:
        return []
    return [Failure(check="metrics_endpoint", severity=WARNING, detail=i.metrics_error)]


CHECKS = (check_selfplay_stall, check_consumer_lag, check_losses, check_rejections, check_disk,
          check_metrics_endpoint)


def run_checks(i: HealthInputs, cfg: HealthSection) -> list[Failure]:
    """Every failing check, in a stable order."""
    return [failure for check in CHECKS for failure in check(i, cfg)]


# -- episodes and the decision (pure) --------------------------------------------------------------


def advance(
    episodes: Mapping[str, float], failures: Sequence[Failure], now: float
) -> tuple[dict[str, float], list[tuple[Failure, float]]]:
    """Open episodes after this round, and the failures that opened one (with its start).

    An episode of a check lasts while it keeps failing; a passing round closes it.
    """
    current = {f.check for f in failures}
    open_now = {check: start for check, start in episodes.items() if check in current}
    started: list[tuple[Failure, float]] = []
    for failure in failures:
        if failure.check not in open_now:
            open_now[failure.check] = now
            started.append((failure, now))
    return open_now, started


def episode_id(run: str, check: str, start: float, index: int = 0) -> str:
    """The id of the ``index``-th event caused by one episode of one check."""
    return derived_id(f"{run}/{check}/{start!r}", HANDLER, index)


class EpisodeMemory(msgspec.Struct, kw_only=True):
    """What the service remembers in KV (a cache: losing it records open failures again)."""

    open: dict[str, float] = {}
    unrecorded: list[str] = []


class Decision(NamedTuple):
    episodes: dict[str, float]  # open episodes: check -> start time
    failures: list[Failure]  # every check failing now
    events: list[ev.HealthCheckFailed]  # one per episode opened now (or not yet recorded)
    halt: ev.LoopHalted | None  # the automatic halt, if a critical failure calls for one


def decide(
    inputs: HealthInputs,
    cfg: HealthSection,
    episodes: Mapping[str, float],
    *,
    run: str,
    node: str = "",
    unrecorded: Collection[str] = (),
) -> Decision:
    """What one round of checks records, given the episodes open before it.

    ``unrecorded`` names open episodes whose event may not have landed (the process stopped
    between remembering and appending): if still failing they are recorded again, with the
    same ids, which the server deduplicates.
    """
    failures = run_checks(inputs, cfg)
    open_now, started = advance(episodes, failures, inputs.now)
    started += [(f, open_now[f.check]) for f in failures
                if f.check in unrecorded and f.check in episodes]
    events = [
        ev.HealthCheckFailed.new(
            run, id=episode_id(run, f.check, start), check=f.check, severity=f.severity,
            detail=f.detail, node=node, value=f.value, threshold=f.threshold,
        )
        for f, start in started
    ]
    halt = None
    if cfg.auto_halt_on_critical and not inputs.status.halted:
        critical = [(f, start, event) for (f, start), event in zip(started, events, strict=True)
                    if f.severity == CRITICAL]
        if critical:
            f, start, cause = critical[0]
            halt = ev.LoopHalted.new(
                run, cause=cause, id=episode_id(run, f.check, start, 1), by=HANDLER,
                reason=f"health check {f.check} failed: {f.detail}", automatic=True,
            )
        elif inputs.recorded_critical:
            note = inputs.recorded_critical[-1]
            halt = ev.LoopHalted.new(
                run, id=derived_id(f"{run}/{note.time!r}/{note.text}", HANDLER, 1), by=HANDLER,
                reason=f"critical health check recorded: {note.text}", automatic=True,
            )
    return Decision(open_now, failures, events, halt)


def recorded_critical(journal: Any, status: LoopStatus) -> tuple[Note, ...]:
    """Critical failures in the journal recorded after the last start, halt or resume."""
    if journal is None:
        return ()
    cutoff = max(status.started_at, status.halted_since)
    return tuple(n for n in journal.health_failures
                 if n.kind == f"health.{CRITICAL}" and n.time > cutoff)


def consecutive_rejections(registry: Any) -> int:
    """Candidates rejected since the last promotion (the initial champion counts as one)."""
    if registry is None:
        return 0
    last_promotion = max((p.seq for p in registry.promotions), default=0)
    return sum(1 for r in registry.rejections if r.seq > last_promotion)


def health_inputs(
    states: Mapping[str, Any], live: LiveReadings, now: float, metrics_error: str = ""
) -> HealthInputs:
    """The checks' snapshot from projection states and live readings (pure)."""
    tally: GameTally = states.get("game_tally") or GameTally()
    journal = states.get("journal")
    registry = states.get("model_registry")
    losses: dict[str, float] = {}
    latest = latest_checkpoint(registry)
    if latest is not None:
        losses[f"checkpoint {latest.model_id} policy_loss"] = latest.policy_loss
        losses[f"checkpoint {latest.model_id} value_loss"] = latest.value_loss
    for hb in live.heartbeats:
        for key in ("policy_loss", "value_loss"):
            if key in hb.detail:
                losses[f"{hb.node} {key}"] = hb.detail[key]
    status = states.get("loop_status") or LoopStatus()
    return HealthInputs(
        now=now,
        status=status,
        games=tally.games,
        last_game_time=tally.last_game_time,
        consumer_lags=dict(live.consumer_lags),
        rejected_events=journal.poison_count if journal else 0,
        consecutive_rejections=consecutive_rejections(registry),
        free_disk_bytes=live.free_disk_bytes,
        losses=losses,
        metrics_error=metrics_error,
        recorded_critical=recorded_critical(journal, status),
    )


# -- the service -----------------------------------------------------------------------------------


class HealthService:
    """Projections, metrics endpoint and episode memory of one health process."""

    def __init__(self, ctx: Any, config: LoopConfig):
        self.ctx = ctx
        self.config = config
        self.node = ctx.extra.get("node") or f"{socket.gethostname()}-health"
        self.runners: dict[str, Any] = {}
        self.sources: MetricsSources | None = None
        self.server: MetricsServer | None = None
        self.metrics_error = ""
        self.episodes: dict[str, float] = {}
        self.unrecorded: set[str] = set()
        self.ticks = 0

    async def start(self) -> None:
        self.runners = await follow_projections(self.ctx.store, self.config)
        self.sources = MetricsSources(self.ctx.run, {"loop_status": self.ctx.status, **self.runners})
        self.sources.live = await read_live(self.ctx.log, self.ctx.run, self.config.nats.data_dir)
        self.server = MetricsServer(build_registry(self.sources))
        host, port = self.config.metrics.host, self.config.metrics.port
        try:
            self.server.start(host, port)
        except OSError as exc:
            self.metrics_error = f"metrics endpoint {host}:{port} could not be opened: {exc}"
            log.error("%s", self.metrics_error)
            self.server = None
        else:
            log.info("metrics on http://%s:%d/metrics", host, self.server.port)
        await self._load_memory()

    async def close(self) -> None:
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        for runner in self.runners.values():
            await runner.stop()

    async def tick(self) -> Decision:
        """One round: read, check, record what opened, halt if critical, beat."""
        assert self.sources is not None, "start() first"
        for runner in (self.ctx.status, *self.runners.values()):
            runner.raise_if_failed()
        live = await read_live(self.ctx.log, self.ctx.run, self.config.nats.data_dir)
        self.sources.live = live
        inputs = health_inputs(self.sources.states(), live, time.time(), self.metrics_error)
        decision = decide(inputs, self.config.health, self.episodes, run=self.ctx.run,
                          node=self.node, unrecorded=self.unrecorded)
        if decision.events:  # remember first: a crash before the append re-sends the same ids
            await self._remember(decision.episodes, {e.check for e in decision.events})
        for event in decision.events:
            log.warning("health check %s failed (%s): %s", event.check, event.severity, event.detail)
            await self.ctx.store.append(event)
        if decision.halt is not None and await self._append_halt(decision.halt):
            log.error("loop halted: %s", decision.halt.reason)
        if decision.events or decision.episodes != self.episodes:
            await self._remember(decision.episodes, set())
        self.sources.failing = tuple(sorted(decision.episodes))
        self.ticks += 1
        await beat(self.ctx.log, self.ctx.run, Heartbeat(
            node=self.node, host="", roles=[HANDLER],
            detail={"ticks": float(self.ticks), "checks_failing": float(len(decision.episodes))},
        ))
        return decision

    async def _append_halt(self, halt: ev.LoopHalted, attempts: int = 5) -> bool:
        """Append the halt unless the loop is halted, racing nobody: the append expects the
        loop aggregate's last sequence as seen by the folded status."""
        store, status = self.ctx.store, self.ctx.status
        loop_filter = names.aggregate_filter(names.EVENTS, self.ctx.run, names.AGG_LOOP)
        for _ in range(attempts):
            last = await store.last(names.EVENTS, loop_filter)
            last_seq = last.seq if last is not None else 0
            await status.wait_for(lambda _s, seq=last_seq: status.position >= seq, timeout=10.0)
            if status.state.halted:
                return False
            try:
                await store.append(halt, expected_last_seq=last_seq)
                return True
            except ConcurrencyConflict:
                continue
        return False

    async def _load_memory(self) -> None:
        data = await get_value(self.ctx.log, names.KV_POSITIONS, self._memory_key)
        try:
            memory = msgspec.msgpack.decode(data, type=EpisodeMemory) if data else EpisodeMemory()
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("episode memory unreadable: starting with no open episode")
            memory = EpisodeMemory()
        self.episodes, self.unrecorded = dict(memory.open), set(memory.unrecorded)

    async def _remember(self, episodes: dict[str, float], unrecorded: set[str]) -> None:
        memory = EpisodeMemory(open=episodes, unrecorded=sorted(unrecorded))
        await put_value(self.ctx.log, names.KV_POSITIONS, self._memory_key,
                        msgspec.msgpack.encode(memory))
        self.episodes, self.unrecorded = dict(episodes), set(unrecorded)

    @property
    def _memory_key(self) -> str:
        return names.position_key(self.ctx.run, EPISODES_KEY)


async def serve(ctx: Any, config: LoopConfig) -> None:
    """The health service: check every ``health.interval_s`` until stopped."""
    service = HealthService(ctx, config)
    try:
        await service.start()
        while not ctx.stop.is_set():
            await service.tick()
            if await ctx.sleep(config.health.interval_s):
                break
    finally:
        await service.close()

"""Prometheus metrics of one run, read from the projections at scrape time.

``metric_families`` is pure: projection states (``handlers.loop.figures.FIGURE_PROJECTIONS``)
plus the latest ``LiveReadings`` (heartbeats, consumer lags, free disk) become ``jetzero_*``
families, every sample labelled with the run. Every figure ``--status`` shows too comes from
``handlers.loop.figures.figures``, so the two cannot disagree. ``LoopCollector`` calls it on
each scrape from a private ``CollectorRegistry`` (never the global one).
``MetricsServer`` serves that registry with prometheus_client's threaded HTTP server.

Heartbeat ``detail`` keys read here: ``evals_per_s`` (selfplay workers, summed into
``network_evaluations_per_second``); ``policy_loss`` / ``value_loss`` feed the health checks.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from handlers.loop.config import LoopConfig
from handlers.loop.figures import FIGURE_PROJECTIONS, figures
from projections import build_projection
from projections.runner import ProjectionRunner
from streams.connection import Log
from streams.consumer import consumer_lags
from streams.kv import Heartbeat, alive_nodes
from streams.store import EventStore

__all__ = [
    "FOLLOWED",
    "LiveReadings",
    "LoopCollector",
    "MetricsServer",
    "MetricsSources",
    "build_registry",
    "consumer_lags",
    "follow_projections",
    "free_disk_bytes",
    "heartbeats",
    "metric_families",
    "read_live",
]

log = logging.getLogger(__name__)
PREFIX = "jetzero_"
COMPLETED_MATCHES_SHOWN = 10  # open matches are always exported; the latest completed ones too


# -- live readings: what is not in the log -------------------------------------------------------


class LiveReadings(msgspec.Struct, frozen=True, kw_only=True):
    heartbeats: tuple[Heartbeat, ...] = ()
    consumer_lags: dict[str, int] = {}
    free_disk_bytes: int | None = None
    taken_at: float = 0.0


async def heartbeats(conn: Log, run: str) -> list[Heartbeat]:
    """Heartbeats of ``run`` that have not expired (the bucket's TTL removes the others)."""
    return await alive_nodes(conn, run)


def free_disk_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing ancestor)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return None


async def read_live(conn: Log, run: str, data_dir: str | Path) -> LiveReadings:
    """Heartbeats of the nodes alive, consumer lags and free disk, now."""
    return LiveReadings(
        heartbeats=tuple(await heartbeats(conn, run)),
        consumer_lags=await consumer_lags(conn, run),
        free_disk_bytes=free_disk_bytes(data_dir),
        taken_at=time.time(),
    )


# -- projections followed for metrics and health ------------------------------------------------


# the loop status is not followed here: the service shell already follows it
FOLLOWED = tuple(name for name in FIGURE_PROJECTIONS if name != "loop_status")


async def follow_projections(store: EventStore, config: LoopConfig) -> dict[str, ProjectionRunner]:
    """Runners following every read model the metrics need, under the loop ``config`` in force."""
    runners: dict[str, ProjectionRunner] = {}
    try:
        for key in FOLLOWED:
            runner: ProjectionRunner = ProjectionRunner(store, build_projection(key, config), config.run)
            await runner.follow()
            runners[key] = runner
    except BaseException:
        for runner in runners.values():
            await runner.stop()
        raise
    return runners


class MetricsSources:
    """What the collector reads: live projection runners plus the latest live readings.

    The health service replaces ``live`` and ``failing`` each interval (whole objects, so the
    HTTP thread never sees a half-updated value).
    """

    def __init__(self, run: str, runners: Mapping[str, ProjectionRunner]):
        self.run = run
        self.runners = dict(runners)
        self.live = LiveReadings()
        self.failing: tuple[str, ...] = ()

    def states(self) -> dict[str, Any]:
        return {key: runner.state for key, runner in self.runners.items()}


# -- the pure translation into metric families --------------------------------------------------


def _family(
    kind: str,
    name: str,
    doc: str,
    run: str,
    samples: Iterable[tuple[str, float | None]],
    label: str | None = None,
) -> Metric:
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    family = cls(PREFIX + name, doc, labels=["run", *([label] if label else [])])
    for key, value in samples:
        if value is not None:
            family.add_metric([run, *([key] if label else [])], float(value))
    return family


def metric_families(
    run: str,
    states: Mapping[str, Any],
    live: LiveReadings,
    now: float,
    failing: Iterable[str] = (),
) -> list[Metric]:
    """Every ``jetzero_*`` family for one scrape (pure: states and readings in, families out)."""
    f = figures(states, now)
    matches = states.get("matches")
    out: list[Metric] = []

    def add(kind: str, name: str, doc: str, value: float | None) -> None:
        out.append(_family(kind, name, doc, run, [("", value)]))

    add("counter", "games_total", "Selfplay games recorded in the GAMES stream", f.games)
    add("counter", "positions_total", "Positions (moves) in those games", f.positions)
    add("gauge", "selfplay_games_per_minute", "Selfplay games finished per minute, last minute",
        f.games_per_minute)
    add("gauge", "last_game_age_seconds", "Seconds since the last selfplay game",
        now - f.last_game_time if f.last_game_time else None)
    add("gauge", "network_evaluations_per_second",
        "Network evaluations per second, summed over selfplay workers' heartbeats",
        sum(hb.detail.get("evals_per_s", 0.0) for hb in live.heartbeats if "selfplay" in hb.roles))

    add("counter", "training_steps_total", "Training steps of the furthest checkpoint", f.training_steps)
    add("gauge", "training_policy_loss", "Policy loss of the latest checkpoint", f.policy_loss)
    add("gauge", "training_value_loss", "Value loss of the latest checkpoint", f.value_loss)
    add("gauge", "models_saved", "Checkpoints in the model registry", f.models_saved)

    add("gauge", "pool_games", "Games synced into the training pool", f.pool_games)
    add("gauge", "pool_positions", "Positions synced into the training pool", f.pool_positions)
    add("gauge", "pool_shards", "Shards in the training pool", f.pool_shards)
    add("gauge", "pool_positions_since_training", "Positions synced since the last training",
        f.pool_positions_since_training)

    add("gauge", "champion_generation", "Generation of the champion", f.champion_generation)
    add("gauge", "champion_elo", "Champion's Elo on the ratings ladder", f.champion_elo)
    add("gauge", "champion_elo_ci95", "Half-width of the 95% interval of the champion's Elo",
        f.champion_elo_ci95)

    shown: list[Any] = []
    if matches is not None:
        every = list(matches.matches.values())
        done = sorted((m for m in every if m.completed), key=lambda m: m.completed_at)
        shown = [m for m in every if not m.completed] + done[-COMPLETED_MATCHES_SHOWN:]
    out.append(_family("gauge", "match_pairs_played", "Game pairs counted in a match", run,
                       [(m.match_id, m.pairs) for m in shown], label="match"))
    out.append(_family("gauge", "match_llr", "SPRT log-likelihood ratio of a match", run,
                       [(m.match_id, m.llr) for m in shown], label="match"))

    out.append(_family("gauge", "consumer_lag", "Messages a durable consumer has yet to finish",
                       run, sorted(live.consumer_lags.items()), label="handler"))
    add("gauge", "halted", "1 while the loop is halted", 1.0 if f.halted else 0.0)
    add("gauge", "running", "1 while the loop is running", 1.0 if f.running else 0.0)
    add("counter", "process_restarts_total", "Loop processes restarted by the supervisor", f.restarts)
    add("counter", "health_check_failures_total", "health.check_failed events recorded",
        f.health_failures)
    add("counter", "rejected_events_total", "Undecodable inputs recorded as event.rejected",
        f.rejected_events)
    out.append(_family("gauge", "health_check_failing", "1 for each health check failing now",
                       run, [(check, 1.0) for check in sorted(failing)], label="check"))
    add("gauge", "nodes_alive", "Nodes whose heartbeat has not expired", len(live.heartbeats))
    return out


class LoopCollector(Collector):
    """A prometheus_client collector over ``MetricsSources``, evaluated at every scrape."""

    def __init__(self, sources: MetricsSources, clock: Any = time.time):
        self.sources = sources
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        return metric_families(
            self.sources.run, self.sources.states(), self.sources.live, self.clock(),
            self.sources.failing,
        )


def build_registry(sources: MetricsSources) -> CollectorRegistry:
    """A fresh registry (never prometheus_client's global one) holding the loop collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoopCollector(sources))
    return registry


class MetricsServer:
    """The HTTP endpoint of one registry: ``start(host, port)`` then ``stop()``."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    def start(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` (port 0: any free one); OSError if it is taken."""
        self._httpd, self._thread = start_http_server(port, addr=host, registry=self.registry)

    @property
    def port(self) -> int | None:
        return int(self._httpd.server_port) if self._httpd is not None else None

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

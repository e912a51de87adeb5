"""Prometheus metrics of one run, read from the projections at scrape time.

``metric_families`` is pure: projection states (loop status, journal, model registry,
matches, ratings, pool, the GAMES tally) plus the latest ``LiveReadings`` (heartbeats,
consumer lags, free disk) become ``jetzero_*`` families, every sample labelled with the run.
``LoopCollector`` calls it on each scrape from a private ``CollectorRegistry`` (never the
global one), so metrics and ``--status`` read the same read models and cannot disagree.
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

from projections.base import BaseProjection
from projections.journal import JournalProjection
from projections.loop_status import LoopStatus
from projections.matches import MatchesProjection
from projections.models import ModelRegistryProjection
from projections.pool import Pool, PoolProjection
from projections.ratings import RatingsProjection
from projections.runner import ProjectionRunner
from streams import games as gm
from streams import names
from streams.connection import Log
from streams.consumer import consumer_lags
from streams.kv import Heartbeat, alive_nodes
from streams.store import EventStore

__all__ = [
    "GameTally",
    "GameTallyProjection",
    "LiveReadings",
    "LoopCollector",
    "MetricsServer",
    "MetricsSources",
    "build_registry",
    "consumer_lags",
    "follow_projections",
    "free_disk_bytes",
    "games_per_minute",
    "heartbeats",
    "latest_checkpoint",
    "metric_families",
    "PROJECTIONS",
    "read_live",
]

log = logging.getLogger(__name__)
PREFIX = "jetzero_"
RECENT_GAMES = 256  # game times the tally keeps for the games-per-minute rate
RATE_WINDOW_S = 60.0
COMPLETED_MATCHES_SHOWN = 10  # open matches are always exported; the latest completed ones too


# -- the GAMES tally: a pure fold of the raw game records -------------------------------------


class GameTally(msgspec.Struct, frozen=True, kw_only=True):
    games: int = 0
    positions: int = 0
    last_game_time: float = 0.0
    recent: tuple[float, ...] = ()  # times of the latest games, oldest first


class GameTallyProjection(BaseProjection[GameTally]):
    """Games and positions played in a run, and when the last game finished."""

    name = "game_tally"
    stream = names.GAMES
    state_type = GameTally

    def initial(self) -> GameTally:
        return GameTally()

    def on_GameFinished(self, s: GameTally, e: gm.GameFinished) -> GameTally:
        return GameTally(
            games=s.games + 1,
            positions=s.positions + len(e.moves),
            last_game_time=max(s.last_game_time, e.time),
            recent=(*s.recent, e.time)[-RECENT_GAMES:],
        )


def games_per_minute(tally: GameTally, now: float, window: float = RATE_WINDOW_S) -> float:
    """Games finished in the last ``window`` seconds, per minute.

    When every remembered game is inside the window (a fast run), the rate is taken over
    the span those games cover instead, which the ring of ``RECENT_GAMES`` bounds.
    """
    inside = [t for t in tally.recent if t >= now - window]
    if not inside:
        return 0.0
    if len(inside) == len(tally.recent) == RECENT_GAMES:
        span = now - min(inside)
        if span > 0:
            return 60.0 * len(inside) / span
    return 60.0 * len(inside) / window


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


PROJECTIONS: dict[str, Any] = {
    "journal": JournalProjection,
    "model_registry": ModelRegistryProjection,
    "matches": MatchesProjection,
    "ratings": RatingsProjection,
    "pool": PoolProjection,
    "game_tally": GameTallyProjection,
}


async def follow_projections(store: EventStore, run: str) -> dict[str, ProjectionRunner]:
    """Runners following every read model the metrics need (not loop status: the service has it)."""
    runners: dict[str, ProjectionRunner] = {}
    try:
        for key, factory in PROJECTIONS.items():
            runner: ProjectionRunner = ProjectionRunner(store, factory(), run)
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


def latest_checkpoint(registry: Any) -> Any:
    """The most recently saved checkpoint of a model registry, or None."""
    models = list(getattr(registry, "models", {}).values())
    return max(models, key=lambda m: m.saved_seq) if models else None


def metric_families(
    run: str,
    states: Mapping[str, Any],
    live: LiveReadings,
    now: float,
    failing: Iterable[str] = (),
) -> list[Metric]:
    """Every ``jetzero_*`` family for one scrape (pure: states and readings in, families out)."""
    status: LoopStatus = states.get("loop_status") or LoopStatus()
    journal = states.get("journal")
    registry = states.get("model_registry")
    matches = states.get("matches")
    ratings = states.get("ratings")
    pool: Pool | None = states.get("pool")
    tally: GameTally = states.get("game_tally") or GameTally()
    out: list[Metric] = []

    def add(kind: str, name: str, doc: str, value: float | None) -> None:
        out.append(_family(kind, name, doc, run, [("", value)]))

    add("counter", "games_total", "Selfplay games recorded in the GAMES stream", tally.games)
    add("counter", "positions_total", "Positions (moves) in those games", tally.positions)
    add("gauge", "selfplay_games_per_minute", "Selfplay games finished per minute, last minute",
        games_per_minute(tally, now))
    add("gauge", "last_game_age_seconds", "Seconds since the last selfplay game",
        now - tally.last_game_time if tally.last_game_time else None)
    add("gauge", "network_evaluations_per_second",
        "Network evaluations per second, summed over selfplay workers' heartbeats",
        sum(hb.detail.get("evals_per_s", 0.0) for hb in live.heartbeats if "selfplay" in hb.roles))

    latest = latest_checkpoint(registry)
    steps = max((m.step for m in registry.models.values()), default=0) if registry else 0
    add("counter", "training_steps_total", "Training steps of the furthest checkpoint", steps)
    add("gauge", "training_policy_loss", "Policy loss of the latest checkpoint",
        latest.policy_loss if latest else None)
    add("gauge", "training_value_loss", "Value loss of the latest checkpoint",
        latest.value_loss if latest else None)
    add("gauge", "models_saved", "Checkpoints in the model registry",
        len(registry.models) if registry else None)

    add("gauge", "pool_games", "Games synced into the training pool",
        pool.games if pool is not None else None)
    add("gauge", "pool_positions", "Positions synced into the training pool",
        pool.positions if pool is not None else None)
    add("gauge", "pool_shards", "Shards in the training pool",
        len(pool.shards) if pool is not None else None)
    add("gauge", "pool_positions_since_training", "Positions synced since the last training",
        pool.positions_since_training if pool is not None else None)

    champion = getattr(registry, "champion", None)
    rating = ratings.ladder.get(champion.model_id) if ratings and champion else None
    add("gauge", "champion_generation", "Generation of the champion",
        champion.generation if champion else None)
    add("gauge", "champion_elo", "Champion's Elo on the ratings ladder", rating.elo if rating else None)
    add("gauge", "champion_elo_ci95", "Half-width of the 95% interval of the champion's Elo",
        rating.ci95 if rating else None)

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
    add("gauge", "halted", "1 while the loop is halted", 1.0 if status.halted else 0.0)
    add("gauge", "running", "1 while the loop is running", 1.0 if status.state == "running" else 0.0)
    add("counter", "process_restarts_total", "Loop processes restarted by the supervisor",
        status.restarts)
    add("counter", "health_check_failures_total", "health.check_failed events recorded",
        journal.health_failure_count if journal else 0)
    add("counter", "rejected_events_total", "Undecodable inputs recorded as event.rejected",
        journal.poison_count if journal else 0)
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

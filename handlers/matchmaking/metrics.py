"""Prometheus metrics of the matchmaking server, served at ``GET /metrics`` on its own port.

One private ``CollectorRegistry`` per server (never the global one), every sample labelled with
the run, like the loop's metrics (``handlers.loop.metrics``). What happens is counted as it
happens (moves by who played them, games started by kind and finished by reason, the server's
own handling time of a human move from its frame to the broadcast of the new state, the log
append included, and the AI's time per move by level); what is is read at scrape time from the
server and its AI (connections, players online, live games, waiting seeks, the AI lanes' mean
batch and evaluations). ``config/grafana/jetzero.json``'s Matchmaking row queries these names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "MatchmakingMetrics"]

# a move's handling on the server: sub-millisecond when idle, tens of ms under load
MOVE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
AI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Live(Collector):
    """What the server holds now, read at each scrape."""

    def __init__(self, server: Any, run: str):
        self.server = server
        self.run = run

    def collect(self) -> Iterable[Metric]:
        s, run = self.server, self.run
        for name, doc, value in (
            ("connections", "Open WebSocket connections", len(s.clients)),
            ("players_online", "Players with at least one open connection", len(s.sessions)),
            ("live_games", "Games in progress on this server", len(s.tables)),
            ("seeks_waiting", "Human seeks waiting for an opponent", len(s.pool.seeks)),
        ):
            gauge = GaugeMetricFamily(f"jetzero_p2p_{name}", doc, labels=["run"])
            gauge.add_metric([run], value)
            yield gauge
        stats = getattr(s.ai, "stats", None)
        if stats is None:
            return
        batch = GaugeMetricFamily("jetzero_p2p_ai_mean_batch", "Positions per network call of the AI, "
                                  "by kind (raw_policy: levels 1-4, search: 5-8)", labels=["run", "kind"])
        evals = CounterMetricFamily("jetzero_p2p_ai_evaluations", "Positions the AI's network evaluated",
                                    labels=["run", "kind"])
        for kind in ("raw_policy", "search"):
            lane = getattr(stats, kind)
            batch.add_metric([run, kind], lane.mean_batch)
            evals.add_metric([run, kind], lane.evaluations)
        yield batch
        yield evals


class MatchmakingMetrics:
    """The server's registry and the instruments it updates."""

    def __init__(self, server: Any, run: str):
        self.run = run
        self.registry = CollectorRegistry(auto_describe=False)
        self.moves = Counter("jetzero_p2p_moves", "Moves played, by who played them (human | ai)",
                             ["run", "player"], registry=self.registry)
        self.games_started = Counter("jetzero_p2p_games_started",
                                     "Games started, by kind (vs_ai | vs_human | exhibition)",
                                     ["run", "kind"], registry=self.registry)
        self.games_finished = Counter("jetzero_p2p_games_finished", "Games finished, by reason",
                                      ["run", "reason"], registry=self.registry)
        self.move_seconds = Histogram("jetzero_p2p_move_seconds",
                                      "Server time of a human's move: frame to the new state's "
                                      "broadcast, the log append included", ["run"],
                                      buckets=MOVE_BUCKETS, registry=self.registry)
        self.ai_move_seconds = Histogram("jetzero_p2p_ai_move_seconds", "The AI's time per move, by level",
                                         ["run", "level"], buckets=AI_BUCKETS, registry=self.registry)
        self.registry.register(_Live(server, run))
        # the children updated at every move, looked up once (``labels`` costs more than ``inc``)
        self._moves_by = {kind: self.moves.labels(run, kind) for kind in ("human", "ai")}
        self._move_seconds = self.move_seconds.labels(run)

    def move_played(self, player_kind: str) -> None:
        self._moves_by[player_kind].inc()

    def game_started(self, kind: str) -> None:
        self.games_started.labels(self.run, kind).inc()

    def game_finished(self, reason: str) -> None:
        self.games_finished.labels(self.run, reason).inc()

    def human_move(self, seconds: float) -> None:
        self._move_seconds.observe(seconds)

    def ai_move(self, level: int, seconds: float) -> None:
        self.ai_move_seconds.labels(self.run, str(level)).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

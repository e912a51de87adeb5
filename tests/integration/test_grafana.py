"""The Grafana dashboard (``config/grafana/jetzero.json``) asks only for metrics jetzero really
serves: every ``jetzero_*`` name in its queries is in a real scrape of the health process or of
the matchmaking server (``GET /metrics`` on its port, after a game against the real AI)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

from handlers.loop.config import HealthSection, LoopConfig, MetricsSection
from streams import events as ev
from streams.server import free_port
from tests.integration.test_metrics import r, scrape_until, start_health, stop_health

pytestmark = pytest.mark.integration
DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "jetzero.json"
PROMETHEUS = DASHBOARD.parents[1] / "prometheus.yml"


def queried_names(dashboard: dict) -> set[str]:
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {name for expr in exprs for name in re.findall(r"\bjetzero_[a-z0-9_]+", expr)}


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares (a counter ``x`` is queried as ``x_total``)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\w+)$", text, re.M):
        names.add(f"{name}_total" if kind == "counter" and not name.endswith("_total") else name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    names |= set(re.findall(r"^(jetzero_[a-z0-9_]+)[{ ]", text, re.M))
    return names


def test_the_dashboard_has_a_row_per_surface_and_the_scrape_example_parses():
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert {"Selfplay", "Training", "Pool", "Promotion", "Loop health", "Cluster", "Matchmaking"} <= set(rows)
    assert all(p.get("targets") for p in dashboard["panels"] if p["type"] != "row")
    scrape = yaml.safe_load(PROMETHEUS.read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9464"]


async def test_every_metric_the_dashboard_queries_is_served(nats_settings, store):
    run, port = "g1", free_port()
    config = LoopConfig(run=run, nats=nats_settings, health=HealthSection(interval_s=0.2),
                        metrics=MetricsSection(port=port))
    await store.append(ev.LoopStarted.new(run, by="test"))
    task, stop = start_health(nats_settings, config)
    try:
        await scrape_until(port, lambda v: ("jetzero_games_total", r(run)) in v)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    finally:
        await stop_health(task, stop)
    text += await matchmaking_exposition(nats_settings, store)
    wanted = queried_names(json.loads(DASHBOARD.read_text()))
    assert len(wanted) >= 30 and any(name.startswith("jetzero_p2p_") for name in wanted)
    assert sorted(wanted - exposed_names(text)) == []


async def matchmaking_exposition(nats_settings, store) -> str:
    """The matchmaking server's exposition after one game against the real AI (level 1)."""
    from handlers.matchmaking.ai import AiPlayers, AiSettings
    from tests.integration.test_matchmaking_server import RUN, Client, play_out, running

    async with AiPlayers.open(AiSettings(workers=1, max_think_ms=200, batch_wait_ms=0), nats_settings,
                              RUN) as ai, running(store, ai=ai) as server, Client.open(server) as player:
        await player.send(type="seek", game="tictactoe", opponent="ai", level=1, seat=0)
        await play_out(player, await player.expect("start", timeout=60))

        def get() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as answer:
                return answer.read().decode()

        return await asyncio.to_thread(get)  # the server answers from this event loop

"""The Grafana dashboard (``config/grafana/jetzero.json``) asks only for metrics the health
process really serves: every ``jetzero_*`` name in its queries is in a real scrape."""

from __future__ import annotations

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
    wanted = queried_names(json.loads(DASHBOARD.read_text()))
    assert len(wanted) >= 20
    assert sorted(wanted - exposed_names(text)) == []

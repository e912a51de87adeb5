"""``jetzero report`` on a recorded tiny run: every chart is in one self-contained page, and what
the charts mark is what the projections hold."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from handlers.loop.config import load_loop_config
from handlers.loop.report import collect_report
from handlers.loop.report_charts import CHART_NAMES, draw_report, report_html
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from tests.loop_configs import nats_section
from tests.report_run import STAGES, append_recorded_run, append_rollback

pytestmark = pytest.mark.integration
RUN = "rp"
SVG = "{http://www.w3.org/2000/svg}"


def jetzero(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.cli", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def config(tmp_path, nats_settings):
    path = tmp_path / "loop.yaml"
    path.write_text(f"run: {RUN}\nnats: {json.dumps(nats_section(nats_settings))}\n")
    return path


def charts_of(page: str) -> dict[str, ET.Element]:
    """Each ``<figure id="chart-NAME">``'s SVG, parsed."""
    found = re.findall(r'<figure id="chart-([\w-]+)">(<svg\b.*?</svg>)', page, re.S)
    return {name: ET.fromstring(svg) for name, svg in found}


def marks(svg: ET.Element, gid: str) -> int:
    """How many markers the group ``gid`` draws (0 when there is no such group): one ``<use>``
    each when they share a size, else one ``<path>`` each."""
    group = next((e for e in svg.iter() if e.get("id") == gid), None)
    if group is None:
        return 0
    return sum(1 for e in group.iter(f"{SVG}use")) or sum(1 for e in group if e.tag == f"{SVG}path")


def external_urls(page: str) -> list[str]:
    """Every URL in the page but the SVG namespace declarations (xmlns="..." / xmlns:xlink="...")."""
    stripped = re.sub(r'xmlns="http://www\.w3\.org/2000/svg"|xmlns:xlink="http://www\.w3\.org/1999/xlink"',
                      "", page)
    urls = re.findall(r"(?:https?:)?//[\w.-]+\.\w+[^\s\"'<>]*", stripped)
    return urls + [ref for ref in re.findall(r'(?:href|src)="([^"]*)"', page) if not ref.startswith("#")]


async def test_the_report_marks_what_the_projections_hold(store, config, tmp_path, nats_settings):
    seqs = await append_recorded_run(store, RUN, nats_settings, tmp_path)
    registry = await ProjectionRunner(store, ModelRegistryProjection(), RUN, use_snapshots=False).catch_up()
    rollback_seq = await append_rollback(store, RUN, registry.promotions[1].seq)
    registry = await ProjectionRunner(store, ModelRegistryProjection(), RUN, use_snapshots=False).catch_up()

    out = jetzero("report", "-o", str(tmp_path / "r.html"), "--png", str(tmp_path / "png"),
                  "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert f"as of EVENTS #{rollback_seq}" in out.stdout
    page = (tmp_path / "r.html").read_text()
    charts = charts_of(page)
    assert list(charts) == list(CHART_NAMES)
    assert external_urls(page) == []
    assert "<script" not in page and "<link" not in page and "<img" not in page

    elo = charts["champion-elo"]
    promotions = [p for p in registry.promotions if not p.initial]
    assert len(promotions) == 2
    assert marks(elo, "champion-elo-promotions") == len(promotions)
    assert marks(elo, "champion-elo-rejections") == len(registry.rejections) == 1
    assert marks(elo, "champion-elo-rollbacks") == len(registry.rollbacks) == 1
    assert marks(charts["gates"], "gates-results") == 3  # the gate matches with pairs
    assert marks(charts["events"], "events-health") == 2
    assert marks(charts["events"], "events-halts") == 1
    for name in CHART_NAMES:
        assert (tmp_path / "png" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same page drawn in this process: the output is deterministic
    cfg = load_loop_config(config)
    data = await collect_report(store, cfg)
    assert report_html(data, draw_report(data)) == page
    assert [b.stage for b in data.bands] == ["opening", "main", "opening"]  # the rollback brings it back
    assert {b.stage for b in data.bands} == {s["name"] for s in STAGES}
    assert [p.checkpoint for p in data.losses] == [2, 3, 4]  # m0 (initial) is checkpoint 1
    assert sum(g for _, g in data.games_per_minute) == 48
    assert data.pool_positions[-1][1] == 225
    assert {g.player for g in data.graded} == {"raw-policy", "net-mcts-16", "random"}

    # as of the halt: the rollback and what followed are not drawn
    before = await collect_report(store, cfg, seq=seqs["loop.halted"])
    assert before.position == seqs["loop.halted"] and not before.of_kind("rollback")
    drawn = charts_of(report_html(before, draw_report(before)))
    assert marks(drawn["champion-elo"], "champion-elo-rollbacks") == 0
    assert marks(drawn["champion-elo"], "champion-elo-promotions") == 2
    assert not before.graded


async def test_an_empty_run_still_has_every_chart_and_bad_input_is_one_line(store, config, tmp_path):
    out = jetzero("report", "-o", str(tmp_path / "empty.html"), "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert list(charts_of((tmp_path / "empty.html").read_text())) == list(CHART_NAMES)
    bad = jetzero("report", "-o", str(tmp_path / "x.html"), "--until", "yesterday", "--config", str(config))
    assert bad.returncode == 2 and "--until" in bad.stderr
    beyond = jetzero("report", "-o", str(tmp_path / "y.html"), "--until", "999999", "--config", str(config))
    assert beyond.returncode == 2 and beyond.stderr.startswith("error: ")
    assert len(beyond.stderr.splitlines()) == 1
    assert not (tmp_path / "y.html").exists()

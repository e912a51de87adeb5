"""The one plotting path: deterministic, self-contained SVG; the learn bench's curve chart."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from bench.learn_connect4 import Point, curve_chart
from handlers.loop.charts import NAMESPACE_URLS, line_chart, svg_of

SVG = "{http://www.w3.org/2000/svg}"


def _grades(raw: float, search: float) -> dict:
    tally = lambda share: {"count": 10, "outcome_optimal": share, "exactly_optimal": share / 2}  # noqa: E731
    return {"raw": {"overall": tally(raw)}, "search_name": "net-mcts-8",
            "search": {"overall": tally(search)}, "searches": {"net-mcts-8": {"overall": tally(search)}}}


def test_an_svg_is_the_same_every_time_and_names_no_url_but_its_namespaces():
    def draw() -> str:
        series = {"a": [1, None, 3], "b": [2, 2, 2]}
        return svg_of(line_chart("c", "t", [1, 2, 3], series, hlines={"ref": 1.5}))

    first = draw()
    assert first == draw()
    assert first.startswith("<svg") and "<!DOCTYPE" not in first and "<?xml" not in first
    assert set(re.findall(r"https?://[^\"\s]+", first)) <= set(NAMESPACE_URLS)
    ids = re.findall(r' id="([^"]+)"', first)
    assert ids and all(i.startswith("c-") for i in ids)
    assert all(ref[1:].startswith("c-") for ref in re.findall(r'href="(#[^"]+)"', first))


def test_the_learn_bench_draws_its_curve_next_to_its_table(tmp_path):
    points = [Point("initial", 0.0, 0, "m0", 0, grades=_grades(0.3, 0.5)),
              Point("promotion", 12.5, 1, "m1", 900, error="grading failed"),
              Point("promotion", 30.0, 2, "m2", 2000, grades=_grades(0.6, 0.8))]
    svg, png = curve_chart(points, tmp_path)
    assert (svg.name, png.name) == ("learn_curve.svg", "learn_curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    root = ET.fromstring(svg.read_text())
    lines = [e for e in root.iter(f"{SVG}g") if re.fullmatch(r"learn-curve-line2d_\d+", e.get("id", ""))]
    assert len(lines) >= 2  # the series and the reference lines
    text = svg.read_text()  # matplotlib writes each text it draws as a comment too
    for label in ("raw policy", "net-mcts-8", "target", "reference: pure UCT, 10,000 iterations"):
        assert f"<!-- {label} -->" in text
    assert curve_chart([points[1]], tmp_path / "none") == []  # nothing graded: no chart

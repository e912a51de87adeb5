"""The one plotting path: matplotlib figures (Agg, imported only when a chart is drawn) to
deterministic SVG or PNG, and a self-contained HTML page of them.

``new_figure`` imports matplotlib lazily (a command that draws nothing never pays for it),
forces the Agg backend and the settings that make the output reproducible: a fixed
``svg.hashsalt`` and no date, creator or type in the metadata (matplotlib's defaults carry
URLs and the time). ``svg_of`` strips the XML prolog and prefixes every id with the chart's
name, so several charts share one page without clashing ids; the only URLs left in a chart are
the SVG and XLink namespace declarations (``NAMESPACE_URLS``). ``page`` wraps charts and tables
in one HTML file with no external reference. The run report (``handlers.loop.report_charts``)
and the learn bench's curve both draw through here.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

__all__ = [
    "NAMESPACE_URLS",
    "Chart",
    "line_chart",
    "new_figure",
    "page",
    "png_of",
    "svg_of",
    "write_pngs",
]

HASH_SALT = "jetzero"
NAMESPACE_URLS = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PNG_METADATA = {"Software": None}
_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
figure { margin: 1em 0; } figure svg { width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
tr:nth-child(even) { background: #f4f4f4; }
"""


class Chart(msgspec.Struct, kw_only=True):
    """One drawn chart: ``name`` (file and id), title, caption, and its matplotlib figure."""

    name: str
    title: str
    figure: Any
    caption: str = ""


def new_figure(width: float = 10.0, height: float = 4.0) -> Any:
    """A matplotlib ``Figure`` on the Agg canvas (matplotlib imported here, on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = HASH_SALT
    matplotlib.rcParams["svg.fonttype"] = "path"  # text as paths: no font to fetch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def svg_of(chart: Chart) -> str:
    """The chart as inline SVG: no prolog, ids prefixed with ``chart.name``, deterministic."""
    buffer = io.StringIO()
    chart.figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    text = _PROLOG.sub("", buffer.getvalue(), count=1)
    prefix = f"{chart.name}-"
    text = text.replace(' id="', f' id="{prefix}').replace('href="#', f'href="#{prefix}')
    return text.replace("url(#", f"url(#{prefix}")


def png_of(chart: Chart, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    chart.figure.savefig(buffer, format="png", dpi=dpi, metadata=_PNG_METADATA)
    return buffer.getvalue()


def write_pngs(charts: Iterable[Chart], directory: Path) -> list[Path]:
    """Each chart as ``<directory>/<name>.png`` (the directory is created); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in charts:
        path = directory / f"{chart.name}.png"
        path.write_bytes(png_of(chart))
        written.append(path)
    return written


def table_html(rows: Sequence[Sequence[Any]], head: Sequence[str] = ()) -> str:
    cells = [("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>")] if head else []
    cells += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    return "<table>" + "".join(cells) + "</table>"


def page(
    title: str, charts: Iterable[Chart], *, intro: str = "", tables: Sequence[tuple[str, str]] = ()
) -> str:
    """One self-contained HTML page: ``intro`` (escaped text), each ``(heading, table html)``,
    then every chart as inline SVG in a ``<figure id="chart-<name>">``."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for heading, table in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>{table}")
    for chart in charts:
        parts.append(f'<h2>{html.escape(chart.title)}</h2><figure id="chart-{chart.name}">{svg_of(chart)}')
        if chart.caption:
            parts.append(f"<figcaption>{html.escape(chart.caption)}</figcaption>")
        parts.append("</figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def line_chart(
    name: str,
    title: str,
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    hlines: dict[str, float] | None = None,
    caption: str = "",
) -> Chart:
    """Lines over one x axis (``None`` leaves a gap), dashed horizontal reference lines."""
    figure = new_figure()
    ax = figure.subplots()
    for label, ys in series.items():
        ax.plot(x, [float("nan") if y is None else y for y in ys], marker="o", label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="grey")
        ax.annotate(label, (0, y), xycoords=("axes fraction", "data"), fontsize=8,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize=8)
    return Chart(name=name, title=title, figure=figure, caption=caption)

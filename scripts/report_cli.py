"""``jetzero report``: a run's charts in one self-contained HTML file, built from the log alone.

    jetzero report -o report.html [--run R] [--until SEQ|TIME] [--png DIR]

Works with the loop stopped or running (it only reads). The charts are drawn by
``handlers.loop.report_charts`` from the projections (``handlers.loop.report``); matplotlib is
imported only here, when a report is drawn.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from scripts.common import ConfigOption, RunOption, fail, guarded, parse_point, with_store

app = typer.Typer(help="A run's charts (Elo, gates, losses, throughput, health) as one HTML file.",
                  add_completion=False)


@app.callback(invoke_without_command=True)
def report(
    output: Path = typer.Option(..., "--output", "-o", help="the HTML file to write"),
    run: str = RunOption,
    until: str = typer.Option(None, "--until", help="SEQ (of EVENTS) or TIME (ISO 8601); default: now"),
    png: Path = typer.Option(None, "--png", help="also write each chart as DIR/<chart>.png"),
    config: Path = ConfigOption,
) -> None:
    """Write the report of a run (from its log) to OUTPUT."""
    from handlers.loop.config import load_loop_config
    from handlers.loop.report import collect_report

    seq, when = parse_point(until, "--until") if until else (None, None)
    cfg = guarded(lambda: load_loop_config(config, {"run": run} if run is not None else None), code=2)
    started = time.perf_counter()
    data = with_store(cfg, lambda store: collect_report(store, cfg, seq=seq, time=when))
    folded = time.perf_counter() - started

    def draw() -> list[Path]:
        from handlers.loop.charts import write_pngs
        from handlers.loop.report_charts import draw_report, report_html

        charts = draw_report(data)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report_html(data, charts), encoding="utf-8")
        return write_pngs(charts, png) if png is not None else []

    try:
        pngs = draw()
    except OSError as exc:
        fail(f"cannot write the report: {exc}", 2)
        return
    typer.echo(f"report of run {data.run} as of EVENTS #{data.position}: {output}"
               + (f" and {len(pngs)} PNGs in {png}" if pngs else "")
               + f" (log read in {folded:.2f} s, total {time.perf_counter() - started:.2f} s)")

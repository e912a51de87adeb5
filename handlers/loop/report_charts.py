"""The run report's charts, drawn from ``ReportData`` through the one plotting path
(``handlers.loop.charts``), and the page that holds them.

Every chart of ``CHART_NAMES`` is always drawn (one with nothing to show says so), so a report
has the same sections whatever the run did. Marks that a reader (or a test) counts carry an id
(matplotlib's ``gid``, prefixed with the chart's name in the page): ``champion-elo-promotions``,
``-rejections``, ``-rollbacks``, ``gates-results``, ``events-health``, ``events-halts``.
Times are minutes since the run's first event; curriculum stages are shaded bands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from handlers.loop.charts import Chart, new_figure, page, table_html
from handlers.loop.report import ReportData

__all__ = ["CHART_NAMES", "draw_report", "report_html"]

ANNOTATED_GATES = 30  # more gate results than this: pairs shown by marker size only
CHART_NAMES = ("champion-elo", "gates", "losses", "throughput", "events", "accuracy")
_BAND_COLOURS = ("#e8f0fe", "#fef3e0", "#e6f4ea", "#fce8e6", "#f3e8fd")
_DECISIONS = {"promotion": ("^", "tab:green"), "rejection": ("x", "tab:red"), "rollback": ("v", "tab:orange")}
_EVENT_ROWS = {"health.warning": 0, "health.critical": 1, "loop.halted": 2, "loop.resumed": 3,
               "process.restarted": 4, "loop.started": 5, "loop.stopped": 6}


def _minutes(data: ReportData) -> Callable[[float], float]:
    return lambda t: (t - data.start) / 60.0


def _bands(ax: Any, data: ReportData) -> None:
    at = _minutes(data)
    stages = list(dict.fromkeys(band.stage for band in data.bands))
    labelled: set[str] = set()
    for band in data.bands:
        colour = _BAND_COLOURS[stages.index(band.stage) % len(_BAND_COLOURS)]
        label = f"stage {band.stage}" if band.stage not in labelled else None
        labelled.add(band.stage)
        ax.axvspan(at(band.start), at(band.end), color=colour, zorder=0, label=label)


def _time_axis(ax: Any, data: ReportData) -> None:
    """The run's whole span, in minutes, on every time chart."""
    ax.set_xlim(0, max(_minutes(data)(data.end), 1.0))
    ax.set_xlabel("minutes since the run's first event")


def _checkpoint_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("checkpoint (in the order saved)")


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey")


def champion_elo(data: ReportData) -> Chart:
    figure = new_figure()
    ax = figure.subplots()
    at = _minutes(data)
    _bands(ax, data)
    rated = [c for c in data.champion if c.elo is not None]
    if rated:
        xs = [at(c.time) for c in rated] + [at(data.end)]
        ys = [c.elo for c in rated]
        ax.step(xs, [*ys, ys[-1]], where="post", color="tab:blue", label="champion Elo")
        ax.errorbar(xs[:-1], ys, yerr=[c.ci95 if c.ci95 is not None and math.isfinite(c.ci95) else 0
                                       for c in rated], fmt="o", color="tab:blue", capsize=3)
    for kind, (marker, colour) in _DECISIONS.items():
        marks = data.of_kind(kind)
        if not marks:
            continue
        ys = [d.elo if d.elo is not None else _champion_elo_at(data, d.time) for d in marks]
        points = ax.scatter([at(d.time) for d in marks], ys, marker=marker, color=colour, s=60,
                            zorder=3, label=f"{kind}s ({len(marks)})")
        points.set_gid(f"{kind}s")
    for mark in data.marks:
        if mark.kind == "loop.halted":
            ax.axvline(at(mark.time), color="tab:red", linestyle=":", linewidth=1)
    if not data.champion:
        _empty(ax, "no champion yet")
    _time_axis(ax, data)
    ax.set_ylabel("Elo (ladder, anchor: random player)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return Chart(name="champion-elo", title="Champion Elo over time", figure=figure,
                 caption="The champion's rating ± 95% interval from when it became champion; "
                         "promotions, rejections and rollbacks marked; dotted lines are halts; "
                         "bands are curriculum stages.")


def _champion_elo_at(data: ReportData, time: float) -> float:
    elo = 0.0
    for c in data.champion:
        if c.time <= time and c.elo is not None:
            elo = c.elo
    return elo


def gates(data: ReportData) -> Chart:
    figure = new_figure()
    ax = figure.subplots()
    if data.gates:
        xs = [g.checkpoint for g in data.gates]
        ys = [g.elo for g in data.gates]
        errors = [g.ci95 if math.isfinite(g.ci95) else 0.0 for g in data.gates]
        ax.errorbar(xs, ys, yerr=errors, fmt="none", ecolor="grey", capsize=3)
        colours = ["tab:green" if g.verdict == "accept" else "tab:red" if g.verdict == "reject"
                   else "tab:grey" for g in data.gates]
        most = max(g.pairs for g in data.gates)
        sizes = [12 + 60 * g.pairs / most for g in data.gates]  # the more pairs, the larger
        ax.scatter(xs, ys, c=colours, s=sizes, zorder=3).set_gid("results")
        if len(data.gates) <= ANNOTATED_GATES:
            for g in data.gates:
                ax.annotate(f"{g.pairs} pairs", (g.checkpoint, g.elo), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
        ax.axhline(0, color="black", linewidth=0.8)
    else:
        _empty(ax, "no gate match played yet")
    _checkpoint_axis(ax)
    ax.set_ylabel("Elo vs the champion")
    ax.grid(alpha=0.3)
    return Chart(name="gates", title="Gate results per checkpoint", figure=figure,
                 caption="Candidate vs champion: Elo ± 95% interval and pairs played (the marker's "
                         "size); green accepted, red rejected, grey inconclusive or open; an infinite "
                         "interval (every pair won or lost) is not drawn.")


def losses(data: ReportData) -> Chart:
    figure = new_figure()
    ax = figure.subplots()
    if data.losses:
        xs = [p.checkpoint for p in data.losses]
        ax.plot(xs, [p.policy_loss for p in data.losses], marker="o", label="policy loss")
        ax.plot(xs, [p.value_loss for p in data.losses], marker="s", label="value loss")
        ax.legend(loc="best", fontsize=8)
    else:
        _empty(ax, "no trained checkpoint yet")
    _checkpoint_axis(ax)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    return Chart(name="losses", title="Training loss per checkpoint", figure=figure,
                 caption="The policy and value loss each trained checkpoint reported.")


def throughput(data: ReportData) -> Chart:
    figure = new_figure()
    ax = figure.subplots()
    at = _minutes(data)
    _bands(ax, data)
    if data.games_per_minute:
        ax.bar([at(t) for t, _ in data.games_per_minute], [g for _, g in data.games_per_minute], width=0.9,
               align="edge", color="tab:blue", alpha=0.7, label="games per minute")
    ax.set_ylabel("selfplay games per minute")
    _time_axis(ax, data)
    pool_ax = ax.twinx()
    if data.pool_positions:
        xs = [at(data.start)] + [at(t) for t, _ in data.pool_positions] + [at(data.end)]
        ys = [0] + [p for _, p in data.pool_positions] + [data.pool_positions[-1][1]]
        pool_ax.step(xs, ys, where="post", color="tab:orange", label="pool positions")
    pool_ax.set_ylabel("positions in the pool")
    if not data.games_per_minute and not data.pool_positions:
        _empty(ax, "no selfplay game yet")
    handles = ax.get_legend_handles_labels()
    more = pool_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8)
    return Chart(name="throughput", title="Selfplay and pool over time", figure=figure,
                 caption="Games finished per minute (bars) and the training pool's positions (line).")


def events(data: ReportData) -> Chart:
    figure = new_figure(height=3.0)
    ax = figure.subplots()
    at = _minutes(data)
    _bands(ax, data)
    groups = {"health": ("health.",), "halts": ("loop.halted",), "others": ("loop.resumed", "process.",
                                                                             "loop.started", "loop.stopped")}
    styles = {"health": ("D", "tab:red"), "halts": ("X", "black"), "others": ("|", "tab:grey")}
    for gid, prefixes in groups.items():
        marks = [m for m in data.marks if m.kind.startswith(prefixes)]
        if marks:
            marker, colour = styles[gid]
            points = ax.scatter([at(m.time) for m in marks], [_EVENT_ROWS.get(m.kind, 0) for m in marks],
                                marker=marker, color=colour, s=50, zorder=3, label=f"{gid} ({len(marks)})")
            points.set_gid(gid)
    ax.set_yticks(list(_EVENT_ROWS.values()), list(_EVENT_ROWS))
    ax.set_ylim(-0.5, len(_EVENT_ROWS) - 0.5)
    _time_axis(ax, data)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="upper right", fontsize=8)
    return Chart(name="events", title="Health failures, halts and restarts", figure=figure,
                 caption="Every health failure, halt, resume, start, stop and process restart.")


def accuracy(data: ReportData) -> Chart:
    figure = new_figure()
    ax = figure.subplots()
    at = _minutes(data)
    players = list(dict.fromkeys(g.player for g in data.graded if not g.reference))
    for player in players:
        points = [g for g in data.graded if g.player == player]
        ax.plot([at(g.time) for g in points], [100 * g.outcome_optimal for g in points], marker="o",
                label=f"{player} (outcome-optimal)")
    references = {g.player: g for g in data.graded if g.reference}  # the latest grade of each
    for player, g in references.items():
        ax.axhline(100 * g.outcome_optimal, linestyle="--", linewidth=1, color="grey")
        ax.annotate(player, (0, 100 * g.outcome_optimal), xycoords=("axes fraction", "data"), fontsize=8,
                    xytext=(4, 2), textcoords="offset points")
    if not data.graded:
        _empty(ax, "no model graded (jetzero bench connect4 --record grades one)")
    else:
        ax.legend(loc="lower right", fontsize=8)
    _time_axis(ax, data)
    ax.set_ylabel("% of positions, outcome-optimal move")
    ax.grid(alpha=0.3)
    return Chart(name="accuracy", title="Accuracy on solved positions", figure=figure,
                 caption="Models graded with jetzero bench connect4 --record; dashed lines are the "
                         "reference players.")


def draw_report(data: ReportData) -> list[Chart]:
    """Every chart of ``CHART_NAMES``, in that order."""
    charts = [champion_elo(data), gates(data), losses(data), throughput(data), events(data), accuracy(data)]
    assert tuple(c.name for c in charts) == CHART_NAMES
    return charts


def report_html(data: ReportData, charts: list[Chart]) -> str:
    """The whole report page: the summary table, then the charts."""
    summary = table_html([(key, value) for key, value in data.summary.items()])
    decisions = table_html(
        [(f"{(d.time - data.start) / 60:.1f}", d.kind, d.model_id,
          "unrated" if d.elo is None else f"{d.elo:+.0f}", d.text) for d in data.decisions],
        head=("minute", "decision", "model", "Elo", "detail"))
    return page(f"jetzero run {data.run}", charts,
                intro=f"As of EVENTS sequence {data.position}, built from the log alone.",
                tables=[("Summary", summary), ("Decisions", decisions)])

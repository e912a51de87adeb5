"""The run report's data: the read models it draws, folded from the log as of a point, and the
plain figures of each chart.

``collect_report`` folds the projections of ``REPORT_PROJECTIONS`` (the model registry,
matches, ratings, pool, curriculum, journal, loop status and the report's timelines of
``projections.timeline``) in one read of each stream (``projections.runner.states_as_of``), as
of an ``EVENTS`` sequence or a time (``GAMES`` is read up to the same time), with the loop
stopped or running: it only reads. ``report_data`` is pure: states in, ``ReportData`` out; the
charts (``handlers.loop.report_charts``) draw only what it holds, so a chart's marks can be
checked against the projections.

Checkpoints are numbered in the order saved (1, 2, ...); the gate and loss charts share that
axis. Elo is the ratings ladder's as of the report's point (anchor: the random player when it
has played), so a champion's Elo is its rating now, drawn from when it became champion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from handlers.loop.config import LoopConfig, shown_config
from projections import build_projection
from projections.matches import GATE
from projections.runner import states_as_of
from streams import names
from streams.store import EventStore

__all__ = [
    "REPORT_PROJECTIONS",
    "Band",
    "ChampionPoint",
    "Decision",
    "GatePoint",
    "Graded",
    "LossPoint",
    "Mark",
    "ReportData",
    "collect_report",
    "report_data",
]

REPORT_PROJECTIONS = {
    names.EVENTS: ("loop_status", "model_registry", "matches", "ratings", "pool", "curriculum",
                   "journal", "timeline"),
    names.GAMES: ("game_tally", "throughput"),
}


class ChampionPoint(msgspec.Struct, frozen=True, kw_only=True):
    """The champion from ``time`` on (``cause``: initial, promotion or rollback)."""

    time: float
    model_id: str
    generation: int = 0
    cause: str = "promotion"
    elo: float | None = None  # None: not on the ladder (no match linked to the anchor)
    ci95: float | None = None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    time: float
    kind: str  # promotion | rejection | rollback
    model_id: str
    elo: float | None = None
    text: str = ""


class GatePoint(msgspec.Struct, frozen=True, kw_only=True):
    checkpoint: int  # the candidate's number, in the order checkpoints were saved
    model_id: str
    match_id: str
    elo: float
    ci95: float
    pairs: int
    verdict: str = ""  # "" while the match is open


class LossPoint(msgspec.Struct, frozen=True, kw_only=True):
    checkpoint: int
    model_id: str
    generation: int
    step: int
    policy_loss: float
    value_loss: float
    time: float


class Band(msgspec.Struct, frozen=True, kw_only=True):
    start: float
    end: float
    stage: str


class Mark(msgspec.Struct, frozen=True, kw_only=True):
    time: float
    kind: str
    text: str = ""


class Graded(msgspec.Struct, frozen=True, kw_only=True):
    time: float
    model_id: str
    player: str
    outcome_optimal: float
    exactly_optimal: float
    reference: bool = False


class ReportData(msgspec.Struct, frozen=True, kw_only=True):
    run: str
    position: int = 0  # the last EVENTS sequence folded
    start: float = 0.0  # the run's time axis
    end: float = 0.0
    champion: tuple[ChampionPoint, ...] = ()
    decisions: tuple[Decision, ...] = ()
    gates: tuple[GatePoint, ...] = ()
    losses: tuple[LossPoint, ...] = ()
    games_per_minute: tuple[tuple[float, float], ...] = ()  # (minute's start, games in it)
    pool_positions: tuple[tuple[float, int], ...] = ()  # (time, positions in the pool after it)
    bands: tuple[Band, ...] = ()
    marks: tuple[Mark, ...] = ()
    graded: tuple[Graded, ...] = ()
    summary: dict[str, Any] = {}

    def of_kind(self, kind: str) -> list[Decision]:
        return [d for d in self.decisions if d.kind == kind]


async def collect_report(
    store: EventStore, config: LoopConfig, *, seq: int | None = None, time: float | None = None
) -> ReportData:
    """The report of ``config.run`` as of ``seq`` (an ``EVENTS`` sequence) or ``time``."""
    config = await shown_config(store, config)
    games_until = time
    if seq is not None:
        stored = await store.get(seq, names.EVENTS)
        games_until = stored.time if time is None else min(time, stored.time)
    states: dict[str, Any] = {}
    position = 0
    for stream, keys in REPORT_PROJECTIONS.items():
        projections = [build_projection(key, config) for key in keys]
        until_seq = seq if stream == names.EVENTS else None
        until_time = time if stream == names.EVENTS else games_until
        folded, last = await states_as_of(store, projections, config.run, seq=until_seq, time=until_time)
        states.update(zip(keys, folded, strict=True))
        if stream == names.EVENTS:
            position = last
    return report_data(config.run, states, position)


def _ratings(ratings: Any) -> Callable[[str], tuple[float | None, float | None]]:
    """``model id -> (Elo, interval)`` on the ladder, each model's interval solved once."""
    known: dict[str, tuple[float | None, float | None]] = {}

    def rating_of(model_id: str) -> tuple[float | None, float | None]:
        if model_id not in known:
            rating = ratings.rating(model_id)
            known[model_id] = (rating.elo, rating.ci95) if rating is not None else (None, None)
        return known[model_id]

    return rating_of


def report_data(run: str, states: dict[str, Any], position: int = 0) -> ReportData:
    """The figures of every chart from the projection states (pure)."""
    registry, matches, ratings = states["model_registry"], states["matches"], states["ratings"]
    pool, curriculum, timeline = states["pool"], states["curriculum"], states["timeline"]
    throughput, tally = states["throughput"], states["game_tally"]
    _rating = _ratings(ratings)

    champion: list[ChampionPoint] = []
    for p in registry.promotions:
        elo, ci = _rating(p.model_id)
        champion.append(ChampionPoint(time=p.time, model_id=p.model_id, generation=p.generation,
                                      cause="initial" if p.initial else "promotion", elo=elo, ci95=ci))
    for r in registry.rollbacks:
        elo, ci = _rating(r.model_id)
        record = registry.model(r.model_id)
        champion.append(ChampionPoint(time=r.time, model_id=r.model_id, cause="rollback", elo=elo, ci95=ci,
                                      generation=record.generation if record else 0))
    champion.sort(key=lambda c: c.time)

    decisions = [Decision(time=p.time, kind="promotion", model_id=p.model_id,
                          elo=_rating(p.model_id)[0], text=f"generation {p.generation}")
                 for p in registry.promotions if not p.initial]
    decisions += [Decision(time=r.time, kind="rejection", model_id=r.model_id, text=r.reason)
                  for r in registry.rejections]  # drawn on the champion's line (its Elo: the gates chart)
    decisions += [Decision(time=r.time, kind="rollback", model_id=r.model_id,
                           elo=_rating(r.model_id)[0], text=r.reason)
                  for r in registry.rollbacks]
    decisions.sort(key=lambda d: d.time)

    number = {model_id: i for i, model_id in enumerate(registry.models, 1)}
    gates = [
        GatePoint(checkpoint=number[m.candidate.model_id], model_id=m.candidate.model_id,
                  match_id=m.match_id, elo=m.elo, ci95=m.ci95, pairs=m.pairs, verdict=m.verdict)
        for m in matches.matches.values()
        if m.purpose == GATE and m.candidate.kind == "model" and m.candidate.model_id in number
        and m.pairs > 0
    ]
    losses = [
        LossPoint(checkpoint=number[r.model_id], model_id=r.model_id, generation=r.generation, step=r.step,
                  policy_loss=r.policy_loss, value_loss=r.value_loss, time=r.saved_at)
        for r in registry.models.values() if r.source != "initial"
    ]
    rates = tuple((m.minute * 60.0, float(m.games)) for m in throughput.minutes)
    positions, pool_points = 0, []
    for shard in pool.shards:
        positions += shard.positions
        pool_points.append((shard.time, positions))

    times = [t for t in (timeline.first_time, timeline.last_time) if t]
    times += [t for t, _ in rates] + ([tally.last_game_time] if tally.last_game_time else [])
    start, end = (min(times), max(times)) if times else (0.0, 0.0)
    bands = []
    changes = curriculum.changes
    for i, change in enumerate(changes):
        until = changes[i + 1].time if i + 1 < len(changes) else end
        bands.append(Band(start=change.time, end=max(until, change.time), stage=change.to_stage))

    graded = [
        Graded(time=g.time, model_id=g.model_id, player=grade.player, outcome_optimal=grade.outcome_optimal,
               exactly_optimal=grade.exactly_optimal, reference=grade.reference)
        for g in timeline.gradings for grade in g.grades
    ]
    status = states["loop_status"]
    summary = {
        "run": run, "as of EVENTS sequence": position, "loop": status.label,
        "checkpoints": len(registry.models),
        "promotions": sum(1 for p in registry.promotions if not p.initial),
        "rejections": len(registry.rejections), "rollbacks": len(registry.rollbacks),
        "champion": registry.champion.model_id if registry.champion else "",
        "selfplay games": tally.games, "positions played": tally.positions,
        "pool positions": pool.positions, "health failures": states["journal"].health_failure_count,
        "halts": status.halts, "process restarts": status.restarts,
        "curriculum stage": curriculum.stage,
    }
    return ReportData(
        run=run, position=position, start=start, end=end, champion=tuple(champion),
        decisions=tuple(decisions), gates=tuple(gates), losses=tuple(losses), games_per_minute=rates,
        pool_positions=tuple(pool_points), bands=tuple(bands),
        marks=tuple(Mark(time=m.time, kind=m.kind, text=m.text) for m in timeline.markers),
        graded=tuple(graded), summary=summary,
    )

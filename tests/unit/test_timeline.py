"""The report's timelines: every occurrence kept with its time, games counted per minute."""

from __future__ import annotations

from projections.base import fold
from projections.timeline import ThroughputProjection, TimelineProjection
from tests.report_run import T0, recorded_run


def test_the_timeline_keeps_every_failure_halt_restart_and_grading_in_order():
    control, _ = recorded_run("u1", {}, {})
    state = fold(TimelineProjection(), control)
    kinds = [m.kind for m in state.markers]
    assert kinds == ["loop.started", "health.warning", "process.restarted", "health.critical",
                     "loop.halted", "loop.resumed"]
    assert [m.time for m in state.markers] == sorted(m.time for m in state.markers)
    assert state.of_kind("health.") == [m for m in state.markers if m.kind.startswith("health.")]
    assert [g.model_id for g in state.gradings] == ["m1"] and len(state.gradings[0].grades) == 3
    assert (state.first_time, state.last_time) == (min(e.time for e in control), max(e.time for e in control))


def test_throughput_counts_games_and_positions_per_minute():
    _, games = recorded_run("u1", {}, {})
    state = fold(ThroughputProjection(), games)
    assert sum(m.games for m in state.minutes) == state.games == len(games)
    assert sum(m.positions for m in state.minutes) == sum(len(g.moves) for g in games)
    minutes = [m.minute for m in state.minutes]
    assert minutes == sorted(set(minutes)) and minutes[0] == int((T0 + 60) // 60)
    for m in state.minutes:
        assert m.games == sum(1 for g in games if int(g.time // 60) == m.minute)

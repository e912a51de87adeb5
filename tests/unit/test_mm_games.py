"""Server-authoritative games: versioned, pure; a refused change leaves the game as it was."""

from __future__ import annotations

import pytest

from engine.errors import IllegalMove
from handlers.matchmaking import games as g

SEATS = (g.Seat(id="h-a", name="a", kind="human"), g.Seat(id="h-b", name="b", kind="human"))


def room(game="tictactoe", moves=()):
    return g.replay(g.new_room("g1", game, SEATS), moves)


def test_moves_bump_the_version_and_draw_the_board():
    r = room()
    r1 = g.play(r, 0, 4, version=0)
    assert isinstance(r1, g.Room) and r1.version == 1 and r1.moves == (4,) and r.moves == ()
    r2 = g.play(r1, 1, 0, version=1)
    assert g.board(r2) == [[2, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert g.to_move(r2) == 0 and 4 not in g.legal(r2) and len(g.legal(r2)) == 7
    c4 = room("connect4", (3, 3, 4))
    assert g.board(c4)[-1] == [0, 0, 0, 1, 1, 0, 0] and g.board(c4)[-2] == [0, 0, 0, 2, 0, 0, 0]


@pytest.mark.parametrize("seat, move, version, code", [
    (1, 4, 0, "not_your_turn"),
    (0, 9, 0, "illegal_move"),
    (0, 4, 3, "stale_version"),
])
def test_refusals_leave_the_game_intact(seat, move, version, code):
    r = room()
    refused = g.play(r, seat, move, version)
    assert isinstance(refused, g.Refusal) and refused.code == code and refused.message
    assert r == room()


def test_an_occupied_cell_is_illegal():
    refused = g.play(room(moves=(4,)), 1, 4, 1)
    assert isinstance(refused, g.Refusal) and refused.code == "illegal_move"


def test_a_win_ends_the_game_and_later_moves_are_refused():
    r = room(moves=(0, 3, 1, 4))
    over = g.play(r, 0, 2)
    assert isinstance(over, g.Room) and (over.status, over.result, over.reason) == ("over", 0, "win")
    assert g.to_move(over) is None and g.legal(over) == []
    for change in (g.play(over, 1, 5), g.resign(over, 1), g.offer_draw(over, 0), g.claim(over, 0, 1e12)):
        assert isinstance(change, g.Refusal) and change.code == "game_over"


def test_a_full_board_is_a_draw():
    over = room(moves=(0, 1, 2, 4, 3, 5, 7, 6, 8))
    assert (over.status, over.result, over.reason) == ("over", "draw", "draw")


def test_resign_and_draw_by_agreement():
    assert g.resign(room(), 0).result == 1  # type: ignore[union-attr]
    offered = g.offer_draw(room(), 0)
    assert isinstance(offered, g.Room) and offered.draw_offer == 0
    assert isinstance(g.accept_draw(offered, 0), g.Refusal)  # one's own offer
    assert isinstance(g.accept_draw(room(), 1), g.Refusal)  # no offer
    agreed = g.accept_draw(offered, 1)
    assert isinstance(agreed, g.Room) and (agreed.result, agreed.reason) == ("draw", "agreement")
    declined = g.play(offered, 0, 4)  # moving keeps one's own offer
    assert declined.draw_offer == 0  # type: ignore[union-attr]
    assert g.play(declined, 1, 0).draw_offer is None  # type: ignore[union-attr]  # the answer declines it


def test_claim_only_after_the_opponents_timer_ran_out():
    r = g.set_absent(room(), 1, deadline=100.0)
    assert r.abandoned == 1 and r.version == 1
    assert g.claim(r, 1, 200.0).code == "not_allowed"  # type: ignore[union-attr]  # not one's own
    assert g.claim(r, 0, 99.0).code == "not_allowed"  # type: ignore[union-attr]
    won = g.claim(r, 0, 100.0)
    assert isinstance(won, g.Room) and (won.result, won.reason) == (0, "abandoned")
    assert g.claim(room(), 0, 1e12).code == "not_allowed"  # type: ignore[union-attr]
    assert g.set_absent(r, 1, 100.0) is r and g.set_absent(r, None, None).abandoned is None


def test_replay_refuses_a_bad_record():
    with pytest.raises(IllegalMove):
        room(moves=(4, 4))


CLOCK = g.TimeControl(initial_ms=10_000, increment_ms=2_000)


def timed(now: float = 100.0) -> g.Room:
    return g.new_room("g1", "tictactoe", SEATS, clock=CLOCK, now=now)


def test_only_the_seat_to_move_runs_and_a_move_adds_the_increment():
    r = timed(100.0)
    assert g.clock_left(r, 103.5) == [6_500, 10_000] and g.flag_deadline(r) == 110.0
    r1 = g.play(r, 0, 4, version=0, now=103.5)
    assert isinstance(r1, g.Room) and r1.clocks == (8_500, 10_000) and r1.turn_started == 103.5
    assert g.clock_left(r1, 104.0) == [8_500, 9_500] and g.flag_deadline(r1) == 113.5
    assert g.clock_left(room(), 1e9) is None and g.flag_deadline(room()) is None  # no clocks


def test_the_flag_falls_at_the_deadline_and_a_late_move_loses_on_time():
    r = timed(100.0)
    assert g.flag(r, 109.999) is None
    flagged = g.flag(r, 110.0)
    assert flagged is not None and flagged.status == "over" and flagged.result == 1
    assert flagged.reason == "timeout" and flagged.clocks == (0, 10_000)
    late = g.play(r, 0, 4, version=0, now=112.0)
    assert isinstance(late, g.Room) and late.moves == () and late.reason == "timeout" and late.result == 1


def test_a_resign_stops_the_clocks_where_they_stand():
    r1 = g.play(timed(100.0), 0, 4, now=101.0)
    assert isinstance(r1, g.Room)
    over = g.resign(r1, 1, now=104.0)
    assert isinstance(over, g.Room) and over.clocks == (11_000, 7_000) and g.flag_deadline(over) is None


def test_replay_takes_the_recorded_clocks_and_restarts_the_turn():
    r = g.replay(timed(100.0), (4, 0), clocks=(7_000, 3_000), now=500.0)
    assert r.clocks == (7_000, 3_000) and g.clock_left(r, 501.0) == [6_000, 3_000]


def test_a_clocked_move_may_spend_a_thirtieth_of_the_time_left_and_most_of_the_increment():
    seats = (g.Seat(id="a", name="a", kind="human"), g.Seat(id="b", name="b", kind="ai", level=8))
    room = g.new_room("g", "connect4", seats, clock=g.TimeControl(initial_ms=60_000, increment_ms=2000),
                          now=100.0)
    assert g.move_budget_ms(room, 110.0) == 50_000 // 30 + 1500  # seat 0 has used 10 s
    flagged_soon = g.new_room("g", "connect4", seats, clock=g.TimeControl(initial_ms=10), now=0.0)
    assert g.move_budget_ms(flagged_soon, 1.0) == 1  # out of time: the least there is
    assert g.move_budget_ms(g.new_room("g", "connect4", seats), 5.0) is None  # no clocks


def test_remembered_states_are_bounded_and_a_forgotten_one_is_rebuilt(monkeypatch):
    monkeypatch.setattr(g, "STATES_KEPT", 8)
    monkeypatch.setattr(g, "_states", {})
    games = [room("connect4", (c,)) for c in range(7)]  # seven games, one move each
    for r in games:
        r2 = g.play(r, 1, 3)
        assert isinstance(r2, g.Room)
    assert len(g._states) == 8  # the oldest were dropped
    first = games[0]  # its state was forgotten: rebuilt from its moves, the same game
    assert (first.game, first.moves) not in g._states
    after = g.play(first, 1, 0)
    assert isinstance(after, g.Room) and g.board(after)[-1][0] == 1 and g.board(after)[-2][0] == 2
    assert g.legal(after) == list(range(7)) and g.to_move(after) == 0

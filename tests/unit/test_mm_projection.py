"""The matchmaking projection: live games from their events, ratings as recorded, idle RD growth."""

from __future__ import annotations

from engine.glicko2 import Rating
from projections.base import fold
from projections.matchmaking import MatchmakingProjection, current, level_start, rating_changes
from streams import codec
from streams.matchmaking_events import P2pGameFinished, P2pGameStarted, P2pMovePlayed, P2pSeat

RUN = "r"
SEATS = [P2pSeat(id="h-a", name="ann"), P2pSeat(id="ai-3", name="AI level 3", kind="ai", level=3)]


def events(finish=True, ratings=None):
    out = [P2pGameStarted.new(RUN, game_id="g", game="tictactoe", seats=SEATS)]
    out += [P2pMovePlayed.new(RUN, game_id="g", ply=i, move=m, seat=i % 2) for i, m in enumerate((4, 0, 8))]
    if finish:
        out.append(P2pGameFinished.new(RUN, game_id="g", result="0", reason="resign", plies=3,
                                       ratings=ratings or [None, None]))
    return out


def test_events_round_trip_through_the_codec():
    for event in events():
        assert codec.decode(codec.encode(event)) == event
        assert codec.subject_of(event).split(".")[3] == "p2p-game-g"


def test_a_live_game_is_its_moves_and_a_duplicate_move_folds_once():
    evs = events(finish=False)
    state = fold(MatchmakingProjection(), [*evs, evs[-1]])
    (live,) = state.live_games()
    assert live.moves == (4, 0, 8) and live.seats == tuple(SEATS) and state.name("h-a") == "ann"


def test_finishing_records_ratings_and_ends_the_live_game():
    before = fold(MatchmakingProjection(), events(finish=False))
    changes = rating_changes(before, SEATS, "0", 1000.0, period_s=86400, tau=0.5, starts={3: 1300.0})
    assert changes[0].rating > 1500 and changes[1].rating < 1300
    assert changes[0].rd < 350 and changes[1].before_rating == 1300.0
    state = fold(MatchmakingProjection(), events(ratings=changes))
    assert state.live_games() == [] and state.finished == 1
    assert state.rating("h-a").rating == changes[0].rating and state.rating("ai-3").games == 1  # type: ignore[union-attr]


def test_a_draw_between_equals_moves_nobody_and_rd_grows_when_idle():
    state = MatchmakingProjection().initial()
    even = rating_changes(state, [P2pSeat(id="h-a"), P2pSeat(id="h-b")], "draw", 0.0, period_s=10, tau=0.5,
                          starts={})
    assert abs(even[0].rating - 1500) < 1e-9 and even[0].rd < 350
    state = fold(MatchmakingProjection(), [*events(finish=False), P2pGameFinished.new(
        RUN, game_id="g", result="draw", reason="agreement", ratings=[even[0], None])])
    recorded = state.rating("h-a").last_time  # type: ignore[union-attr]
    same = current(state, "h-a", recorded + 9, period_s=10, tau=0.5)
    later = current(state, "h-a", recorded + 35, period_s=10, tau=0.5)
    assert same.rd == even[0].rd < later.rd
    assert current(state, "h-new", 0, period_s=10, tau=0.5) == Rating()


def test_level_start_centres_the_calibrated_ladder():
    assert level_start({1: 0.0, 2: 200.0, 3: 400.0}) == {1: 1300.0, 2: 1500.0, 3: 1700.0}
    uncalibrated = level_start({n: None for n in range(1, 9)})
    assert uncalibrated[1] < uncalibrated[8] and sum(uncalibrated.values()) / 8 == 1500.0


def test_a_live_game_keeps_its_time_control_and_the_clocks_of_its_last_move():
    started = P2pGameStarted.new(RUN, game_id="g", game="tictactoe", seats=SEATS, clock_initial_ms=60_000,
                                 clock_increment_ms=1_000)
    moves = [P2pMovePlayed.new(RUN, game_id="g", ply=0, move=4, seat=0, clocks=[58_000, 60_000]),
             P2pMovePlayed.new(RUN, game_id="g", ply=1, move=0, seat=1, clocks=[58_000, 55_500])]
    (live,) = fold(MatchmakingProjection(), [started, *moves]).live_games()
    assert (live.clock_initial_ms, live.clock_increment_ms, live.clocks) == (60_000, 1_000, (58_000, 55_500))
    (untimed,) = fold(MatchmakingProjection(), events(finish=False)).live_games()
    assert (untimed.clock_initial_ms, untimed.clocks) == (0, ())

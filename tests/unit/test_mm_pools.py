"""The human pool: pairing by rating within ranges widening in waves, and the AI offer."""

from __future__ import annotations

from handlers.matchmaking.config import PoolSettings
from handlers.matchmaking.pools import Pool, Seek, add, nearest_level, rating_range, remove, tick

SETTINGS = PoolSettings(initial_range=100, step=50, every_s=5, max_range=300, offer_ai_after_s=30)


def seek(name, rating, since=0.0, game="connect4", seat=None):
    return Seek(seek_id=f"s-{name}", player=name, game=game, rating=rating, since=since, seat=seat)


def test_range_widens_in_waves_up_to_the_cap():
    s = seek("a", 1500, since=100)
    ranges = [rating_range(s, 100 + t, SETTINGS) for t in (0, 4.9, 5, 9.9, 10, 1000)]
    assert ranges == [100, 100, 150, 150, 200, 300]


def test_close_ratings_pair_at_once_far_ones_after_widening():
    pool = add(add(Pool(), seek("a", 1500)), seek("b", 1640))
    assert tick(pool, 0, SETTINGS).pairings == []  # 140 apart, ranges 100
    assert tick(pool, 4.9, SETTINGS).pairings == []
    done = tick(pool, 5, SETTINGS)  # ranges 150 each
    assert [(p.first.player, p.second.player) for p in done.pairings] == [("a", "b")]
    assert done.pool.seeks == ()


def test_both_ranges_must_cover_the_gap():
    pool = add(add(Pool(), seek("old", 1500, since=0)), seek("new", 1700, since=20))
    assert tick(pool, 20, SETTINGS).pairings == []  # old's range 300 covers 200, new's 100 does not
    assert len(tick(pool, 30, SETTINGS).pairings) == 1  # new's range is 200 now


def test_longest_waiting_pairs_first_with_the_nearest():
    pool = Pool()
    for s in (seek("a", 1500, 0), seek("b", 1590, 1), seek("c", 1520, 2), seek("d", 1600, 3)):
        pool = add(pool, s)
    pairs = tick(pool, 3, SETTINGS).pairings
    assert [(p.first.player, p.second.player) for p in pairs] == [("a", "c"), ("b", "d")]


def test_no_pairing_across_games_with_oneself_or_into_the_same_seat():
    two_games = add(add(Pool(), seek("a", 1500)), seek("b", 1500, game="tictactoe"))
    assert tick(two_games, 0, SETTINGS).pairings == []
    again = Seek(seek_id="s-a2", player="a", game="connect4", rating=1500, since=0)
    twice = Pool(seeks=(seek("a", 1500), again))
    assert tick(twice, 0, SETTINGS).pairings == []
    same_seat = add(add(Pool(), seek("x", 1500, seat=0)), seek("y", 1500, seat=0))
    assert tick(same_seat, 0, SETTINGS).pairings == []
    other_seat = add(add(Pool(), seek("x", 1500, seat=0)), seek("y", 1500, seat=1))
    assert len(tick(other_seat, 0, SETTINGS).pairings) == 1


def test_a_player_seeking_again_replaces_the_seek_and_remove_takes_it_out():
    pool = add(add(Pool(), seek("a", 1500)), Seek(seek_id="s-a-new", player="a", game="connect4", rating=1500,
                                                   since=1))
    assert [s.seek_id for s in pool.seeks] == ["s-a-new"]
    assert remove(pool, {"s-a-new"}).seeks == ()


def test_the_ai_is_offered_once_after_the_wait():
    pool = add(Pool(), seek("alone", 1500))
    assert tick(pool, 29, SETTINGS).offers == []
    first = tick(pool, 30, SETTINGS)
    assert [s.player for s in first.offers] == ["alone"]
    assert first.pool.seeks[0].offered  # still seeking
    assert tick(first.pool, 60, SETTINGS).offers == []


def test_nearest_level():
    ladder = {1: 800.0, 2: 1000.0, 3: 1200.0, 4: 1400.0}
    assert nearest_level(1290, ladder) == 3
    assert nearest_level(1300, ladder) == 3  # a tie goes to the lower level
    assert nearest_level(5000, ladder) == 4 and nearest_level(0, ladder) == 1

"""Match players from specs, and how the evaluation worker plays and reports one pair (no server).

Players built from a spec are of the right kind and settings, and seeded: the same spec and
seed replay the same games. A pair played twice from its ``PairSpec`` gives the same result
and the same event id (so a redone unit is a deduplicated append); pairs differ by index.
"""

from __future__ import annotations

import pytest

from engine.batched_arena import BatchedGames, pair_jobs, pair_result
from engine.games import get_game
from engine.network import NetworkConfig, build_network
from engine.players import NetworkMCTSPlayer, PureMCTSPlayer, RandomPlayer
from handlers.promotion.eval_worker import (
    RANDOM_PLIES,
    WorkerStats,
    pair_opening,
    pair_played,
    player_seeds,
)
from handlers.promotion.players_cache import PlayerUnavailable, build_player
from streams.events import PlayerSpec
from streams.work import MatchUnit, PairSpec

GAME = get_game("tictactoe")
RANDOM = PlayerSpec(kind="random")
MCTS = PlayerSpec(kind="pure_mcts", simulations=40)
TINY_NET = NetworkConfig(blocks=1, channels=8, value_hidden=8)


def net():
    return build_network(GAME, TINY_NET, seed=3)


def unit(pairs: list[PairSpec]) -> MatchUnit:
    return MatchUnit.new(
        "t1", match_id="m1", unit_id="m1/0", game="tictactoe", candidate=MCTS, opponent=RANDOM, pairs=pairs
    )


def test_reference_players_have_their_kind_and_settings():
    assert isinstance(build_player(RANDOM, 1), RandomPlayer)
    mcts = build_player(MCTS, 1)
    assert isinstance(mcts, PureMCTSPlayer) and mcts.iterations == 40


def test_model_player_searches_the_specs_simulations_or_the_default():
    spec = PlayerSpec(kind="model", model_id="t1-gen1", simulations=12)
    player = build_player(spec, 0, net=net(), default_simulations=5)
    assert isinstance(player, NetworkMCTSPlayer) and player.settings.simulations == 12
    assert player.name == "t1-gen1"
    unset = PlayerSpec(kind="model", model_id="t1-gen1")
    assert build_player(unset, 0, net=net(), default_simulations=5).settings.simulations == 5


@pytest.mark.parametrize(
    "spec,retry",
    [
        (PlayerSpec(kind="alphabeta"), False),
        (PlayerSpec(kind="pure_mcts", simulations=0), False),
        (PlayerSpec(kind="model", model_id="t1-gen1"), True),  # no net loaded
    ],
)
def test_unplayable_specs_say_why_and_whether_to_retry(spec, retry):
    with pytest.raises(PlayerUnavailable) as info:
        build_player(spec, 0)
    assert info.value.retry is retry
    assert spec.kind in str(info.value) or spec.model_id in str(info.value)


def test_player_seeds_are_fixed_by_the_pair_seed_and_differ_between_sides():
    assert player_seeds(7) == player_seeds(7)
    a, b = player_seeds(7)
    assert a != b and player_seeds(8) != (a, b)
    assert 0 <= a < 2**63 and 0 <= b < 2**63


def play(pair: PairSpec, candidate: PlayerSpec = MCTS, opponent: PlayerSpec = RANDOM):
    """The pair as the worker plays it: fresh seeded players per game, the pair's opening."""
    c_seed, o_seed = player_seeds(pair.seed)
    a_first = (build_player(candidate, c_seed), build_player(opponent, o_seed))
    b_first = (build_player(opponent, o_seed), build_player(candidate, c_seed))
    games = BatchedGames(GAME, pair_jobs(a_first, b_first, pair_opening(GAME, pair)))
    while not games.finished:
        games.step()
    return pair_result(*games.results)


def test_a_pair_replays_identically_from_its_spec():
    pair = PairSpec(pair_index=3, opening=[], seed=12345)
    first, again = play(pair), play(pair)
    assert first == again
    other = [play(PairSpec(pair_index=3, opening=[], seed=s)) for s in range(6)]
    assert len({r.games for r in other}) > 1  # the seed matters


def test_a_pair_without_opening_starts_with_seeded_random_plies_and_with_one_keeps_it():
    free = play(PairSpec(pair_index=0, opening=[], seed=5))
    assert all(g.opening_plies == RANDOM_PLIES for g in free.games)
    assert free.games[0].moves[:RANDOM_PLIES] == free.games[1].moves[:RANDOM_PLIES]
    fixed = play(PairSpec(pair_index=0, opening=[4, 0, 8], seed=5))
    assert all(g.moves[:3] == (4, 0, 8) and g.opening_plies == 3 for g in fixed.games)


def test_pair_event_id_is_fixed_by_match_and_pair_index():
    pairs = [PairSpec(pair_index=i, opening=[], seed=100 + i) for i in range(2)]
    u = unit(pairs)
    first = pair_played("t1", u, pairs[0], play(pairs[0]), "w1")
    redone = pair_played("t1", u, pairs[0], play(pairs[0]), "w2")
    second = pair_played("t1", u, pairs[1], play(pairs[1]), "w1")
    assert first.id == redone.id and first.id != second.id
    assert first.pentanomial == redone.pentanomial and first.games == redone.games
    assert (first.causation_id, first.unit_id, first.pair_index) == (u.id, "m1/0", 0)
    assert first.opening == first.games[0][:RANDOM_PLIES]
    result = play(pairs[0])
    assert first.pentanomial == result.pentanomial_index
    assert first.outcomes == [g.outcome for g in result.games]


def test_games_per_minute_counts_the_last_minute_only():
    stats = WorkerStats()
    stats.played(0.0)
    stats.played(30.0)
    assert stats.pairs_played == 2 and stats.games_per_minute(30.0) == 4.0
    assert stats.games_per_minute(75.0) == 2.0  # the first pair's games left the window
    assert stats.games_per_minute(200.0) == 0.0

"""Engine-level selfplay: batched games, records that replay, openings, counters."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from engine.games import get_game
from engine.mcts import SearchSettings, UniformEvaluator
from engine.network import NetworkConfig, NetworkEvaluator, build_network, set_torch_threads
from engine.samples import samples_from_record, samples_from_records
from engine.selfplay import (
    GameRecord,
    InvalidGameRecord,
    SelfplayDriver,
    SelfplaySettings,
    SelfplayStats,
    check_record,
    play_games,
)
from tests.evaluators import CountingEvaluator

C4 = get_game("connect4")
TTT = get_game("tictactoe")
SEARCH = SearchSettings(simulations=24, dirichlet_fraction=0.25, temperature=1.0, temperature_moves=4)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    set_torch_threads(1)


def play(settings, n_games, seed=0, game=TTT, evaluator=None, stats=None):
    return list(
        play_games(
            game, evaluator or UniformEvaluator(), settings, n_games, np.random.default_rng(seed), stats
        )
    )


def test_games_are_complete_legal_and_counted():
    stats = SelfplayStats()
    records = play(SelfplaySettings(search=SEARCH, games_in_flight=4), 10, stats=stats)
    assert len(records) == 10
    for record in records:
        final = check_record(TTT, record)
        assert final.is_terminal() and record.outcome == final.outcome()
        assert len(record.policies) == len(record.root_values) == record.plies
        assert all(-1.0 <= v <= 1.0 for v in record.root_values)
    assert stats.games == 10
    assert stats.positions == sum(r.plies for r in records)
    assert 0 < stats.evaluations <= stats.positions * SEARCH.simulations
    # every evaluator call carries one leaf from each game in flight (at most four)
    assert stats.evaluations / stats.evaluator_calls > 2
    assert stats.evaluations <= 4 * stats.evaluator_calls


CAPPED_SEARCH = msgspec.structs.replace(SEARCH, simulations=16, reuse_tree=False)


def test_playout_cap_trains_on_full_searches_only_and_keeps_batches_full():
    settings = SelfplaySettings(
        search=CAPPED_SEARCH, games_in_flight=8, full_search_fraction=0.25, fast_simulations=4
    )
    stats, evaluator = SelfplayStats(), CountingEvaluator()
    records = play(settings, 40, seed=3, stats=stats, evaluator=evaluator)
    flags = [f for r in records for f in r.full_search]
    assert all(len(r.full_search) == len(r.policies) for r in records)
    assert stats.full_searches == sum(flags) and stats.positions == len(flags)
    assert 0.15 < sum(flags) / len(flags) < 0.35  # about a quarter of the moves
    for record in records:
        check_record(TTT, record)
        samples = samples_from_record(TTT, record)
        assert len(samples) == sum(record.full_search)
        full = [p for p, f in zip(record.policies, record.full_search, strict=True) if f]
        assert np.allclose(samples.policies, np.asarray(full, np.float32).reshape(-1, 9))
        for policy, is_full in zip(record.policies, record.full_search, strict=True):
            visits = np.asarray(policy) * (16 if is_full else 4)  # no reuse: exactly the budget
            assert np.allclose(visits, np.round(visits), atol=1e-6)
    # games search in chunks of the fast search, so an evaluator call carries a leaf from
    # every game in flight (less the leaves that are finished games) as without the cap
    uncapped = CountingEvaluator()
    play(msgspec.structs.replace(settings, full_search_fraction=1.0), 40, seed=3, evaluator=uncapped)
    assert np.mean(evaluator.batches) >= 0.9 * np.mean(uncapped.batches)
    assert max(evaluator.batches) == 8


def test_without_a_playout_cap_every_move_is_a_sample_and_no_flags_are_recorded():
    records = play(SelfplaySettings(search=CAPPED_SEARCH, games_in_flight=4), 6, seed=4)
    assert all(r.full_search == () for r in records)
    assert all(r.trained_moves() == list(range(len(r.policies))) for r in records)
    assert len(samples_from_records(TTT, records)) == sum(len(r.policies) for r in records)


def test_a_capped_record_with_flags_of_the_wrong_length_is_refused():
    settings = SelfplaySettings(
        search=CAPPED_SEARCH, games_in_flight=2, full_search_fraction=0.5, fast_simulations=4
    )
    record = play(settings, 1, seed=5)[0]
    with pytest.raises(InvalidGameRecord, match="full-search flags"):
        check_record(TTT, msgspec.structs.replace(record, full_search=record.full_search[1:]))


@pytest.mark.parametrize(("fraction", "fast"), [(0.0, 4), (1.5, 4), (0.5, 0), (0.5, 16), (0.5, 20)])
def test_a_bad_playout_cap_is_refused(fraction, fast):
    with pytest.raises(ValueError, match="full_search_fraction|fast_simulations"):
        SelfplaySettings(search=CAPPED_SEARCH, full_search_fraction=fraction, fast_simulations=fast)


def test_selfplay_reproduces_with_its_seed():
    settings = SelfplaySettings(search=SEARCH, games_in_flight=3)
    assert play(settings, 6, seed=1) == play(settings, 6, seed=1)
    assert play(settings, 6, seed=1) != play(settings, 6, seed=2)


def test_records_come_out_as_games_finish():
    settings = SelfplaySettings(search=SEARCH, games_in_flight=5)
    driver = SelfplayDriver(TTT, UniformEvaluator(), settings, np.random.default_rng(0), 7)
    finished_at_step = []
    step = 0
    while not driver.finished:
        step += 1
        finished_at_step += [(step, r.plies) for r in driver.step()]
    assert len(finished_at_step) == 7
    assert all(s == plies for s, plies in finished_at_step[:5])  # first wave: one ply a step
    assert driver.stats.games == 7


def test_openings_and_random_first_moves():
    openings = ((4,), (0, 4))
    settings = SelfplaySettings(search=SEARCH, games_in_flight=4, openings=openings, random_opening_moves=2)
    records = play(settings, 12, seed=3)
    starts = set()
    for record in records:
        check_record(TTT, record)
        assert record.opening_plies in (3, 4)
        opening = record.moves[: record.opening_plies - 2]
        assert opening in openings
        starts.add(record.moves[: record.opening_plies])
        assert len(record.policies) == record.plies - record.opening_plies
    assert len(starts) > 3
    samples = samples_from_records(TTT, records)
    assert len(samples) == sum(r.plies - r.opening_plies for r in records)


def test_the_root_value_is_the_searched_worth_of_the_position_for_the_side_to_move():
    # X (to move) has 0 and 1 and wins at 2; O has 3 and 4 and threatens 5
    settings = SelfplaySettings(search=SearchSettings(simulations=48), games_in_flight=2,
                                openings=((0, 3, 1, 4),))
    for record in play(settings, 4, seed=2):
        assert record.opening_plies == 4 and record.moves[4] == 2 and record.outcome == 1
        assert record.root_values[0] > 0.5


def test_network_selfplay_on_connect4():
    net = build_network(C4, NetworkConfig(blocks=1, channels=8, value_hidden=8), seed=0)
    search = SearchSettings(simulations=8, dirichlet_fraction=0.25, temperature_moves=42)
    stats = SelfplayStats()
    records = play(
        SelfplaySettings(search=search, games_in_flight=3),
        3,
        game=C4,
        evaluator=NetworkEvaluator(net, device="cpu"),
        stats=stats,
    )
    assert len(records) == 3
    for record in records:
        check_record(C4, record)
    assert stats.evaluator_calls < stats.evaluations


def test_game_records_survive_msgpack():
    record = play(SelfplaySettings(search=SEARCH, games_in_flight=2), 1)[0]
    data = msgspec.msgpack.encode(record)
    assert msgspec.msgpack.decode(data, type=GameRecord) == record


def bad(record, **changes):
    return msgspec.structs.replace(record, **changes)


def test_check_record_refuses_what_does_not_replay():
    record = play(SelfplaySettings(search=SEARCH, games_in_flight=1), 1, seed=5)[0]
    uniform = tuple(1 / 9 for _ in range(9))
    cases = {
        "illegal": bad(record, moves=(0, 0) + record.moves[2:]),
        "unfinished": bad(
            record, moves=record.moves[:-1], plies=record.plies - 1, policies=record.policies[:-1]
        ),
        "outcome": bad(record, outcome=2),
        "plies": bad(record, plies=record.plies + 1),
        "policy count": bad(record, policies=record.policies[:-1]),
        "illegal mass": bad(record, policies=record.policies[:-1] + (uniform,)),
        "not a distribution": bad(record, policies=((0.5,) * 9,) + record.policies[1:]),
        "policy nan": bad(record, policies=((float("nan"),) * 9,) + record.policies[1:]),
        "negative policy": bad(record, policies=((-0.5, 1.5) + (0.0,) * 7,) + record.policies[1:]),
        "policy width": bad(record, policies=tuple(p[:-1] for p in record.policies)),
        "ragged policies": bad(record, policies=(record.policies[0][:-1],) + record.policies[1:]),
        "root value count": bad(record, root_values=record.root_values[:-1]),
        "root value range": bad(record, root_values=(1.5,) + record.root_values[1:]),
        "root value nan": bad(record, root_values=(float("nan"),) + record.root_values[1:]),
    }
    for why, broken in cases.items():
        with pytest.raises(InvalidGameRecord):
            check_record(TTT, broken)
            pytest.fail(why)


def test_settings_validation():
    with pytest.raises(ValueError):
        SelfplaySettings(games_in_flight=0)
    finished = SelfplaySettings(openings=((0, 3, 1, 4, 2),))
    with pytest.raises(ValueError, match="finished game"):
        SelfplayDriver(TTT, UniformEvaluator(), finished, np.random.default_rng(0), 1)
    with pytest.raises(ValueError):  # IllegalMove is a ValueError
        SelfplayDriver(
            TTT, UniformEvaluator(), SelfplaySettings(openings=((0, 0),)), np.random.default_rng(0), 1
        )

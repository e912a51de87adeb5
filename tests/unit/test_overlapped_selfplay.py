"""Several batches in flight: each part plays a plain driver's games, the parts' network calls
and searches run at the same time, and the driver's interface holds (budget, stop, stats, errors)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from engine.games import get_game
from engine.mcts import SearchSettings, UniformEvaluator
from engine.network import NetworkConfig, NetworkEvaluator, build_network, set_torch_threads
from engine.overlapped_selfplay import OverlappedSelfplay, selfplay_driver
from engine.selfplay import SelfplayDriver, SelfplaySettings, check_record

C4 = get_game("connect4")
SEARCH = SearchSettings(simulations=12, dirichlet_fraction=0.25, temperature_moves=4)
SETTINGS = SelfplaySettings(search=SEARCH, games_in_flight=6)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    set_torch_threads(1)


@pytest.fixture(scope="module")
def evaluator():
    net = build_network(C4, NetworkConfig(blocks=1, channels=8, value_hidden=8), seed=4)
    return NetworkEvaluator(net, device="cpu")


def drain(driver) -> list:
    records = []
    while not driver.finished:
        records += driver.step()
    return records


def key(record) -> tuple:
    return record.moves, record.policies, record.root_values


def test_each_part_plays_the_games_of_a_plain_driver_with_its_slots_and_generator(evaluator):
    overlapped = OverlappedSelfplay(C4, evaluator, SETTINGS, np.random.default_rng(7), n_games=9)
    assert [d.settings.games_in_flight for d in overlapped.drivers] == [3, 3]
    records = drain(overlapped)
    assert len(records) == 9
    for record in records:
        check_record(C4, record)
    alone = []
    for rng, budget in zip(np.random.default_rng(7).spawn(2), [5, 4], strict=True):
        part = SelfplaySettings(search=SEARCH, games_in_flight=3)
        alone += drain(SelfplayDriver(C4, evaluator, part, rng, n_games=budget))
    assert sorted(map(key, records)) == sorted(map(key, alone))
    stats = overlapped.stats
    assert stats.games == 9
    assert stats.evaluations == sum(d.stats.evaluations for d in overlapped.drivers) > 0


def test_one_part_searches_while_the_other_is_in_its_network_call():
    """Each part's first evaluator call waits at a barrier for the other part's: stepped one
    after the other, the first call would wait alone until the barrier broke."""
    barrier = threading.Barrier(2, timeout=30)
    callers: set[str] = set()

    class MeetingEvaluator(UniformEvaluator):
        def evaluate(self, states, legal=None):
            name = threading.current_thread().name
            if name not in callers:
                callers.add(name)
                barrier.wait()  # raises BrokenBarrierError when the other part never comes
            return super().evaluate(states, legal)

    driver = OverlappedSelfplay(C4, MeetingEvaluator(), SETTINGS, np.random.default_rng(1), n_games=4)
    records = drain(driver)
    assert len(records) == 4 and len(callers) == 2 and not barrier.broken


def test_stop_starting_finishes_the_games_in_flight_and_starts_none(evaluator):
    driver = OverlappedSelfplay(C4, evaluator, SETTINGS, np.random.default_rng(3))
    records = driver.step()
    driver.stop_starting()
    records += drain(driver)
    assert len(records) == SETTINGS.games_in_flight and driver.finished


def test_an_error_in_one_part_reaches_the_caller_after_both_steps():
    class FailingOffTheCallerThread(UniformEvaluator):
        def evaluate(self, states, legal=None):
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError("the device fell over")
            return super().evaluate(states, legal)

    driver = OverlappedSelfplay(C4, FailingOffTheCallerThread(), SETTINGS, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="device fell over"):
        driver.step()


def test_parts_never_outnumber_the_games_and_one_batch_is_a_plain_driver(evaluator):
    assert len(OverlappedSelfplay(C4, evaluator, SETTINGS, np.random.default_rng(0), n_games=1).drivers) == 1
    assert len(OverlappedSelfplay(C4, evaluator, SETTINGS, np.random.default_rng(0), batches=9).drivers) == 6
    assert isinstance(selfplay_driver(C4, evaluator, SETTINGS, np.random.default_rng(0)), SelfplayDriver)
    with pytest.raises(ValueError, match="batches"):
        OverlappedSelfplay(C4, evaluator, SETTINGS, np.random.default_rng(0), batches=0)


def test_float16_on_the_cpu_only_when_asked_and_close_to_float32():
    net = build_network(C4, NetworkConfig(blocks=1, channels=8, value_hidden=8), seed=5)
    states = [C4.from_moves([c, 3, c]) for c in range(7)]
    assert not NetworkEvaluator(net, device="cpu", half=True).half  # the CPU ignores it...
    half = NetworkEvaluator(net, device="cpu", half=True, half_on_cpu=True)  # ...unless asked
    assert half.half and next(half.net.parameters()).dtype.is_floating_point
    assert str(next(half.net.parameters()).dtype) == "torch.float16"
    full = NetworkEvaluator(net, device="cpu").evaluate(states)
    got = half.evaluate(states)
    assert 0 < np.abs(got[0] - full[0]).max() < 1e-2
    np.testing.assert_allclose(got[1], full[1], atol=1e-2)

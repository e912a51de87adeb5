"""The array search (engine/mcts.py, engine/positions.py) computes what the search did before
it (tests/unit/legacy/mcts_v1.py, frozen): same visit counts, root values and priors for the
same seed, over many positions, both games, with and without root noise and leaf batching."""

from __future__ import annotations

import numpy as np
import pytest

from engine import mcts
from engine.games import get_game
from engine.network import DEFAULT_CONNECT4_NETWORK, NetworkEvaluator, build_network, stack_planes
from engine.positions import BitboardPositions, positions_for
from tests.unit.legacy import mcts_v1

GAMES = ["connect4", "tictactoe"]


def play_out(module, game, evaluator, settings: dict, seed: int, slots: int, moves: int) -> list:
    """Search ``slots`` games from random openings for ``moves`` moves each (tree reuse, a
    capacity small enough to compact often); everything the search reports, per move."""
    search = module.BatchedSearch(
        game, evaluator, module.SearchSettings(**settings), slots=slots, capacity=96
    )
    rng = np.random.default_rng(seed)
    for slot in range(slots):
        state = game.initial_state()
        for _ in range(int(rng.integers(0, 6))):
            legal = state.legal_moves()
            state = state.play(legal[int(rng.integers(len(legal)))])
        search.reset(slot, state if not state.is_terminal() else game.initial_state())
    seen = []
    for _ in range(moves):
        search.run(rng)
        for slot in range(slots):
            if search.roots[slot] < 0:
                continue
            visits = search.visit_counts(slot)
            seen.append((slot, visits.tolist(), search.root_value(slot), search.root_priors(slot).tolist()))
            if visits.sum() == 0:
                search.clear(slot)
                continue
            search.advance(slot, mcts.select_move(visits, 1.0, rng))
            if search.root_state(slot).is_terminal():
                search.clear(slot)
    return seen


@pytest.mark.parametrize("game_name", GAMES)
@pytest.mark.parametrize("noise", [0.0, 0.25])
@pytest.mark.parametrize("leaves", [1, 4])
def test_same_visit_counts_as_the_frozen_search(game_name, noise, leaves):
    game = get_game(game_name)
    settings = dict(simulations=48, dirichlet_fraction=noise, dirichlet_alpha=0.7, leaves_per_game=leaves)
    for seed in range(3):
        for new_eval, old_eval in [
            (mcts.UniformEvaluator(), mcts_v1.UniformEvaluator()),
            (mcts.RolloutEvaluator(1, seed=seed), mcts_v1.RolloutEvaluator(1, seed=seed)),
        ]:
            new = play_out(mcts, game, new_eval, settings, seed, slots=5, moves=8)
            old = play_out(mcts_v1, game, old_eval, settings, seed, slots=5, moves=8)
            assert len(new) >= 15
            assert new == old, (seed, type(new_eval).__name__)


def test_same_visit_counts_with_the_network_and_unequal_simulations():
    """The network path (planes from the bitboards) and per-slot simulation counts."""
    game = get_game("connect4")
    net = build_network(game, DEFAULT_CONNECT4_NETWORK, seed=3)
    evaluator = NetworkEvaluator(net, device="cpu")
    settings = dict(simulations=24, dirichlet_fraction=0.25, fpu_value=-0.2, c_puct=1.5)
    out = []
    for module in (mcts, mcts_v1):
        search = module.BatchedSearch(game, evaluator, module.SearchSettings(**settings), slots=3)
        for slot in range(3):
            search.reset(slot, game.from_moves([slot, 3]))
        rng = np.random.default_rng(5)
        search.run(rng, simulations=[10, 24, 17])
        search.run(rng)
        out.append([(search.visit_counts(s).tolist(), search.root_value(s)) for s in range(3)])
    assert out[0] == out[1]


def test_node_states_build_the_same_states_and_planes():
    game = get_game("connect4")
    search = mcts.BatchedSearch(game, mcts.UniformEvaluator(), mcts.SearchSettings(simulations=200))
    search.reset(0, game.from_moves([3, 3, 2]))
    search.run(np.random.default_rng(0))
    positions = search._positions
    assert isinstance(positions, BitboardPositions)
    ids = np.arange(search._size)
    lazy = positions.states(ids)
    built = list(lazy)
    assert len(built) == search._size and all(s.moves[:3] == (3, 3, 2) for s in built)
    np.testing.assert_array_equal(stack_planes(lazy), np.stack([s.planes() for s in built]))
    np.testing.assert_array_equal(positions.legal(ids), np.stack([s.legal_mask() for s in built]))
    assert [s.is_terminal() for s in built] == search._terminal[ids].tolist()


def test_other_boards_keep_state_objects():
    assert not isinstance(positions_for(get_game("connect4", width=9, height=12)), BitboardPositions)
    assert not isinstance(positions_for(get_game("tictactoe")), BitboardPositions)

"""PUCT search: evaluators, tactics (win / block), batched == one game, tree reuse, noise."""

from __future__ import annotations

import numpy as np
import pytest

from engine.games import get_game
from engine.mcts import (
    BatchedSearch,
    RolloutEvaluator,
    SearchSettings,
    UniformEvaluator,
    policy_from_visits,
    select_move,
)

C4 = get_game("connect4")
TTT = get_game("tictactoe")


def search_visits(state, evaluator, settings, seed=0):
    search = BatchedSearch(state.game, evaluator, settings)
    search.reset(0, state)
    search.run(np.random.default_rng(seed))
    return search.visit_counts(0)


# (game, moves, the move that must be chosen, what it does)
TACTICS = [
    (C4, [0, 1, 0, 1, 0, 2], 0, "win: fourth stone on column 1"),
    (C4, [0, 0, 1, 1, 2], 3, "block: X threatens the bottom row"),
    (C4, [0, 1, 0, 1, 0], 0, "block: X threatens column 1"),
    (C4, [3, 3, 4, 4, 5, 5], (2, 6), "win: bottom row, both ends open"),
    (TTT, [0, 3, 1, 4], 2, "win (before blocking c2)"),
    (TTT, [0, 4, 1], 2, "block the top row"),
    (TTT, [4, 0, 8, 2], 1, "block the top row after a corner fork attempt"),
]


@pytest.mark.parametrize("evaluator", [UniformEvaluator(), RolloutEvaluator(2, seed=5)])
@pytest.mark.parametrize(("game", "moves", "best", "why"), TACTICS)
def test_search_finds_wins_and_blocks(game, moves, best, why, evaluator):
    state = game.from_moves(moves)
    visits = search_visits(state, evaluator, SearchSettings(simulations=300))
    assert int(np.argmax(visits)) in np.atleast_1d(best), (why, visits)


def test_leaf_batching_with_virtual_loss_still_finds_the_block():
    state = C4.from_moves([0, 0, 1, 1, 2])
    settings = SearchSettings(simulations=300, leaves_per_game=8)
    search = BatchedSearch(C4, UniformEvaluator(), settings)
    search.reset(0, state)
    search.run(np.random.default_rng(0))
    visits = search.visit_counts(0)
    assert int(np.argmax(visits)) == 3
    assert visits.sum() == 300
    assert search.evaluator_calls < search.evaluations  # several leaves per call


def random_position(game, plies, rng):
    state = game.initial_state()
    for _ in range(plies):
        legal = state.legal_moves()
        state = state.play(legal[int(rng.integers(len(legal)))])
    return state


@pytest.mark.parametrize("game", [C4, TTT], ids=["connect4", "tictactoe"])
@pytest.mark.parametrize("leaves", [1, 3])
def test_batched_search_equals_one_game_searches(game, leaves):
    """N trees advanced together (sharing one pool, compacted often) give each game exactly
    the visit counts it gets when searched alone with the same noise generator."""
    settings = SearchSettings(
        simulations=40, leaves_per_game=leaves, dirichlet_fraction=0.25, dirichlet_alpha=0.5
    )
    evaluator = RolloutEvaluator(1, seed=3)
    rng = np.random.default_rng(7)
    starts = [random_position(game, k, rng) for k in range(5)]

    batched = BatchedSearch(game, evaluator, settings, slots=5, capacity=64)
    for slot, state in enumerate(starts):
        batched.reset(slot, state)
    noise = [np.random.default_rng(100 + slot) for slot in range(5)]
    together = []
    for _ in range(3):
        batched.run(noise)
        together.append([batched.visit_counts(slot) for slot in range(5)])
        for slot in range(5):
            if not batched.root_state(slot).is_terminal():
                batched.advance(slot, int(np.argmax(together[-1][slot])))

    for slot, state in enumerate(starts):
        alone = BatchedSearch(game, evaluator, settings)
        alone.reset(0, state)
        gen = np.random.default_rng(100 + slot)
        for move in range(3):
            if alone.root_state(0).is_terminal():
                break
            alone.run(gen)
            visits = alone.visit_counts(0)
            np.testing.assert_array_equal(visits, together[move][slot])
            alone.advance(0, int(np.argmax(visits)))


def test_visit_counts_sum_to_simulations_plus_reused_subtree():
    settings = SearchSettings(simulations=64)
    search = BatchedSearch(C4, UniformEvaluator(), settings)
    search.reset(0, C4.initial_state())
    search.run(np.random.default_rng(0))
    first = search.visit_counts(0)
    assert first.sum() == 64
    move = int(np.argmax(first))
    search.advance(0, move)
    reused = search.visit_counts(0).sum()
    assert reused == first[move] - 1  # the visit that created the child made no edge
    search.run(np.random.default_rng(0))
    assert search.visit_counts(0).sum() == 64 + reused
    assert search.root_state(0).moves == (move,)


def test_without_tree_reuse_each_move_starts_fresh():
    search = BatchedSearch(C4, UniformEvaluator(), SearchSettings(simulations=32, reuse_tree=False))
    search.reset(0, C4.initial_state())
    search.run(np.random.default_rng(0))
    search.advance(0, 3)
    assert search.visit_counts(0).sum() == 0
    search.run(np.random.default_rng(0))
    assert search.visit_counts(0).sum() == 32


def test_root_noise_is_seeded_and_does_not_accumulate():
    settings = SearchSettings(simulations=8, dirichlet_fraction=0.5, dirichlet_alpha=0.3)

    def noisy_priors(seed, runs=1):
        search = BatchedSearch(C4, UniformEvaluator(), settings)
        search.reset(0, C4.initial_state())
        gen = np.random.default_rng(seed)
        for _ in range(runs):
            search.run(gen)
        return search.root_priors(0)

    a, b, c = noisy_priors(1), noisy_priors(1), noisy_priors(2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.sum() == pytest.approx(1.0)
    # a second run on the same root re-mixes noise into the clean priors, not the noisy ones
    gen = np.random.default_rng(1)
    gen.dirichlet(np.full(7, 0.3))
    second_noise = gen.dirichlet(np.full(7, 0.3))
    np.testing.assert_allclose(noisy_priors(1, runs=2), 0.5 / 7 + 0.5 * second_noise)


def test_terminal_roots_are_not_searched_and_values_come_from_outcomes():
    won = C4.from_moves([0, 1, 0, 1, 0, 1, 0])
    search = BatchedSearch(C4, UniformEvaluator(), SearchSettings(simulations=16), slots=2)
    search.reset(0, won)
    search.reset(1, C4.from_moves([0, 1, 0, 1, 0, 2]))
    search.run(np.random.default_rng(0))
    assert search.visit_counts(0).sum() == 0
    assert search.root_value(1) > 0.5  # the side to move wins at once


def test_terminal_nodes_carry_the_games_terminal_value():
    """The search backs up ``Game.terminal_value``, not the bare outcome: a win on the last
    ply of tic-tac-toe is worth 1 - w (w = the quick-win weight)."""
    last_move_wins = [0, 1, 2, 3, 4, 5, 7, 6]  # X to move; the one empty cell wins
    for weight in (0.0, 0.25):
        game = get_game("tictactoe")
        game.quick_win_weight = weight
        state = game.from_moves(last_move_wins)
        assert state.legal_moves() == [8] and state.play(8).outcome() == 1
        search = BatchedSearch(game, UniformEvaluator(), SearchSettings(simulations=8))
        search.reset(0, state)
        search.run(np.random.default_rng(0))
        assert search.root_value(0) == pytest.approx(1.0 - weight)
        assert RolloutEvaluator(2).value(state.play(8)) == pytest.approx(-(1.0 - weight))


def test_rollout_values_do_not_depend_on_the_batch():
    evaluator = RolloutEvaluator(4, seed=11)
    states = [random_position(C4, k, np.random.default_rng(k)) for k in range(6)]
    _, together = evaluator.evaluate(states)
    alone = [evaluator.evaluate_one(s)[1] for s in reversed(states)][::-1]
    np.testing.assert_array_equal(together, alone)
    assert np.all(np.abs(together) <= 1)


def test_uniform_priors_cover_exactly_the_legal_moves():
    state = C4.from_moves([0] * 6)  # column 1 is full
    priors, value = UniformEvaluator().evaluate_one(state)
    assert priors[0] == 0 and priors[1:] == pytest.approx(np.full(6, 1 / 6))
    assert value == 0


def test_policy_from_visits_and_temperature():
    visits = np.array([0, 10, 30, 30, 5])
    np.testing.assert_allclose(policy_from_visits(visits, 0), [0, 0, 0.5, 0.5, 0])
    np.testing.assert_allclose(policy_from_visits(visits, 1), visits / visits.sum())
    sharp = policy_from_visits(visits, 0.5)
    assert sharp[2] > visits[2] / visits.sum() and sharp[0] == 0
    rng = np.random.default_rng(0)
    assert {select_move(visits, 0, rng) for _ in range(50)} == {2, 3}
    with pytest.raises(ValueError):
        policy_from_visits(np.zeros(3), 1.0)


def test_temperature_schedule_and_settings_validation():
    settings = SearchSettings(temperature=1.0, temperature_moves=4)
    assert [settings.temperature_at(p) for p in (0, 3, 4, 10)] == [1.0, 1.0, 0.0, 0.0]
    for bad in ({"simulations": 0}, {"leaves_per_game": 0}, {"dirichlet_fraction": 1.5}):
        with pytest.raises(ValueError):
            SearchSettings(**bad)


def test_run_takes_simulations_per_slot_and_noise_at_chosen_slots_only():
    game = get_game("tictactoe")
    settings = SearchSettings(simulations=8, dirichlet_fraction=0.5, reuse_tree=False)
    search = BatchedSearch(game, UniformEvaluator(), settings, slots=3)
    for slot in range(3):
        search.reset(slot, game.initial_state())
    search.run(np.random.default_rng(0), slots=[0, 1, 2], simulations=[3, 0, 7], noise_slots={0})
    assert [int(search.visit_counts(s).sum()) for s in range(3)] == [3, 0, 7]
    uniform = np.full(9, 1 / 9)
    assert not np.allclose(search.root_priors(0), uniform)  # noise mixed in
    assert np.allclose(search.root_priors(2), uniform)  # searched, without noise

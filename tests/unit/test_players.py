"""Players: legal moves, tactics of the pure-MCTS reference, determinism, tree reuse."""

from __future__ import annotations

import numpy as np
import pytest

from engine.games import get_game
from engine.network import NetworkConfig, NetworkEvaluator, build_network, set_torch_threads
from engine.players import NetworkMCTSPlayer, PureMCTSPlayer, RandomPlayer, RawPolicyPlayer

C4 = get_game("connect4")
TTT = get_game("tictactoe")
TINY = NetworkConfig(blocks=1, channels=8, value_hidden=8)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    set_torch_threads(1)


def positions(game, n, seed):
    rng = np.random.default_rng(seed)
    out, state = [], game.initial_state()
    while len(out) < n:
        if state.is_terminal():
            state = game.initial_state()
        out.append(state)
        legal = state.legal_moves()
        state = state.play(legal[int(rng.integers(len(legal)))])
    return out


def all_players(game):
    net = build_network(game, TINY, seed=0)
    return [
        RandomPlayer(seed=1),
        PureMCTSPlayer(iterations=30, seed=1),
        NetworkMCTSPlayer(net, simulations=12, seed=1, device="cpu"),
        RawPolicyPlayer(net, seed=1, device="cpu"),
        RawPolicyPlayer(net, temperature=1.0, seed=1, device="cpu", name="raw-t1"),
    ]


@pytest.mark.parametrize("game", [C4, TTT], ids=["connect4", "tictactoe"])
def test_every_player_returns_a_legal_move(game):
    players = all_players(game)
    assert len({p.name for p in players}) == len(players)
    for state in positions(game, 25, seed=2):
        for player in players:
            move = player.choose(state)
            assert isinstance(move, int) and move in state.legal_moves(), player.name


@pytest.mark.parametrize(
    ("game", "moves", "best"),
    [
        (C4, [0, 1, 0, 1, 0, 2], 0),  # win
        (C4, [0, 0, 1, 1, 2], 3),  # block the bottom row
        (C4, [6, 0, 6, 0, 6], 6),  # block the column
        (TTT, [0, 3, 1, 4], 2),  # win rather than block
        (TTT, [0, 4, 1], 2),  # block
    ],
)
def test_pure_mcts_wins_and_blocks_the_obvious(game, moves, best):
    player = PureMCTSPlayer(iterations=800, seed=0)
    assert player.choose(game.from_moves(moves)) == best


def test_pure_mcts_is_seeded():
    state = C4.from_moves([3, 3])
    a = [PureMCTSPlayer(iterations=50, seed=7).choose(state) for _ in range(2)]
    assert a[0] == a[1]


def test_raw_policy_argmax_is_deterministic_and_is_the_argmax():
    net = build_network(C4, TINY, seed=3)
    evaluator = NetworkEvaluator(net, device="cpu")
    states = positions(C4, 20, seed=4)
    first = [RawPolicyPlayer(net, seed=0, device="cpu").choose(s) for s in states]
    second = [RawPolicyPlayer(net, seed=99, device="cpu").choose(s) for s in states]
    assert first == second
    assert first == [int(np.argmax(evaluator.evaluate_one(s)[0])) for s in states]


def test_sampled_raw_policy_follows_its_seed():
    net = build_network(C4, TINY, seed=3)
    state = C4.initial_state()
    runs = [
        [RawPolicyPlayer(net, temperature=2.0, seed=s, device="cpu").choose(state) for _ in range(1)]
        for s in (5, 5)
    ]
    assert runs[0] == runs[1]
    player = RawPolicyPlayer(net, temperature=2.0, seed=5, device="cpu")
    assert len({player.choose(state) for _ in range(60)}) > 1


def test_network_mcts_reuses_its_tree_between_moves():
    net = build_network(TTT, TINY, seed=0)
    player = NetworkMCTSPlayer(net, simulations=200, seed=0, device="cpu")
    state = TTT.initial_state()
    move = player.choose(state)
    assert player.last_visits.sum() == 200
    reply = next(m for m in range(9) if m != move)
    player.choose(state.play(move).play(reply))
    assert player.last_visits.sum() > 200  # the subtree under (move, reply) was kept
    player.choose(TTT.from_moves([8]))  # not a continuation: a fresh tree
    assert player.last_visits.sum() == 200


def test_network_mcts_finds_the_win_and_values_it():
    net = build_network(C4, TINY, seed=0)
    player = NetworkMCTSPlayer(net, simulations=200, seed=0, device="cpu")
    win = C4.from_moves([0, 1, 0, 1, 0, 2])
    assert player.choose(win) == 0
    assert player.value_of(win) > 0.5
    lost = win.play(0)  # terminal: the side to move lost to the 4th stone (7th ply)
    assert player.value_of(lost) == lost.terminal_value() == -C4.terminal_value(1, 7)


def test_raw_policy_value_is_the_net_value():
    net = build_network(TTT, TINY, seed=0)
    player = RawPolicyPlayer(net, device="cpu")
    state = TTT.from_moves([4])
    assert player.value_of(state) == pytest.approx(NetworkEvaluator(net, device="cpu").evaluate_one(state)[1])
    assert -1 <= player.value_of(state) <= 1

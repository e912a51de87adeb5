"""Game rules: one conformance suite run over every registered game, property tests
against the naive references in ``naive_games``, and Connect Four specifics."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive_games import NaiveConnectFour, NaiveTicTacToe

from engine.errors import IllegalMove
from engine.games import GAMES, ConnectFour, Game, State, UnknownGame, get_game

# Every registered game with its default parameters, plus Connect Four at another size.
CASES: list[tuple[str, dict[str, int]]] = [(name, {}) for name in GAMES] + [
    ("connect4", {"width": 5, "height": 4})
]
CASE_IDS = [name + "".join(f"-{v}" for v in params.values()) for name, params in CASES]
NAIVE = {
    "tictactoe": lambda game: NaiveTicTacToe(),
    "connect4": lambda game: NaiveConnectFour(game.width, game.height),
}


@pytest.fixture(params=CASES, ids=CASE_IDS)
def game(request) -> Game:
    name, params = request.param
    return get_game(name, **params)


def random_states(game: Game, seed: int, games: int = 20) -> list[State]:
    """Every position (terminal ones included) of a few seeded random games."""
    rng = random.Random(seed)
    states = []
    for _ in range(games):
        state = game.initial_state()
        states.append(state)
        while not state.is_terminal():
            state = state.play(rng.choice(state.legal_moves()))
            states.append(state)
    return states


def move_permutations(game: Game) -> list[list[int]]:
    """For each symmetry, where it sends every action (read off one-hot policies)."""
    planes = game.initial_state().planes()
    eye = np.eye(game.num_actions, dtype=np.float32)
    images = [game.symmetries(planes, eye[a]) for a in range(game.num_actions)]
    return [
        [int(np.argmax(images[a][k][1])) for a in range(game.num_actions)]
        for k in range(len(images[0]))
    ]


# --------------------------------------------------------------------------- conformance


def test_initial_state(game: Game) -> None:
    state = game.initial_state()
    assert state.to_play == 0 and state.moves == ()
    assert not state.is_terminal() and state.outcome() is None
    legal = state.legal_moves()
    assert legal and legal == sorted(set(legal))
    assert all(0 <= m < game.num_actions for m in legal)


def test_random_games_are_consistent(game: Game) -> None:
    for state in random_states(game, seed=1):
        legal = state.legal_moves()
        assert legal == sorted(set(legal)) and all(0 <= m < game.num_actions for m in legal)
        assert np.array_equal(np.flatnonzero(state.legal_mask()), legal)
        assert state.to_play == len(state.moves) % 2
        assert state.is_terminal() == (not legal) == (state.outcome() is not None)
        if state.is_terminal():
            assert state.outcome() in (-1, 0, 1)
            if state.outcome() != 0:  # the winner is whoever moved last
                assert state.outcome() == (1 if len(state.moves) % 2 == 1 else -1)


def test_from_moves_round_trip(game: Game) -> None:
    for state in random_states(game, seed=2, games=5):
        again = game.from_moves(state.moves)
        assert again.moves == state.moves
        assert again.legal_moves() == state.legal_moves()
        assert again.outcome() == state.outcome()
        assert np.array_equal(again.planes(), state.planes())


def test_play_does_not_change_the_state(game: Game) -> None:
    state = game.initial_state()
    before = (state.moves, state.legal_moves(), state.planes())
    state.play(state.legal_moves()[0])
    assert (state.moves, state.legal_moves()) == before[:2]
    assert np.array_equal(state.planes(), before[2])


@pytest.mark.parametrize("bad", [-1, "num_actions", 10**6, "3", 1.5, None, True])
def test_out_of_range_or_wrong_type_moves_are_illegal(game: Game, bad: object) -> None:
    move = game.num_actions if bad == "num_actions" else bad
    with pytest.raises(IllegalMove, match="illegal move"):
        game.initial_state().play(move)  # type: ignore[arg-type]


def test_occupied_or_full_moves_are_illegal(game: Game) -> None:
    checked = 0
    for state in random_states(game, seed=3, games=10):
        if state.is_terminal():
            continue
        for move in set(range(game.num_actions)) - set(state.legal_moves()):
            with pytest.raises(IllegalMove) as err:
                state.play(move)
            assert repr(move) in str(err.value) and game.name in str(err.value)
            assert game.moves_to_str(state.moves) in str(err.value)
            checked += 1
    assert checked > 0


def test_no_move_after_the_end(game: Game) -> None:
    terminal = [s for s in random_states(game, seed=4, games=5) if s.is_terminal()]
    assert len(terminal) == 5
    for state in terminal:
        for move in range(game.num_actions):
            with pytest.raises(IllegalMove):
                state.play(move)


def test_numpy_integer_moves_are_accepted(game: Game) -> None:
    state = game.initial_state()
    move = state.legal_moves()[-1]
    after = state.play(np.int64(move))  # type: ignore[arg-type]
    assert after.moves == (move,) and type(after.moves[0]) is int


def test_notation_round_trip(game: Game) -> None:
    for move in range(game.num_actions):
        text = game.move_to_str(move)
        assert game.parse_move(text) == move
    for bad in ["", "zz", "0", "99", "a0", "-1"]:
        with pytest.raises(IllegalMove):
            game.parse_move(bad)


def test_terminal_values(game: Game) -> None:
    """Draws are 0; decisive results keep their sign, stay in [-1, 1] and never grow with
    the game's length; the state's value is the game's, for its side to move."""
    for plies in range(game.max_plies + 1):
        assert game.terminal_value(0, plies) == 0.0
        win = game.terminal_value(1, plies)
        assert 0 < win <= 1 and game.terminal_value(-1, plies) == -win
        assert plies == 0 or win <= game.terminal_value(1, plies - 1)
    for state in random_states(game, seed=5, games=10):
        if not state.is_terminal():
            with pytest.raises(ValueError, match="not finished"):
                state.terminal_value()
            continue
        value = game.terminal_value(state.outcome() or 0, len(state.moves))
        assert state.terminal_value() == (value if state.to_play == 0 else -value)


def test_connect4_prefers_quick_wins() -> None:
    """Connect Four values a win by how soon it comes, like the solver's score."""
    c4 = ConnectFour()
    assert c4.terminal_value(1, 7) > c4.terminal_value(1, 41) >= 0.5
    assert c4.terminal_value(1, 42) == pytest.approx(1 - c4.quick_win_weight)
    assert get_game("tictactoe").terminal_value(1, 9) == 1.0  # tic-tac-toe: plain outcomes


def test_planes_shape_and_perspective(game: Game) -> None:
    previous = None
    for state in random_states(game, seed=5, games=3):
        planes = state.planes()
        assert planes.shape == game.plane_shape and planes.dtype == np.float32
        assert set(np.unique(planes[:2])) <= {0.0, 1.0}
        assert not np.any(planes[0] * planes[1])
        assert np.all(planes[2] == state.to_play)
        n = len(state.moves)
        assert planes[0].sum() == n // 2 and planes[1].sum() == (n + 1) // 2
        if previous is not None and state.moves[:-1] == previous.moves:
            before = previous.planes()
            assert np.array_equal(planes[0], before[1])  # the opponent's stones are unchanged
            added = planes[1] - before[0]  # the mover's stones grew by one
            assert added.min() == 0 and added.sum() == 1
        previous = state


def test_planes_batch_equals_stacked_planes(game: Game) -> None:
    states = random_states(game, seed=8, games=30)
    random.Random(8).shuffle(states)  # mixed plies and sides to move in one batch
    for batch in (states, states[:1], states[:257]):
        planes = game.planes_batch(batch)
        assert planes.dtype == np.float32
        assert np.array_equal(planes, np.stack([s.planes() for s in batch]))
    empty = game.planes_batch([])
    assert empty.shape == (0, *game.plane_shape) and empty.dtype == np.float32


def test_connect4_large_board_planes_batch() -> None:
    """9×12 spans two 64-bit words per bitboard."""
    game = ConnectFour(width=9, height=12)
    states = random_states(game, seed=10, games=10)
    assert np.array_equal(game.planes_batch(states), np.stack([s.planes() for s in states]))


def test_symmetries_identity_first_and_a_group(game: Game) -> None:
    rng = np.random.default_rng(6)
    state = random_states(game, seed=6, games=1)[3]
    planes, policy = state.planes(), rng.random(game.num_actions).astype(np.float32)
    images = game.symmetries(planes, policy)
    assert np.array_equal(images[0][0], planes) and np.array_equal(images[0][1], policy)
    keys = {(p.tobytes(), q.tobytes()) for p, q in images}
    for p, q in images:
        assert p.shape == planes.shape and q.shape == policy.shape
        again = {(a.tobytes(), b.tobytes()) for a, b in game.symmetries(p, q)}
        assert again == keys  # closed under composition, and every image has an inverse


def test_symmetries_with_a_batch_axis(game: Game) -> None:
    rng = np.random.default_rng(7)
    states = random_states(game, seed=7, games=1)[:4]
    planes = np.stack([s.planes() for s in states])
    policy = rng.random((len(states), game.num_actions)).astype(np.float32)
    batched = game.symmetries(planes, policy)
    for i in range(len(states)):
        single = game.symmetries(planes[i], policy[i])
        for (bp, bq), (sp, sq) in zip(batched, single, strict=True):
            assert np.array_equal(bp[i], sp) and np.array_equal(bq[i], sq)


def test_symmetric_games_are_symmetric(game: Game) -> None:
    perms = move_permutations(game)
    assert perms[0] == list(range(game.num_actions))
    for perm in perms:
        assert sorted(perm) == list(range(game.num_actions))
    for state in random_states(game, seed=8, games=10):
        if not state.is_terminal():
            continue
        for k, perm in enumerate(perms):
            image = game.from_moves([perm[m] for m in state.moves])
            assert image.outcome() == state.outcome()
            expected = game.symmetries(state.planes(), np.zeros(game.num_actions))[k][0]
            assert np.array_equal(image.planes(), expected)


# ------------------------------------------------------------- against the naive references


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_matches_naive_reference(name: str, params: dict, data: st.DataObject) -> None:
    game = get_game(name, **params)
    naive = NAIVE[name](game)
    cells = game.plane_shape[1] * game.plane_shape[2]
    moves = data.draw(
        st.lists(st.integers(0, game.num_actions - 1), min_size=cells // 2, max_size=cells + 10)
    )
    state = game.initial_state()
    for move in moves:
        outcome = naive.outcome()
        legal = [] if outcome is not None else naive.legal_moves()
        assert state.legal_moves() == legal
        assert state.outcome() == outcome and state.is_terminal() == (outcome is not None)
        assert state.to_play == naive.to_play
        assert np.array_equal(state.planes(), naive.planes())
        if move in legal:
            state = state.play(move)
            naive.play(move)
        else:
            with pytest.raises(IllegalMove):
                state.play(move)


def test_large_board_planes_match_naive() -> None:
    """9×12 needs more than 64 bits, so planes take the unpacked-bytes path."""
    game = ConnectFour(width=9, height=12)
    naive = NaiveConnectFour(9, 12)
    rng = random.Random(9)
    state = game.initial_state()
    while not state.is_terminal():
        assert np.array_equal(state.planes(), naive.planes())
        move = rng.choice(state.legal_moves())
        state = state.play(move)
        naive.play(move)
    assert state.outcome() == naive.outcome()


# --------------------------------------------------------------------------- Connect Four


@pytest.fixture
def c4() -> ConnectFour:
    return ConnectFour()


@pytest.mark.parametrize(
    ("moves", "outcome"),
    [
        ("4455667", 1),  # horizontal, bottom row
        ("1212121", 1),  # vertical
        ("71122334", -1),  # the second player, horizontal
        ("12234334544", 1),  # diagonal up to the right
        ("76654554344", 1),  # the mirror image: diagonal up to the left
        ("445566", None),
    ],
)
def test_connect4_wins(c4: ConnectFour, moves: str, outcome: int | None) -> None:
    naive = NaiveConnectFour()
    for move in c4.parse_moves(moves):
        naive.play(move)
    assert naive.outcome() == outcome
    assert c4.from_notation(moves).outcome() == outcome


def test_connect4_full_board_draw() -> None:
    for game in (ConnectFour(), ConnectFour(5, 4)):
        rng = random.Random(10)
        while True:
            state = game.initial_state()
            while not state.is_terminal():
                state = state.play(rng.choice(state.legal_moves()))
            if state.outcome() == 0:
                break
        assert len(state.moves) == game.width * game.height and state.legal_moves() == []
        naive = NaiveConnectFour(game.width, game.height)
        for move in state.moves:
            naive.play(move)
        assert naive.outcome() == 0


def test_connect4_planes_row_zero_is_the_top(c4: ConnectFour) -> None:
    planes = c4.from_notation("4").planes()
    assert planes[1, 5, 3] == 1 and planes[1].sum() == 1 and planes[2, 0, 0] == 1
    planes = c4.from_notation("44").planes()
    assert planes[0, 5, 3] == 1 and planes[1, 4, 3] == 1 and planes[2].sum() == 0
    assert c4.from_notation("444").board()[-3:] == ["...X...", "...O...", "...X..."]


def test_connect4_full_column(c4: ConnectFour) -> None:
    state = c4.from_notation("121212")
    assert state.legal_moves() == [0, 1, 2, 3, 4, 5, 6]
    state = c4.from_notation("111111")
    assert state.legal_moves() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(IllegalMove, match=r"illegal move 0 in connect4 position 111111"):
        state.play(0)


def test_connect4_notation(c4: ConnectFour) -> None:
    assert [c4.move_to_str(m) for m in range(7)] == list("1234567")
    assert c4.parse_move(" 4 ") == 3
    for bad in ["0", "8", "a", "", "11", "4.0", "٣"]:
        with pytest.raises(IllegalMove, match="connect4"):
            c4.parse_move(bad)
    assert c4.parse_moves("111 23") == (0, 0, 0, 1, 2)
    assert c4.moves_to_str((0, 0, 0, 1, 2)) == "11123"
    state = c4.from_notation("11123222")
    assert state.moves == (0, 0, 0, 1, 2, 1, 1, 1) and state.to_play == 0
    with pytest.raises(IllegalMove, match="'8'"):
        c4.from_notation("1238")
    with pytest.raises(IllegalMove, match="illegal move 0"):
        c4.from_notation("1111111")


def test_connect4_mirror(c4: ConnectFour) -> None:
    state = c4.from_notation("1123")
    policy = np.arange(7, dtype=np.float32)
    (p0, q0), (p1, q1) = c4.symmetries(state.planes(), policy)
    assert np.array_equal(q1, policy[::-1]) and np.array_equal(q0, policy)
    assert np.array_equal(p1, c4.from_notation("7765").planes())
    assert [c4.mirror_move(m) for m in range(7)] == [6, 5, 4, 3, 2, 1, 0]


def test_connect4_key_and_winning_moves(c4: ConnectFour) -> None:
    assert c4.from_notation("1234").key() == c4.from_notation("3214").key()
    assert c4.from_notation("1234").key() != c4.from_notation("2143").key()
    assert c4.from_notation("445566").winning_moves() == [2, 6]
    assert c4.from_notation("4455667").winning_moves() == []


def test_connect4_sizes_and_equality() -> None:
    assert ConnectFour(5, 4).plane_shape == (3, 4, 5) and ConnectFour(5, 4).num_actions == 5
    assert ConnectFour() == ConnectFour(7, 6) != ConnectFour(5, 4)
    assert len({ConnectFour(), ConnectFour(7, 6)}) == 1
    for width, height in [(3, 6), (10, 6), (7, 3), (7, 13)]:
        with pytest.raises(ValueError, match="not supported"):
            ConnectFour(width, height)


# ------------------------------------------------------------------------------ registry


def test_registry() -> None:
    assert GAMES == ("tictactoe", "connect4")
    assert get_game("connect4") == ConnectFour()
    assert get_game("connect4", width=5, height=4).plane_shape == (3, 4, 5)
    assert get_game("tictactoe").name == "tictactoe"
    with pytest.raises(UnknownGame, match="known games: tictactoe, connect4") as err:
        get_game("chess")
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownGame, match="depth"):
        get_game("connect4", depth=3)
    with pytest.raises(UnknownGame, match="width"):
        get_game("tictactoe", width=3)

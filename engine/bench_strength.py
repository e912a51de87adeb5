"""The strength bench: a network, and reference players, graded on solved Connect Four positions.

``measure_model`` grades a net two ways — its raw policy (argmax, value head as the value)
and network + MCTS at a number of simulations (the most visited move, the root's backed-up
value) — searching many positions at once: one ``BatchedSearch`` slot per position, so each
evaluator call carries a whole batch. ``model_answers`` gives the moves and values behind
those grades (in float32, or float16 with ``half``), for comparing two ways to run a net.
``measure_references`` grades the players that give the scale: uniformly random moves and
pure MCTS with random rollouts (moves only).
``spread`` picks an evenly spaced subset of a positions file (files are sorted by band).
Torch is imported only when a net is measured, so command lines can read the defaults here
without paying for it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from engine.games.connect4 import ConnectFour, ConnectFourState
from engine.mcts import BatchedSearch, Evaluator, SearchSettings
from engine.strength import Position, StrengthReport, grade

if TYPE_CHECKING:
    from engine.network import PolicyValueNet

PUBLIC_POSITIONS = Path(__file__).parent / "data" / "connect4_public.jsonl"  # 1,500, 3 bands
RAW_POLICY, RANDOM = "raw-policy", "random"
DEFAULT_SIMULATIONS = 200
DEFAULT_REFERENCE_ROLLOUTS = 1000
# Search for grading: no root noise, the search's own defaults otherwise.
BENCH_SEARCH = SearchSettings(simulations=DEFAULT_SIMULATIONS, dirichlet_fraction=0.0)

Progress = Callable[[str, int, int], None]  # (player, positions done, total)


def mcts_name(simulations: int) -> str:
    return f"net-mcts-{simulations}"


def pure_mcts_name(rollouts: int) -> str:
    return f"pure-mcts-{rollouts}"


def spread(positions: Sequence[Position], limit: int | None) -> list[Position]:
    """``limit`` positions evenly spaced through ``positions`` (all of them when None or
    larger), so every band of a band-sorted file keeps its share."""
    n = len(positions)
    if limit is None or limit >= n:
        return list(positions)
    if limit < 1:
        raise ValueError("limit must be >= 1")
    return [positions[i * n // limit] for i in range(limit)]


def grade_answers(
    positions: Sequence[Position],
    game: ConnectFour,
    moves: dict[tuple[int, ...], int],
    values: dict[tuple[int, ...], float] | None,
) -> StrengthReport:
    predict = None if values is None else (lambda state: values[state.moves])
    return grade(positions, lambda state: moves[state.moves], predict, game)


def _check_net(net: PolicyValueNet, game: ConnectFour) -> None:
    if tuple(net.plane_shape) != tuple(game.plane_shape) or net.num_actions != game.num_actions:
        raise ValueError(
            f"the net takes planes {net.plane_shape} and {net.num_actions} actions; "
            f"{game} has {game.plane_shape} and {game.num_actions}"
        )


Answers = tuple[dict[tuple[int, ...], int], dict[tuple[int, ...], float]]  # moves, values by position


def model_answers(
    net: PolicyValueNet,
    positions: Sequence[Position],
    sims: int = DEFAULT_SIMULATIONS,
    *,
    batch: int = 256,
    settings: SearchSettings = BENCH_SEARCH,
    game: ConnectFour | None = None,
    device: str | None = None,
    half: bool = False,
    raw: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Answers]:
    """The move and value ``net`` gives each position: ``"raw-policy"`` (when ``raw``: the
    policy's argmax and the value head) and ``"net-mcts-<sims>"`` (when ``sims`` > 0: the
    most visited move and the root's value). ``half``: the net in float16, on any device.
    ``batch`` positions are searched together (one evaluator call per simulation step)."""
    from engine.network import NetworkEvaluator

    game = game or ConnectFour()
    _check_net(net, game)
    if batch < 1:
        raise ValueError("batch must be >= 1")
    evaluator = NetworkEvaluator(net, device=device, half=half, half_on_cpu=True)
    states = [p.state(game) for p in positions]
    answers: dict[str, Answers] = {}
    if raw:
        moves, values = {}, {}
        for start in range(0, len(states), batch):
            part = states[start : start + batch]
            priors, predicted = evaluator.evaluate(part)
            for state, row, value in zip(part, priors, predicted, strict=True):
                moves[state.moves] = int(np.argmax(row))
                values[state.moves] = float(value)
        answers[RAW_POLICY] = moves, values
    if sims > 0:
        name = mcts_name(sims)
        answers[name] = _search_all(states, game, evaluator, settings, sims, batch, seed, name, progress)
    return answers


def measure_model(
    net: PolicyValueNet,
    positions: Sequence[Position],
    sims: int = DEFAULT_SIMULATIONS,
    *,
    game: ConnectFour | None = None,
    **options: Any,
) -> dict[str, StrengthReport]:
    """Reports for ``net`` on ``positions``: ``"raw-policy"`` (when ``raw``) and
    ``"net-mcts-<sims>"`` (when ``sims`` > 0), each with value accuracy; ``options`` are
    ``model_answers``'s."""
    game = game or ConnectFour()
    answers = model_answers(net, positions, sims, game=game, **options)
    return {name: grade_answers(positions, game, moves, values)
            for name, (moves, values) in answers.items()}


def _search_all(
    states: list[ConnectFourState],
    game: ConnectFour,
    evaluator: Evaluator,
    settings: SearchSettings,
    sims: int,
    batch: int,
    seed: int,
    name: str,
    progress: Progress | None,
) -> tuple[dict[tuple[int, ...], int], dict[tuple[int, ...], float]]:
    """The most visited move (ties: the lowest column) and root value of every state."""
    settings = msgspec.structs.replace(settings, simulations=sims)
    rng = np.random.default_rng(seed)
    moves, values = {}, {}
    for start in range(0, len(states), batch):
        part = states[start : start + batch]
        search = BatchedSearch(game, evaluator, settings, slots=len(part))
        for slot, state in enumerate(part):
            search.reset(slot, state)
        search.run(rng)
        for slot, state in enumerate(part):
            moves[state.moves] = int(np.argmax(search.visit_counts(slot)))
            values[state.moves] = search.root_value(slot)
        if progress is not None:
            progress(name, start + len(part), len(states))
    return moves, values


def measure_references(
    positions: Sequence[Position],
    rollouts: int = DEFAULT_REFERENCE_ROLLOUTS,
    *,
    seed: int = 0,
    game: ConnectFour | None = None,
    progress: Progress | None = None,
) -> dict[str, StrengthReport]:
    """``"random"`` and ``"pure-mcts-<rollouts>"`` (skipped when ``rollouts`` is 0) on
    ``positions``, moves only. Both players are seeded, so the figures reproduce."""
    from engine.players import PureMCTSPlayer

    game = game or ConnectFour()
    rng = random.Random(seed)  # the moves of engine.players.RandomPlayer(seed)
    reports = {RANDOM: grade(positions, lambda state: rng.choice(state.legal_moves()), game=game)}
    if rollouts > 0:
        name = pure_mcts_name(rollouts)
        player = PureMCTSPlayer(rollouts, seed=seed)
        done = 0

        def choose(state: ConnectFourState) -> int:
            nonlocal done
            move = player.choose(state)
            done += 1
            if progress is not None and (done % 100 == 0 or done == len(positions)):
                progress(name, done, len(positions))
            return move

        reports[name] = grade(positions, choose, game=game)
    return reports

"""The AI difficulty levels: what each of the eight plays like, and their moves from one net.

``LevelSettings`` is one level: ``raw_policy`` (the net's policy sampled at ``temperature``,
no search) or ``search`` (PUCT search of ``simulations`` per move, the move drawn from the
visits at ``temperature``), either one replacing its move by a uniformly random legal move
with probability ``blunder_rate``. ``think_ms`` bounds a search's wall time (0: the
simulations alone bound it); ``elo`` is the calibrated Elo (``jetzero p2p calibrate``,
relative to the random player), None before calibration.

Two ways to play a level, both on the engine's players and search (nothing new searched
here): ``level_player`` is an ``engine.games.Player`` for one game (``RawPolicyPlayer`` /
``NetworkMCTSPlayer``, wrapped to blunder), used by calibration; ``choose_moves`` answers
many pending positions of many games at once, as the raw-policy AI workers do: the
raw-policy ones in one evaluator call, the searched ones as the slots of one
``BatchedSearch`` (each simulation one evaluator call over every slot, the slots' own
simulation counts and deadlines). The pieces of one searched move — ``start_move`` (its
position, rng and blunder), ``think_limit_s``, ``level_search``, ``searched_choice`` — are
shared with ``search_worker.ContinuousSearch``, where searches join and leave a running
batch one by one.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Sequence
from typing import Literal

import msgspec
import numpy as np

from engine.games.base import Game, Player, State
from engine.mcts import BatchedSearch, Evaluator, SearchSettings, policy_from_visits, select_move
from engine.network import NetworkEvaluator, PolicyValueNet, build_network, default_network_config
from engine.players import NetworkMCTSPlayer, RawPolicyPlayer

__all__ = [
    "DEFAULT_LEVELS",
    "LEVEL_NUMBERS",
    "SEARCH_CHUNK",
    "Batch",
    "Choice",
    "LevelSettings",
    "MoveRequest",
    "choose_moves",
    "initial_network",
    "level_player",
    "level_search",
    "levels_by_number",
    "move_seed",
    "searched_choice",
    "start_move",
    "think_limit_s",
]

LEVEL_NUMBERS = range(1, 9)
SEARCH_CHUNK = 16  # simulations per slot between two deadline checks (at most)


class LevelSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One difficulty level."""

    number: int
    kind: Literal["raw_policy", "search"]
    temperature: float = 0.0
    blunder_rate: float = 0.0
    simulations: int = 0  # search levels: simulations per move
    think_ms: int = 0  # search levels: most wall time per move (0: no deadline but the cap)
    elo: float | None = None

    def __post_init__(self) -> None:
        if self.number not in LEVEL_NUMBERS:
            raise ValueError(f"level number must be 1-8, got {self.number}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 <= self.blunder_rate <= 1.0:
            raise ValueError(f"blunder_rate must be in [0, 1], got {self.blunder_rate}")
        if self.kind == "search" and self.simulations < 1:
            raise ValueError(f"a search level needs simulations >= 1, got {self.simulations}")
        if self.think_ms < 0:
            raise ValueError(f"think_ms must be >= 0, got {self.think_ms}")


# From a hot sampler that often blunders up to the champion's full search. The gaps are
# calibrated by ``jetzero p2p calibrate`` (which rewrites this table into config/p2p.yaml).
DEFAULT_LEVELS: tuple[LevelSettings, ...] = (
    LevelSettings(number=1, kind="raw_policy", temperature=2.0, blunder_rate=0.5),
    LevelSettings(number=2, kind="raw_policy", temperature=1.5, blunder_rate=0.3),
    LevelSettings(number=3, kind="raw_policy", temperature=1.0, blunder_rate=0.15),
    LevelSettings(number=4, kind="raw_policy", temperature=0.5, blunder_rate=0.05),
    LevelSettings(number=5, kind="search", temperature=0.5, simulations=8, think_ms=250),
    LevelSettings(number=6, kind="search", simulations=32, think_ms=500),
    LevelSettings(number=7, kind="search", simulations=128, think_ms=1000),
    LevelSettings(number=8, kind="search", simulations=400, think_ms=2000),
)


def levels_by_number(levels: Sequence[LevelSettings]) -> dict[int, LevelSettings]:
    """The levels by number; ValueError unless they are exactly 1-8, each once."""
    numbers = sorted(level.number for level in levels)
    if numbers != list(LEVEL_NUMBERS):
        raise ValueError(f"levels must be numbered 1-8, each once; got {numbers}")
    return {level.number: level for level in levels}


def move_seed(game_id: str, ply: int) -> int:
    """A stable seed for the AI's move at ``ply`` of ``game_id`` (a game replays)."""
    return zlib.crc32(f"{game_id}:{ply}".encode())


def initial_network(game: Game) -> PolicyValueNet:
    """The untrained network the levels play before the run has a champion of ``game``:
    the engine's default architecture, seed 0 (the same net in every process)."""
    return build_network(game, default_network_config(game.name), seed=0)


# -- one game at a time (calibration) --------------------------------------------------------


class _Blundering:
    """A player that plays a uniformly random legal move with probability ``rate``."""

    def __init__(self, inner: Player, rate: float, seed: int, name: str):
        self.inner = inner
        self.rate = rate
        self.name = name
        self._rng = random.Random(seed ^ 0x5EED)

    def choose(self, state: State) -> int:
        if self._rng.random() < self.rate:
            return self._rng.choice(state.legal_moves())
        return self.inner.choose(state)


def level_player(
    level: LevelSettings,
    net: PolicyValueNet,
    seed: int,
    *,
    evaluator: NetworkEvaluator | None = None,
    name: str = "",
) -> Player:
    """A player of ``level`` around ``net`` (searches through ``evaluator`` when given, so the
    players of one net are batched together by ``engine.batched_arena``)."""
    name = name or f"level-{level.number}"
    player: Player
    if level.kind == "raw_policy":
        player = RawPolicyPlayer(
            net, temperature=level.temperature, seed=seed, name=name, evaluator=evaluator
        )
    else:
        player = NetworkMCTSPlayer(
            net, simulations=level.simulations, seed=seed, temperature=level.temperature,
            name=name, evaluator=evaluator,
        )
    if level.blunder_rate > 0:
        return _Blundering(player, level.blunder_rate, seed, name)
    return player


# -- many games at once (the AI workers) -----------------------------------------------------


class MoveRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A position (the moves from the start) whose move ``level`` is to choose."""

    moves: tuple[int, ...]
    level: LevelSettings
    seed: int
    waited_ms: float = 0.0  # spent before the search (queueing): taken off the thinking time


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    move: int
    simulations: int = 0  # simulations the search ran for it (0: raw policy)


class Batch(msgspec.Struct, kw_only=True):
    """The answers to a batch and what it cost the network."""

    choices: list[Choice]
    evaluator_calls: int = 0
    evaluations: int = 0


def _blunder(state: State, level: LevelSettings, rng: np.random.Generator) -> int | None:
    if level.blunder_rate > 0 and rng.random() < level.blunder_rate:
        legal = state.legal_moves()
        return int(legal[int(rng.integers(len(legal)))])
    return None


def start_move(game: Game, request: MoveRequest) -> tuple[State, np.random.Generator, int | None]:
    """The position of ``request``, its rng (seeded by the request: a game replays) and its
    blunder: a uniformly random legal move with the level's ``blunder_rate``, else None."""
    state = game.from_moves(request.moves)
    rng = np.random.default_rng(request.seed)
    return state, rng, _blunder(state, request.level, rng)


def think_limit_s(request: MoveRequest, max_think_ms: int) -> float:
    """How long the search of ``request`` may run from its start, in seconds: its level's
    ``think_ms`` (0: ``max_think_ms``), at most ``max_think_ms``, less ``waited_ms``. Zero or
    less: one simulation and out (every search gets at least one)."""
    return (min(request.level.think_ms or max_think_ms, max_think_ms) - request.waited_ms) / 1000.0


def level_search(game: Game, evaluator: Evaluator, slots: int, simulations: int,
                 capacity: int | None = None) -> BatchedSearch:
    """The ``BatchedSearch`` the search levels play with (the engine's default PUCT, no root
    noise; ``simulations`` only sizes the default node pool: runs say their own counts)."""
    return BatchedSearch(game, evaluator, SearchSettings(simulations=simulations), slots=slots,
                         capacity=capacity)


def searched_choice(visits: np.ndarray, level: LevelSettings, rng: np.random.Generator) -> Choice:
    """The move drawn from a search's root visits at the level's temperature."""
    return Choice(move=select_move(visits, level.temperature, rng), simulations=int(visits.sum()))


def choose_moves(
    game: Game,
    evaluator: Evaluator,
    requests: Sequence[MoveRequest],
    *,
    max_think_ms: int,
) -> Batch:
    """Moves for ``requests`` (each position legal and not over): raw-policy levels from one
    evaluator call, search levels as one batched search; a search stops at its level's
    ``think_ms`` (at most ``max_think_ms``, less ``waited_ms``) or its simulations, whichever
    comes first."""
    started = [start_move(game, r) for r in requests]
    states = [state for state, _, _ in started]
    rngs = [rng for _, rng, _ in started]
    choices: list[Choice | None] = [
        None if blunder is None else Choice(move=blunder) for _, _, blunder in started
    ]
    batch = Batch(choices=[])
    raw = [i for i, r in enumerate(requests) if choices[i] is None and r.level.kind == "raw_policy"]
    if raw:
        priors, _ = evaluator.evaluate([states[i] for i in raw])
        batch.evaluator_calls += 1
        batch.evaluations += len(raw)
        for row, i in enumerate(raw):
            policy = policy_from_visits(priors[row], requests[i].level.temperature)
            choices[i] = Choice(move=int(rngs[i].choice(len(policy), p=policy)))
    searched = [i for i, choice in enumerate(choices) if choice is None]
    if searched:
        search = _search(game, evaluator, [states[i] for i in searched], [requests[i] for i in searched],
                         [rngs[i] for i in searched], max_think_ms)
        batch.evaluator_calls += search.evaluator_calls
        batch.evaluations += search.evaluations
        for slot, i in enumerate(searched):
            choices[i] = searched_choice(search.visit_counts(slot), requests[i].level, rngs[i])
    batch.choices = [choice for choice in choices if choice is not None]
    return batch


def _search(
    game: Game,
    evaluator: Evaluator,
    states: list[State],
    requests: list[MoveRequest],
    rngs: list[np.random.Generator],
    max_think_ms: int,
) -> BatchedSearch:
    """One ``BatchedSearch`` with a slot per position, run in chunks until each slot has its
    level's simulations or its deadline passed (``think_limit_s``; every slot gets at least
    one chunk)."""
    target = np.array([r.level.simulations for r in requests], dtype=np.int64)
    search = level_search(game, evaluator, len(states), int(target.max()))
    for slot, state in enumerate(states):
        search.reset(slot, state)
    limits = np.array([think_limit_s(r, max_think_ms) for r in requests])
    done = np.zeros(len(states), dtype=np.int64)
    start = time.monotonic()
    while True:
        live = np.flatnonzero((done < target) & ((done == 0) | (time.monotonic() - start < limits)))
        if not live.size:
            return search
        chunk = np.minimum(target[live] - done[live], SEARCH_CHUNK)
        search.run(rngs, slots=live.tolist(), simulations=chunk)
        done[live] += chunk

"""Players: anything with a ``name`` and ``choose(state) -> move`` (``engine.games.Player``).

``RandomPlayer`` (uniform legal moves), ``PureMCTSPlayer`` (UCT with random rollouts and no
network: a fixed reference strength), ``NetworkMCTSPlayer`` (PUCT search guided by a net,
reusing its tree between moves) and ``RawPolicyPlayer`` (the net's policy alone, argmax or
sampled). Network players also give ``value_of(state)`` for value-prediction grading.
All are seeded, so a match replays.
"""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np

from engine.games.base import State
from engine.mcts import BatchedSearch, SearchSettings, policy_from_visits
from engine.network import NetworkEvaluator, PolicyValueNet


class RandomPlayer:
    def __init__(self, seed: int = 0, name: str = "random"):
        self.name = name
        self._rng = random.Random(seed)

    def choose(self, state: State) -> int:
        return self._rng.choice(state.legal_moves())


class _UctNode:
    __slots__ = ("state", "parent", "move", "children", "untried", "visits", "wins", "mover")

    def __init__(self, state: State, parent: _UctNode | None, move: int | None, rng):
        self.state = state
        self.parent = parent
        self.move = move
        self.children: list[_UctNode] = []
        self.untried = state.legal_moves()
        rng.shuffle(self.untried)
        self.visits = 0
        self.wins = 0.0  # from the view of the player who moved into this node
        self.mover = 1 - state.to_play


class PureMCTSPlayer:
    """UCT (UCB1, c = √2) with uniformly random rollouts; picks the most visited move."""

    def __init__(self, iterations: int = 1000, seed: int = 0, c: float = math.sqrt(2), name: str = ""):
        if iterations < 1:
            raise ValueError("PureMCTSPlayer needs iterations >= 1")
        self.iterations = iterations
        self.c = c
        self.name = name or f"pure-mcts-{iterations}"
        self._rng = random.Random(seed)

    def choose(self, state: State) -> int:
        rng, c = self._rng, self.c
        root = _UctNode(state, None, None, rng)
        for _ in range(self.iterations):
            node = root
            while not node.untried and node.children:  # select
                log_n = math.log(node.visits)
                node = max(
                    node.children,
                    key=lambda ch: ch.wins / ch.visits + c * math.sqrt(log_n / ch.visits),
                )
            if node.untried:  # expand
                move = node.untried.pop()
                child = _UctNode(node.state.play(move), node, move, rng)
                node.children.append(child)
                node = child
            s = node.state  # roll out
            while not s.is_terminal():
                s = s.play(rng.choice(s.legal_moves()))
            outcome = s.outcome() or 0
            up: _UctNode | None = node
            while up is not None:  # back up
                up.visits += 1
                if outcome == 0:
                    up.wins += 0.5
                elif (outcome == 1) == (up.mover == 0):
                    up.wins += 1.0
                up = up.parent
        best = max(root.children, key=lambda ch: ch.visits)
        assert best.move is not None  # every child was reached by a move
        return best.move


def _net_settings(simulations: int, settings: SearchSettings | None) -> SearchSettings:
    base = settings or SearchSettings(dirichlet_fraction=0.0)
    return msgspec.structs.replace(base, simulations=simulations)


class NetworkMCTSPlayer:
    """PUCT search with a network; ``temperature`` 0 plays the most visited move (ties by
    the seeded rng). The tree is kept between calls when the new position follows from the
    last one, so a game's searches build on each other."""

    def __init__(
        self,
        net: PolicyValueNet,
        simulations: int = 100,
        seed: int = 0,
        temperature: float = 0.0,
        settings: SearchSettings | None = None,
        name: str = "",
        device: str | None = None,
        evaluator: NetworkEvaluator | None = None,
    ):
        self.settings = _net_settings(simulations, settings)
        self.temperature = temperature
        self.name = name or f"net-mcts-{simulations}"
        # ``evaluator``: one already built for ``net``, shared by players of one model (no copy)
        self.evaluator = evaluator if evaluator is not None else NetworkEvaluator(net, device=device)
        self._rng = np.random.default_rng(seed)
        self._search: BatchedSearch | None = None
        self._searched = False  # the current root has had its simulations

    @property
    def rng(self) -> np.random.Generator:
        """The player's seeded generator (ties between equally visited moves)."""
        return self._rng

    def _go_to(self, state: State) -> BatchedSearch:
        search = self._search
        if search is None or search.game != state.game:
            search = self._search = BatchedSearch(state.game, self.evaluator, self.settings)
            search.reset(0, state)
            self._searched = False
            return search
        old = search.root_state(0).moves
        new = state.moves
        if new[: len(old)] != old or len(new) - len(old) > 2:
            search.reset(0, state)
            self._searched = False
        elif len(new) > len(old):
            for move in new[len(old) :]:
                search.advance(0, move)
            self._searched = False
        return search

    def _searched_root(self, state: State) -> BatchedSearch:
        search = self._go_to(state)
        if not self._searched:
            search.run(self._rng)
            self._searched = True
        return search

    def choose(self, state: State) -> int:
        search = self._searched_root(state)
        policy = policy_from_visits(search.visit_counts(0), self.temperature)
        return int(self._rng.choice(len(policy), p=policy))

    @property
    def last_visits(self) -> np.ndarray:
        """Root visit counts of the latest search (reused subtree included)."""
        if self._search is None:
            raise ValueError("no search yet")
        return self._search.visit_counts(0)

    def value_of(self, state: State) -> float:
        """The search's value of ``state`` for its side to move, in [-1, 1]."""
        if state.is_terminal():
            return state.terminal_value()
        return self._searched_root(state).root_value(0)


class RawPolicyPlayer:
    """The net's policy without search: argmax at temperature 0 (deterministic), otherwise a
    sample from ``p^(1/T)`` drawn from the seeded rng."""

    def __init__(
        self,
        net: PolicyValueNet,
        temperature: float = 0.0,
        seed: int = 0,
        name: str = "raw-policy",
        device: str | None = None,
        evaluator: NetworkEvaluator | None = None,
    ):
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        self.temperature = temperature
        self.name = name
        # ``evaluator``: one already built for ``net``, shared by players of one model (no copy)
        self.evaluator = evaluator if evaluator is not None else NetworkEvaluator(net, device=device)
        self._rng = np.random.default_rng(seed)

    def choose(self, state: State) -> int:
        priors, _ = self.evaluator.evaluate_one(state)
        if self.temperature == 0:
            return int(np.argmax(priors))
        scaled = np.where(priors > 0, priors / priors.max(), 0.0) ** (1.0 / self.temperature)
        return int(self._rng.choice(len(scaled), p=scaled / scaled.sum()))

    def value_of(self, state: State) -> float:
        """The net's value of ``state`` for its side to move, in [-1, 1]."""
        return self.evaluator.evaluate_one(state)[1]

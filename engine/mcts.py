"""PUCT Monte-Carlo tree search, batched across many independent games.

``Evaluator`` is the search's two-method view of a network (OpenSpiel style): a batched
``evaluate(states, legal)`` and a single-state ``evaluate_one(state)``; ``UniformEvaluator``
and ``RolloutEvaluator`` need no network. ``BatchedSearch`` keeps the trees of N games in
one flat node pool (numpy arrays, one row per node, one column per action) and advances
them together: each step selects one leaf per game (or several with virtual loss) with
vectorised PUCT, evaluates all of them in one evaluator call, then backs up vectorised.
Subtree reuse keeps the chosen child's tree after a move; a copying collector compacts
the pool when it fills. Root Dirichlet noise and move sampling take numpy Generators.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

import msgspec
import numpy as np

from engine.games.base import Game, State
from engine.positions import NodeInfo, legal_masks, positions_for


class SearchSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How one move is searched, and how the move is then chosen from the visit counts."""

    simulations: int = 100  # new simulations per move (on top of a reused subtree)
    # Exploration weight. 1.0: a run's last Connect Four champion graded at 200 simulations
    # scored 92.9 / 85.1 % outcome / exactly optimal moves with it, 92.5 / 84.3 with 1.5;
    # 0.7 scored 93.1 / 85.1, 0.5 was worse (92.5 / 83.9). Another champion, trained with
    # 1.0: 93.1 / 85.3 with 1.0, 92.9 / 84.7 with 1.5.
    c_puct: float = 1.0
    dirichlet_alpha: float = 1.0  # root noise Dir(alpha) over the legal moves
    dirichlet_fraction: float = 0.0  # weight of the noise in the root priors; 0 = no noise
    temperature: float = 1.0  # visit-count temperature for the first temperature_moves plies
    temperature_moves: int = 0  # plies (from the start of the game) played with temperature
    leaves_per_game: int = 1  # > 1: several leaves per tree per evaluator call (virtual loss)
    virtual_loss: float = 1.0
    fpu_value: float = 0.0  # value assumed for a child that has not been visited
    reuse_tree: bool = True  # keep the chosen child's subtree after a move

    def __post_init__(self) -> None:
        if self.simulations < 1:
            raise ValueError("SearchSettings.simulations must be >= 1")
        if self.leaves_per_game < 1:
            raise ValueError("SearchSettings.leaves_per_game must be >= 1")
        if not 0.0 <= self.dirichlet_fraction <= 1.0:
            raise ValueError("SearchSettings.dirichlet_fraction must be in [0, 1]")
        if self.dirichlet_alpha <= 0 or self.c_puct <= 0:
            raise ValueError("SearchSettings.dirichlet_alpha and c_puct must be positive")
        if self.temperature < 0 or self.temperature_moves < 0:
            raise ValueError("SearchSettings.temperature and temperature_moves must be >= 0")

    def temperature_at(self, ply: int) -> float:
        """Temperature for the move at ``ply`` (0-based from the initial position)."""
        return self.temperature if ply < self.temperature_moves else 0.0


# Connect Four selfplay: 128 simulations per move (tree reuse adds the chosen subtree),
# noise Dir(1.0) at 25% (alpha ≈ 10 / 7 legal moves, rounded down for sharper noise),
# sampled moves for the first 10 plies, then the most visited.
DEFAULT_CONNECT4_SEARCH = SearchSettings(
    simulations=128,
    c_puct=1.0,
    dirichlet_alpha=1.0,
    dirichlet_fraction=0.25,
    temperature=1.0,
    temperature_moves=10,
)


class Evaluator(Protocol):
    """Priors and values for positions, from the side to move's point of view."""

    def evaluate(
        self, states: Sequence[State], legal: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Batch: priors [N, A] (0 off the legal moves, rows sum to 1) and values [N] in
        [-1, 1]. ``legal`` [N, A] are the states' legal masks when the caller has them."""
        ...

    def evaluate_one(self, state: State) -> tuple[np.ndarray, float]:
        """One position: priors [A] and its value."""
        ...


def _legal_masks(states: Sequence[State], legal: np.ndarray | None) -> np.ndarray:
    if legal is not None:
        return np.asarray(legal, dtype=bool)
    return legal_masks(states, states[0].game.num_actions) if states else np.zeros((0, 0), bool)


def _uniform(legal: np.ndarray) -> np.ndarray:
    counts = legal.sum(axis=1, keepdims=True)
    return np.divide(legal, counts, out=np.zeros(legal.shape), where=counts > 0)


class UniformEvaluator:
    """Uniform priors over the legal moves and value 0: search guided only by terminals."""

    def evaluate(
        self, states: Sequence[State], legal: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return _uniform(_legal_masks(states, legal)), np.zeros(len(states))

    def evaluate_one(self, state: State) -> tuple[np.ndarray, float]:
        priors, values = self.evaluate([state])
        return priors[0], float(values[0])


class RolloutEvaluator:
    """Uniform priors; value = mean outcome of ``rollouts`` uniformly random playouts.

    Each position's playouts are seeded from ``seed`` and the position's moves, so a
    position gets the same value whatever batch it is evaluated in.
    """

    def __init__(self, rollouts: int = 8, seed: int = 0):
        if rollouts < 1:
            raise ValueError("RolloutEvaluator needs rollouts >= 1")
        self.rollouts = rollouts
        self.seed = seed

    def value(self, state: State) -> float:
        if state.is_terminal():
            return state.terminal_value()
        rng = np.random.default_rng([self.seed, len(state.moves), *state.moves])
        me = state.to_play
        total = 0.0
        for _ in range(self.rollouts):
            s = state
            while not s.is_terminal():
                legal = s.legal_moves()
                s = s.play(legal[int(rng.integers(len(legal)))])
            value = s.game.terminal_value(s.outcome() or 0, len(s.moves))
            total += value if me == 0 else -value
        return total / self.rollouts

    def evaluate(
        self, states: Sequence[State], legal: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([self.value(s) for s in states], dtype=np.float64)
        return _uniform(_legal_masks(states, legal)), values

    def evaluate_one(self, state: State) -> tuple[np.ndarray, float]:
        priors, values = self.evaluate([state])
        return priors[0], float(values[0])


def policy_from_visits(visits: np.ndarray, temperature: float) -> np.ndarray:
    """Move distribution ∝ visits^(1/T); T = 0 spreads evenly over the most visited moves."""
    visits = np.asarray(visits, dtype=np.float64)
    if visits.sum() <= 0:
        raise ValueError("no visits to choose a move from")
    if temperature == 0:
        best = visits == visits.max()
        return best / best.sum()
    scaled = np.where(visits > 0, visits / visits.max(), 0.0) ** (1.0 / temperature)
    return scaled / scaled.sum()


def select_move(visits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """A move drawn from ``policy_from_visits`` (ties at T = 0 broken by ``rng``)."""
    policy = policy_from_visits(visits, temperature)
    return int(rng.choice(len(policy), p=policy))


_NODE_ARRAYS = (
    "_child", "_edges", "_w", "_nsum", "_explore", "_to_play", "_terminal", "_tvalue", "_expanded",
    "_leafy",
)  # fmt: skip

# the rows of ``_edges`` [capacity, 3, A]
_Q, _P, _N1 = 0, 1, 2


class BatchedSearch:
    """The search trees of ``slots`` independent games, searched together.

    Use: ``reset(slot, state)`` to start a tree, ``run(rng)`` to search every non-empty
    slot, ``visit_counts(slot)`` to read the result, ``advance(slot, move)`` to play a move
    (keeping the subtree), ``clear(slot)`` to free a slot. ``evaluations`` counts positions
    sent to the evaluator and ``evaluator_calls`` the calls.

    The pool keeps, per edge, what PUCT reads in one gather (``_edges``: Q, P, N + 1) and,
    per node, the exploration factor ``c_puct * sqrt(max(N, 1))``; both are updated where
    visits change, with the very float operations the textbook formula does, so the visit
    counts are those of the plain formula (tests/unit/legacy/mcts_v1.py, tested equal).
    Positions live in ``engine.positions`` (bitboard arrays for Connect Four).
    """

    # The node pool: row i describes node i; [capacity, A] arrays hold per-child edges.
    _child: np.ndarray  # child node id per action, -1 if not created
    _edges: np.ndarray  # [capacity, 3, A]: Q (w / n; fpu unvisited; -inf illegal), P (root:
    #                      noise mixed in), N + 1 (virtual visits included while a step runs)
    _w: np.ndarray  # edge total value, for the node's side to move
    _nsum: np.ndarray  # [capacity] sum of the node's edge visits
    _explore: np.ndarray  # [capacity] c_puct * sqrt(max(nsum, 1))
    _to_play: np.ndarray  # [capacity] the node's side to move
    _terminal: np.ndarray  # [capacity] game over at the node
    _tvalue: np.ndarray  # [capacity] terminal value for the side to move, at terminal nodes
    _expanded: np.ndarray  # [capacity] priors and legal masks are set
    _leafy: np.ndarray  # [capacity] terminal or not expanded: a selection stops there

    def __init__(
        self,
        game: Game,
        evaluator: Evaluator,
        settings: SearchSettings,
        slots: int = 1,
        capacity: int | None = None,
    ):
        if slots < 1:
            raise ValueError("BatchedSearch needs at least one slot")
        self.game = game
        self.evaluator = evaluator
        self.settings = settings
        self.slots = slots
        self.roots = np.full(slots, -1, dtype=np.int64)
        self.evaluations = 0
        self.evaluator_calls = 0
        self._clean_priors: dict[int, np.ndarray] = {}
        self._size = 0
        self._positions = positions_for(game)
        self._blank = np.zeros((3, game.num_actions))
        self._blank[_N1] = 1.0
        self._allocate(capacity or max(1024, 2 * slots * (settings.simulations + 2)))

    # -- the node pool -------------------------------------------------------------------

    def _allocate(self, capacity: int) -> None:
        a = self.game.num_actions
        old = getattr(self, "_child", None)
        new: dict[str, np.ndarray] = {
            "_child": np.full((capacity, a), -1, dtype=np.int64),
            "_edges": np.zeros((capacity, 3, a), dtype=np.float64),
            "_w": np.zeros((capacity, a), dtype=np.float64),
            "_nsum": np.zeros(capacity, dtype=np.int64),
            "_explore": np.zeros(capacity, dtype=np.float64),
            "_to_play": np.zeros(capacity, dtype=np.int8),
            "_terminal": np.zeros(capacity, dtype=bool),
            "_tvalue": np.zeros(capacity, dtype=np.float64),
            "_expanded": np.zeros(capacity, dtype=bool),
            "_leafy": np.ones(capacity, dtype=bool),
        }
        if old is not None:
            for name, arr in new.items():
                arr[: self._size] = getattr(self, name)[: self._size]
        for name, arr in new.items():
            setattr(self, name, arr)
        self._positions.allocate(capacity, self._size)
        self._capacity = capacity

    def _add_nodes(self, m: int) -> np.ndarray:
        ids = np.arange(self._size, self._size + m)
        self._size += m
        return ids

    def _init_nodes(self, ids: np.ndarray, info: NodeInfo) -> None:
        to_play, terminal, tvalue = info
        self._child[ids] = -1
        self._edges[ids] = self._blank  # no visits, no priors (until expanded)
        self._w[ids] = 0.0
        self._to_play[ids] = to_play
        self._terminal[ids] = terminal
        self._tvalue[ids] = tvalue
        self._expanded[ids] = False
        self._leafy[ids] = True

    def _ensure_capacity(self, extra: int) -> None:
        if self._size + extra <= self._capacity:
            return
        self._compact()
        if self._size + extra > self._capacity // 2:
            self._allocate(max(2 * self._capacity, 2 * (self._size + extra)))

    def _compact(self) -> None:
        """Copy every node reachable from a root to the front of the pool (BFS order)."""
        live = self.roots >= 0
        roots = self.roots[live]
        parts, frontier = [roots], roots
        while frontier.size:
            children = self._child[frontier].ravel()
            frontier = children[children >= 0]
            parts.append(frontier)
        order = np.concatenate(parts)
        m = order.size
        remap = np.full(self._size, -1, dtype=np.int64)
        remap[order] = np.arange(m)
        for name in _NODE_ARRAYS[1:]:
            arr = getattr(self, name)
            arr[:m] = arr[order]
        child = self._child[order]
        self._child[:m] = np.where(child >= 0, remap[np.maximum(child, 0)], -1)
        self._positions.compact(order, remap)
        self.roots[live] = remap[roots]
        self._size = m

    # -- slots ---------------------------------------------------------------------------

    def reset(self, slot: int, state: State) -> None:
        """Start a fresh tree for ``slot`` at ``state``."""
        self._ensure_capacity(1)
        ids = self._add_nodes(1)
        self._init_nodes(ids, self._positions.set_states(ids, [state]))
        self.roots[slot] = ids[0]
        self._clean_priors.pop(slot, None)

    def clear(self, slot: int) -> None:
        self.roots[slot] = -1
        self._clean_priors.pop(slot, None)

    def root_state(self, slot: int) -> State:
        return self._positions.state(self._root(slot))

    def _root(self, slot: int) -> int:
        root = int(self.roots[slot])
        if root < 0:
            raise ValueError(f"search slot {slot} is empty")
        return root

    def advance(self, slot: int, move: int) -> None:
        """Play ``move`` at the root of ``slot``; its subtree becomes the new tree."""
        root = self._root(slot)
        self._restore_clean_priors(slot)
        child = int(self._child[root, move])
        self._clean_priors.pop(slot, None)
        if child >= 0 and self.settings.reuse_tree:
            self._positions.state(child)  # a root holds its State (its parent may go)
            self.roots[slot] = child
        else:
            self.reset(slot, self._positions.state(root).play(int(move)))

    def visit_counts(self, slot: int) -> np.ndarray:
        return (self._edges[self._root(slot), _N1] - 1.0).astype(np.int64)

    def root_value(self, slot: int) -> float:
        """Mean backed-up value at the root, for its side to move (0 before any visit)."""
        root = self._root(slot)
        n = self.visit_counts(slot).sum()
        return float(self._w[root].sum() / n) if n else 0.0

    def root_priors(self, slot: int) -> np.ndarray:
        """Root priors as searched (including any noise mixed in by the last ``run``)."""
        return self._edges[self._root(slot), _P].copy()

    # -- the search ----------------------------------------------------------------------

    def run(
        self,
        rng: np.random.Generator | Sequence[np.random.Generator],
        slots: Sequence[int] | None = None,
        simulations: int | Sequence[int] | np.ndarray | None = None,
        noise_slots: Collection[int] | None = None,
    ) -> None:
        """Run ``simulations`` (default from settings; or one number per given slot) on each
        given (default: every non-empty, non-terminal) slot. Root noise (when the settings
        have it) is mixed in at the slots of ``noise_slots`` (default: every searched slot),
        drawn from ``rng``: one Generator for all slots in slot order, or one Generator per
        slot (indexed by slot number)."""
        if slots is None:
            slots = [int(s) for s in np.flatnonzero(self.roots >= 0)]
        sims = self.settings.simulations if simulations is None else simulations
        per_slot = np.broadcast_to(np.asarray(sims, dtype=np.int64), (len(slots),))
        keep = [i for i, s in enumerate(slots) if not self._terminal[self._root(s)] and per_slot[i] > 0]
        slots, per_slot = [slots[i] for i in keep], per_slot[keep]
        if not slots:
            return
        self._expand_roots(slots)
        if self.settings.dirichlet_fraction > 0:
            for slot in slots:
                if noise_slots is not None and slot not in noise_slots:
                    continue
                gen = rng if isinstance(rng, np.random.Generator) else rng[slot]
                self._add_root_noise(slot, gen)
        slot_arr = np.asarray(slots, dtype=np.int64)
        lpg = self.settings.leaves_per_game
        if lpg == 1 and (per_slot == per_slot[0]).all():  # the common case: a fixed count
            for _ in range(int(per_slot[0])):
                self._step_one(slot_arr)
            return
        done = np.zeros(len(slots), dtype=np.int64)
        while True:
            remaining = per_slot - done
            todo = remaining > 0
            if not todo.any():
                break
            done[todo] += self._step(slot_arr[todo], np.minimum(remaining[todo], lpg))

    def _expand_roots(self, slots: list[int]) -> None:
        roots = self.roots[slots]
        roots = roots[~self._expanded[roots]]
        if roots.size:
            self._evaluate_and_expand(roots)

    def _restore_clean_priors(self, slot: int) -> None:
        clean = self._clean_priors.get(slot)
        if clean is not None:
            self._edges[self.roots[slot], _P] = clean

    def _add_root_noise(self, slot: int, rng: np.random.Generator) -> None:
        root = self._root(slot)
        self._restore_clean_priors(slot)
        clean = self._edges[root, _P].copy()
        self._clean_priors[slot] = clean
        legal = np.flatnonzero(self._positions.legal(np.array([root]))[0])
        noise = rng.dirichlet(np.full(legal.size, self.settings.dirichlet_alpha))
        frac = self.settings.dirichlet_fraction
        self._edges[root, _P, legal] = (1 - frac) * clean[legal] + frac * noise

    def _evaluate_and_expand(self, nodes: np.ndarray) -> np.ndarray:
        """Evaluate ``nodes`` (non-terminal), store priors and legal masks; return values."""
        legal = self._positions.legal(nodes)
        priors, values = self.evaluator.evaluate(self._positions.states(nodes), legal)
        self.evaluations += nodes.size
        self.evaluator_calls += 1
        edges = np.empty((nodes.size, 3, legal.shape[1]), dtype=np.float64)
        edges[:, _Q] = np.where(legal, self.settings.fpu_value, -np.inf)
        edges[:, _P] = priors
        edges[:, _N1] = 1.0
        self._edges[nodes] = edges
        self._w[nodes] = 0.0
        self._nsum[nodes] = 0
        self._explore[nodes] = self.settings.c_puct * np.sqrt(1)
        self._expanded[nodes] = True
        self._leafy[nodes] = False
        return np.asarray(values, dtype=np.float64)

    def _select(self, roots: np.ndarray):
        """One path from each root to a leaf; new leaves are created on the way.

        Returns (leaf ids, is-new flags, edge path index, edge node, edge action)."""
        k = roots.size
        leaf = np.empty(k, dtype=np.int64)
        is_new = np.zeros(k, dtype=bool)
        e_path, e_node, e_act = [], [], []
        created: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        active, nodes = np.arange(k), roots
        edges, explore, child, leafy = self._edges, self._explore, self._child, self._leafy
        while True:
            e = edges[nodes]
            # PUCT: q + (c_puct * sqrt(max(N, 1))) * p / (n + 1); illegal moves: q = -inf
            score = explore[nodes][:, None] * e[:, _P]
            score /= e[:, _N1]
            score += e[:, _Q]
            act = score.argmax(axis=1)
            e_path.append(active)
            e_node.append(nodes)
            e_act.append(act)
            nxt = child[nodes, act]
            new = nxt < 0
            if new.any():  # the new leaves' positions are played below, all at once
                parents, acts = nodes[new], act[new]
                ids = self._add_nodes(parents.size)
                leafy[ids] = True
                child[parents, acts] = ids
                nxt[new] = ids
                is_new[active[new]] = True
                created.append((parents, acts, ids))
            stop = leafy[nxt]
            if stop.all():
                leaf[active] = nxt
                break
            leaf[active[stop]] = nxt[stop]
            go = ~stop
            active, nodes = active[go], nxt[go]
        if created:
            parents, acts, ids = (np.concatenate(c) for c in zip(*created, strict=True))
            self._init_nodes(ids, self._positions.play(parents, acts, ids))
        return (leaf, is_new, np.concatenate(e_path), np.concatenate(e_node), np.concatenate(e_act))

    def _refresh(self, e_node: np.ndarray, e_act: np.ndarray) -> None:
        """Q of the edges and the exploration factor of the nodes whose visits changed."""
        n = self._edges[e_node, _N1, e_act] - 1.0
        self._edges[e_node, _Q, e_act] = self._w[e_node, e_act] / n
        self._explore[e_node] = self.settings.c_puct * np.sqrt(self._nsum[e_node])

    def _step_one(self, slots: np.ndarray) -> None:
        """One simulation in each tree of ``slots`` (one leaf each; every edge distinct)."""
        self._ensure_capacity(slots.size)  # may compact: roots are read after it
        leaf, is_new, e_path, e_node, e_act = self._select(self.roots[slots])
        self._backup(leaf, is_new, e_path, e_node, e_act, False)

    def _backup(self, leaf, is_new, e_path, e_node, e_act, multi: bool) -> None:
        values = self._tvalue[leaf].copy()
        to_eval = is_new & ~self._terminal[leaf]
        if to_eval.any():
            values[to_eval] = self._evaluate_and_expand(leaf[to_eval])
        same_side = self._to_play[e_node] == self._to_play[leaf][e_path]
        edge_values = np.where(same_side, values[e_path], -values[e_path])
        if multi:
            np.add.at(self._w, (e_node, e_act), edge_values + self.settings.virtual_loss)
        else:  # one path per tree: every (node, action) edge is distinct
            self._edges[e_node, _N1, e_act] += 1.0
            self._w[e_node, e_act] += edge_values
            self._nsum[e_node] += 1
        self._refresh(e_node, e_act)

    def _step(self, slots: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """Select up to ``leaves[i]`` leaves in each slot's tree, evaluate them in one call,
        back up; return how many simulations completed per slot."""
        self._ensure_capacity(int(leaves.sum()))
        multi = bool(leaves.max() > 1)
        vl = self.settings.virtual_loss
        rounds = []  # (slot index, leaf, is_new, e_path, e_node, e_act) of valid paths
        going = np.arange(slots.size)
        for r in range(int(leaves.max())):
            going = going[leaves[going] > r]
            if not going.size:
                break
            leaf, is_new, e_path, e_node, e_act = self._select(self.roots[slots[going]])
            # a path ending at a pending (selected earlier this step) leaf is a collision
            valid = is_new | self._terminal[leaf] | self._expanded[leaf]
            if not valid.all():
                keep = valid[e_path]
                e_node, e_act = e_node[keep], e_act[keep]
                e_path = np.flatnonzero(valid).searchsorted(e_path[keep])
            if multi:
                np.add.at(self._edges, (e_node, _N1, e_act), 1.0)
                np.add.at(self._w, (e_node, e_act), -vl)
                np.add.at(self._nsum, e_node, 1)
                self._refresh(e_node, e_act)
            rounds.append((going[valid], leaf[valid], is_new[valid], e_path, e_node, e_act))
            going = going[valid]
        slot_idx = np.concatenate([r[0] for r in rounds])
        offsets = np.cumsum([0] + [r[1].size for r in rounds])
        self._backup(
            np.concatenate([r[1] for r in rounds]),
            np.concatenate([r[2] for r in rounds]),
            np.concatenate([r[3] + off for r, off in zip(rounds, offsets[:-1], strict=True)]),
            np.concatenate([r[4] for r in rounds]),
            np.concatenate([r[5] for r in rounds]),
            multi,
        )
        return np.bincount(slot_idx, minlength=slots.size)

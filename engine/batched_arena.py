"""Many match games played together, with the network searches batched across games.

``BatchedGames(game, jobs)`` plays ``GameJob``s (first player, second player, opening) in
lockstep: every ``step()`` makes one move in each unfinished game and returns the games it
finished. Network players (``NetworkMCTSPlayer``) that share one evaluator and one set of
search settings are searched together: one ``BatchedSearch`` slot per game, so each
simulation is one evaluator call for all of their games (about 5x the positions per second
of one game at a time on a CPU). Every other player chooses per game, as in
``engine.arena``. A game's moves depend only on its own players (their seeded rngs break
ties), not on which games share its batch, up to the float rounding of batched inference.

``pair_jobs`` turns a pair (``a``, ``b``, one opening) into its two games, and
``engine.arena.pair_result`` (re-exported here) folds the two finished games back into the
pair's ``PairResult``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.arena import GameResult, pair_result
from engine.errors import IllegalMove
from engine.games.base import Game, Player, State
from engine.mcts import BatchedSearch, policy_from_visits
from engine.players import NetworkMCTSPlayer

__all__ = ["BatchedGames", "GameJob", "pair_jobs", "pair_result"]


@dataclass(frozen=True)
class GameJob:
    """One game to play: ``first`` moves first from ``opening``.

    Give each game its own player objects: a player's rng is then used by its game alone.
    """

    first: Player
    second: Player
    opening: tuple[int, ...] = ()


def pair_jobs(a_first: tuple[Player, Player], b_first: tuple[Player, Player], opening: Sequence[int]):
    """The two games of a pair: ``a_first = (a, b)`` and ``b_first = (b', a')`` (fresh players)."""
    moves = tuple(int(m) for m in opening)
    return (GameJob(a_first[0], a_first[1], moves), GameJob(b_first[0], b_first[1], moves))


class _SearchGroup:
    """The games searched by network players with one evaluator and one set of settings."""

    def __init__(self, game: Game, player: NetworkMCTSPlayer, slots: int):
        self.search = BatchedSearch(game, player.evaluator, player.settings, slots=slots)
        self.free = list(range(slots - 1, -1, -1))
        self.slot_of: dict[int, int] = {}  # game index -> slot

    def join(self, index: int, state: State) -> None:
        slot = self.free.pop()
        self.slot_of[index] = slot
        self.search.reset(slot, state)


class BatchedGames:
    """Play ``jobs`` together; ``step()`` until ``finished``; ``results[i]`` for job ``i``.

    ``cancel(i)`` drops an unfinished game (its search slots are freed, it gets no result).
    Raises ``IllegalMove`` (naming the player) for an illegal opening or move.
    """

    def __init__(self, game: Game, jobs: Sequence[GameJob]):
        self.game = game
        self.jobs = list(jobs)
        self.results: list[GameResult | None] = [None] * len(self.jobs)
        self.cancelled: set[int] = set()
        self.states: list[State] = []
        for job in self.jobs:
            try:
                self.states.append(game.from_moves(job.opening))
            except IllegalMove as exc:
                raise IllegalMove(f"illegal opening {list(job.opening)}: {exc}") from exc
        self._groups: dict[tuple[int, object], _SearchGroup] = {}
        self._group_of: dict[tuple[int, int], _SearchGroup] = {}  # (game, side) -> group
        self._build_groups()
        for i, state in enumerate(self.states):
            if state.is_terminal():
                self._finish(i)

    @staticmethod
    def _key(player: NetworkMCTSPlayer) -> tuple[int, object]:
        return (id(player.evaluator), player.settings)

    def _build_groups(self) -> None:
        members: dict[tuple[int, object], list[tuple[int, int, NetworkMCTSPlayer]]] = {}
        for i, job in enumerate(self.jobs):
            for side, player in enumerate((job.first, job.second)):
                if isinstance(player, NetworkMCTSPlayer):
                    members.setdefault(self._key(player), []).append((i, side, player))
        for key, entries in members.items():
            games = sorted({i for i, _, _ in entries})
            group = _SearchGroup(self.game, entries[0][2], len(games))
            for i in games:
                group.join(i, self.states[i])
            for i, side, _ in entries:
                self._group_of[(i, side)] = group
            self._groups[key] = group

    @property
    def finished(self) -> bool:
        return all(r is not None or i in self.cancelled for i, r in enumerate(self.results))

    def active(self) -> list[int]:
        return [i for i, r in enumerate(self.results) if r is None and i not in self.cancelled]

    @property
    def evaluations(self) -> int:
        """Positions the network searches have evaluated so far."""
        return sum(g.search.evaluations for g in self._groups.values())

    def cancel(self, index: int) -> None:
        if self.results[index] is None and index not in self.cancelled:
            self.cancelled.add(index)
            self._leave(index)

    def step(self) -> list[int]:
        """One move in every unfinished game; the indices of the games it finished."""
        active = self.active()
        searched: dict[int, list[int]] = {}  # id(group) -> games whose mover it searches
        groups: dict[int, _SearchGroup] = {}
        for i in active:
            group = self._group_of.get((i, self.states[i].to_play))
            if group is not None:
                searched.setdefault(id(group), []).append(i)
                groups[id(group)] = group
        moves: dict[int, int] = {}
        for gid, games in searched.items():
            search = groups[gid].search
            slots = [groups[gid].slot_of[i] for i in games]
            movers = [self._net_mover(i) for i in games]
            rngs = {slot: player.rng for slot, player in zip(slots, movers, strict=True)}
            search.run(rngs, slots=slots)  # type: ignore[arg-type]  # indexed by slot
            for i, slot, player in zip(games, slots, movers, strict=True):
                policy = policy_from_visits(search.visit_counts(slot), player.temperature)
                moves[i] = int(player.rng.choice(len(policy), p=policy))
        for i in active:
            if i not in moves:
                moves[i] = self._mover(i).choose(self.states[i])
        done = []
        for i in active:
            self._play(i, moves[i])
            if self.states[i].is_terminal():
                self._finish(i)
                done.append(i)
        return done

    def _net_mover(self, index: int) -> NetworkMCTSPlayer:
        player = self._mover(index)
        assert isinstance(player, NetworkMCTSPlayer)  # its game's side is in a search group
        return player

    def _mover(self, index: int) -> Player:
        job = self.jobs[index]
        return job.first if self.states[index].to_play == 0 else job.second

    def _play(self, index: int, move: object) -> None:
        state, player = self.states[index], self._mover(index)
        is_index = isinstance(move, int | np.integer) and not isinstance(move, bool)
        if not is_index or int(move) not in state.legal_moves():  # type: ignore[call-overload]
            raise IllegalMove(f"player {player.name!r} (player {state.to_play}): {state.illegal(move)}")
        self.states[index] = state.play(int(move))  # type: ignore[call-overload]
        for group in {id(g): g for g in self._groups_of(index)}.values():
            group.search.advance(group.slot_of[index], int(move))  # type: ignore[call-overload]

    def _groups_of(self, index: int) -> list[_SearchGroup]:
        return [g for side in (0, 1) if (g := self._group_of.get((index, side))) is not None]

    def _leave(self, index: int) -> None:
        for group in {id(g): g for g in self._groups_of(index)}.values():
            slot = group.slot_of.pop(index, None)
            if slot is not None:
                group.search.clear(slot)
                group.free.append(slot)

    def _finish(self, index: int) -> None:
        job, state = self.jobs[index], self.states[index]
        outcome = state.outcome()
        assert outcome is not None  # a terminal state has an outcome
        self.results[index] = GameResult(
            moves=tuple(state.moves),
            outcome=int(outcome),
            first=job.first.name,
            second=job.second.name,
            opening_plies=len(job.opening),
        )
        self._leave(index)

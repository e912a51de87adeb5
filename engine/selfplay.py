"""Engine-level selfplay: many games advanced together through one batched search.

``play_games`` yields each ``GameRecord`` (moves, per-move search policies and root
values, outcome) as soon as its game ends, while the other games go on; a finished game's
slot is refilled with a new one. Openings come from a list of move tuples and/or a few
random first moves. With playout cap randomization (KataGo) only a fraction of the moves get
the full search (with root noise) and become training samples; the others get a fast search
without noise, which only plays the move: more games, and so more outcomes, for the same
compute. Searches of both kinds advance in chunks of the fast search's size, so every
evaluator call still carries every game in flight.
``check_record`` replays a record and checks it is a complete, legal, consistent game.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import numpy as np

from engine.errors import EngineError, IllegalMove
from engine.games.base import Game, State
from engine.mcts import (
    DEFAULT_CONNECT4_SEARCH,
    BatchedSearch,
    Evaluator,
    SearchSettings,
    select_move,
)


class InvalidGameRecord(EngineError, ValueError):
    """A game record that does not replay to a finished game matching its own fields."""


class SelfplaySettings(msgspec.Struct, frozen=True, kw_only=True):
    """How selfplay games are generated (the search settings carry the temperature)."""

    search: SearchSettings = SearchSettings()
    games_in_flight: int = 128  # games advanced together: the evaluator's batch size
    openings: tuple[tuple[int, ...], ...] = ()  # each game starts from one, drawn at random
    random_opening_moves: int = 0  # then this many uniformly random moves (not searched)
    # Playout cap randomization: each move gets the full search with this probability, else
    # a fast one of ``fast_simulations`` (no noise, not a training sample). 1.0: always full.
    full_search_fraction: float = 1.0
    fast_simulations: int = 0

    def __post_init__(self) -> None:
        if self.games_in_flight < 1:
            raise ValueError("SelfplaySettings.games_in_flight must be >= 1")
        if self.random_opening_moves < 0:
            raise ValueError("SelfplaySettings.random_opening_moves must be >= 0")
        check_playout_cap(self.full_search_fraction, self.fast_simulations, self.search.simulations)

    @property
    def capped(self) -> bool:
        """Whether some moves get the fast search (playout cap randomization is on)."""
        return self.full_search_fraction < 1.0


def check_playout_cap(fraction: float, fast: int, full: int, where: str = "SelfplaySettings") -> None:
    """Refuse a playout cap that is not a fraction in (0, 1] with, below 1, a fast search
    of 1 up to (not including) the full search's simulations."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{where}.full_search_fraction must be in (0, 1], got {fraction}")
    if fraction < 1.0 and not 1 <= fast < full:
        raise ValueError(
            f"{where}.fast_simulations must be in [1, {full}) (below the full search) when "
            f"full_search_fraction < 1, got {fast}"
        )


# 128 games in flight: batches of 128 leaves, near the CPU inference ceiling (see bench/).
DEFAULT_CONNECT4_SELFPLAY = SelfplaySettings(search=DEFAULT_CONNECT4_SEARCH, games_in_flight=128)


class GameRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One finished game. ``policies[i]`` is the search's visit distribution (dense, over
    every action, float32 values) for move ``moves[opening_plies + i]``; opening moves were
    not searched.
    ``root_values[i]``, when recorded, is that search's backed-up root value for the side
    to move (empty: not recorded, as in games written before it was).
    ``full_search[i]`` says whether move ``i`` got the full search (a training sample) or
    a fast one (empty: every move was fully searched).
    ``outcome`` is +1 / 0 / -1 from player 0's view."""

    moves: tuple[int, ...]
    policies: tuple[tuple[float, ...], ...]
    outcome: int
    plies: int
    opening_plies: int = 0
    root_values: tuple[float, ...] = ()
    full_search: tuple[bool, ...] = ()

    def trained_moves(self) -> list[int]:
        """Indices (into ``policies``) of the moves that are training samples."""
        if not self.full_search:
            return list(range(len(self.policies)))
        return [i for i, full in enumerate(self.full_search) if full]


@dataclass
class SelfplayStats:
    """Running totals of one ``play_games`` call (read them while or after it runs)."""

    games: int = 0
    positions: int = 0  # searched moves
    full_searches: int = 0  # of which fully searched (training samples)
    evaluations: int = 0  # positions sent to the evaluator
    evaluator_calls: int = 0


def _opening(game: Game, settings: SelfplaySettings, rng: np.random.Generator) -> State:
    state = game.initial_state()
    if settings.openings:
        state = game.from_moves(settings.openings[int(rng.integers(len(settings.openings)))])
    for _ in range(settings.random_opening_moves):
        candidates = [m for m in state.legal_moves() if not state.play(m).is_terminal()]
        if not candidates:
            break
        state = state.play(candidates[int(rng.integers(len(candidates)))])
    return state


class SelfplayDriver:
    """Selfplay one search step at a time: ``step()`` searches every game in flight, plays
    one move in each and returns the records of the games that ended. ``stats`` keeps the
    totals; ``finished`` turns true once ``n_games`` (None: no limit) have all ended, or
    after ``stop_starting()`` once the games then in flight have ended."""

    def __init__(
        self,
        game: Game,
        evaluator: Evaluator,
        settings: SelfplaySettings,
        rng: np.random.Generator,
        n_games: int | None = None,
    ):
        self.game = game
        self.settings = settings
        self.rng = rng
        self.n_games = n_games
        self.stats = SelfplayStats()
        slots = (
            settings.games_in_flight if n_games is None else min(settings.games_in_flight, max(n_games, 1))
        )
        for opening in settings.openings:
            if game.from_moves(opening).is_terminal():  # IllegalMove if it does not replay
                raise ValueError(f"opening {game.moves_to_str(opening)} is a finished game")
        self.search = BatchedSearch(game, evaluator, settings.search, slots=slots)
        self._policies: list[list[tuple[float, ...]]] = [[] for _ in range(slots)]
        self._root_values: list[list[float]] = [[] for _ in range(slots)]
        self._full: list[list[bool]] = [[] for _ in range(slots)]
        self._left = np.zeros(slots, dtype=np.int64)  # simulations left in the current search
        self._chunk = settings.fast_simulations if settings.capped else settings.search.simulations
        self._opening_plies = [0] * slots
        self._started = 0
        self._active = [slot for slot in range(slots) if self._start(slot)]

    @property
    def finished(self) -> bool:
        return not self._active

    def stop_starting(self) -> None:
        """Start no new game: the games in flight play on, then ``finished`` turns true."""
        self.n_games = self._started

    def _start(self, slot: int) -> bool:
        if self.n_games is not None and self._started >= self.n_games:
            self.search.clear(slot)
            return False
        state = _opening(self.game, self.settings, self.rng)
        self._started += 1
        self.search.reset(slot, state)
        self._policies[slot] = []
        self._root_values[slot] = []
        self._full[slot] = []
        self._left[slot] = 0
        self._opening_plies[slot] = len(state.moves)
        return True

    def _search(self) -> list[int]:
        """Advance every game's search by one chunk; the slots whose search is complete."""
        search, rng = self.search, self.rng
        if not self.settings.capped:
            search.run(rng, slots=self._active)
            for slot in self._active:
                self._full[slot].append(True)
            return list(self._active)
        starting = [slot for slot in self._active if self._left[slot] == 0]
        full = {slot for slot in starting if rng.random() < self.settings.full_search_fraction}
        for slot in starting:
            self._left[slot] = self.settings.search.simulations if slot in full else self._chunk
            self._full[slot].append(slot in full)
        chunk = np.minimum(self._left[self._active], self._chunk)
        search.run(rng, slots=self._active, simulations=chunk, noise_slots=full)
        self._left[self._active] -= chunk
        return [slot for slot in self._active if self._left[slot] == 0]

    def step(self) -> list[GameRecord]:
        """One chunk of search in every game; a move in each game whose search is complete."""
        search, stats, rng = self.search, self.stats, self.rng
        calls0, evals0 = search.evaluator_calls, search.evaluations
        ready = set(self._search())
        stats.evaluator_calls += search.evaluator_calls - calls0
        stats.evaluations += search.evaluations - evals0
        done, still = [], []
        for slot in self._active:
            if slot not in ready:
                still.append(slot)
                continue
            state = search.root_state(slot)
            visits = search.visit_counts(slot)
            # at float32 precision: what training uses and ``game.finished`` stores
            self._policies[slot].append(tuple((visits / visits.sum()).astype(np.float32).tolist()))
            self._root_values[slot].append(search.root_value(slot))
            temperature = self.settings.search.temperature_at(len(state.moves))
            search.advance(slot, select_move(visits, temperature, rng))
            stats.positions += 1
            stats.full_searches += self._full[slot][-1]
            final = search.root_state(slot)
            if not final.is_terminal():
                still.append(slot)
                continue
            stats.games += 1
            done.append(
                GameRecord(
                    moves=final.moves,
                    policies=tuple(self._policies[slot]),
                    outcome=int(final.outcome() or 0),
                    plies=len(final.moves),
                    opening_plies=self._opening_plies[slot],
                    root_values=tuple(self._root_values[slot]),
                    full_search=tuple(self._full[slot]) if self.settings.capped else (),
                )
            )
            if self._start(slot):
                still.append(slot)
        self._active = still
        return done


def play_games(
    game: Game,
    evaluator: Evaluator,
    settings: SelfplaySettings,
    n_games: int,
    rng: np.random.Generator,
    stats: SelfplayStats | None = None,
) -> Iterator[GameRecord]:
    """Play ``n_games`` selfplay games, ``settings.games_in_flight`` at a time, yielding
    each record when its game ends. All randomness comes from ``rng``; ``stats``, when
    given, is updated as the games go."""
    driver = SelfplayDriver(game, evaluator, settings, rng, n_games)
    if stats is not None:
        driver.stats = stats
    while not driver.finished:
        yield from driver.step()


def check_record(game: Game, record: GameRecord) -> State:
    """Replay ``record``; return the final state, or raise ``InvalidGameRecord`` saying
    what is wrong (illegal move, unfinished game, wrong outcome, malformed policies)."""
    if record.plies != len(record.moves):
        raise InvalidGameRecord(f"plies={record.plies} but {len(record.moves)} moves")
    if not 0 <= record.opening_plies <= record.plies:
        raise InvalidGameRecord(f"opening_plies={record.opening_plies} out of range")
    if len(record.policies) != record.plies - record.opening_plies:
        raise InvalidGameRecord(
            f"{len(record.policies)} policies for {record.plies - record.opening_plies} searched moves"
        )
    if record.root_values:
        values = np.asarray(record.root_values, dtype=np.float64)
        if values.shape != (len(record.policies),):
            raise InvalidGameRecord(
                f"{len(record.root_values)} root values for {len(record.policies)} searched moves"
            )
        if not (np.isfinite(values).all() and (np.abs(values) <= 1.0 + 1e-6).all()):
            raise InvalidGameRecord("root values must be finite and within [-1, 1]")
    if record.full_search and len(record.full_search) != len(record.policies):
        raise InvalidGameRecord(
            f"{len(record.full_search)} full-search flags for {len(record.policies)} searched moves"
        )
    policies = _policy_rows(game, record)
    state = game.initial_state()
    for ply, move in enumerate(record.moves):
        if ply >= record.opening_plies and policies[ply - record.opening_plies][~state.legal_mask()].any():
            raise InvalidGameRecord(f"policy of ply {ply} puts mass on illegal moves")
        try:
            state = state.play(int(move))
        except IllegalMove as exc:
            raise InvalidGameRecord(f"ply {ply}: {exc}") from exc
    if not state.is_terminal():
        raise InvalidGameRecord("the moves do not finish the game")
    if state.outcome() != record.outcome:
        raise InvalidGameRecord(f"outcome {record.outcome} recorded, the moves give {state.outcome()}")
    return state


def _policy_rows(game: Game, record: GameRecord) -> np.ndarray:
    """``record.policies`` as a float64 array [searched moves, actions], every row checked to
    be a distribution (finite, non-negative, summing to 1)."""
    shape = (len(record.policies), game.num_actions)
    try:
        policies = np.asarray(record.policies, dtype=np.float64).reshape(shape)
    except ValueError:  # ragged rows, or rows of another length
        raise InvalidGameRecord(f"policies are not rows of {game.num_actions} floats") from None
    bad = ~np.isfinite(policies).all(axis=1)
    bad |= (policies < 0).any(axis=1) | (np.abs(policies.sum(axis=1) - 1.0) > 1e-4)
    if bad.any():
        ply = record.opening_plies + int(np.argmax(bad))
        raise InvalidGameRecord(f"policy of ply {ply} is not a distribution")
    return policies

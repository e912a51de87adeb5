"""The non-regression match: candidate engine against base engine, game pairs in lockstep.

Each pair plays one opening twice with colours swapped (``engine.arena.pair_result``), the
openings shared by both sides (``engine.openings``; games without an opening set start from a
few seeded random moves). ``pairs_in_flight`` pairs are played at once: each step sends every
game where the candidate is to move to the candidate engine and every game where the base is to
move to the base engine, both requests out before either answer is read, so the two processes
search at the same time (one core each) and each searches its games as one batch. After every
finished pair the pentanomial SPRT (``engine.sprt``, non-regression bounds) is looked at, the pairs
counted in index order (``SprtFold``: a pair that finishes early waits for the earlier ones, so
the verdict depends on the pairs' results, not on their timing); once it decides, no pair is
started and the games in flight are dropped (as Fishtest does). ``play_pairs`` is the pair code
alone (given pairs, a callback per finished pair): the pipeline match player of an eval agent
(``handlers.pipeline.work_player``) plays a WORK unit's pairs with it.
``MatchOutcome`` has the counts, the SPRT and the Elo estimate; the gate passes on ``accept``
(and, per config, when ``max_pairs`` ends undecided).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from engine.arena import GameResult, pair_result, random_opening
from engine.games.base import Game, State
from engine.openings import openings_for
from engine.rating import elo_from_pentanomial
from engine.sprt import sprt, wald_bounds
from handlers.pipeline.config import MatchGate
from handlers.pipeline.engines import EngineProcess
from streams.errors import JetzeroError
from streams.pipeline_events import GateOutcome

__all__ = [
    "IllegalMovePlayed",
    "MatchOutcome",
    "PairPlan",
    "PairPlayed",
    "SprtFold",
    "gate_outcome",
    "match_gate",
    "plan_pairs",
    "play_match",
    "play_pairs",
]

RANDOM_OPENING_PLIES = 2  # games without an opening set (tic-tac-toe)


class MatchOutcome(msgspec.Struct, frozen=True, kw_only=True):
    pentanomial: tuple[int, ...]
    pairs: int
    games: int
    llr: float
    lower: float
    upper: float
    verdict: str  # accept | reject | continue (max_pairs reached undecided)
    elo: float
    elo_ci95: float
    nelo: float
    illegal: str = ""  # a move an engine played that the rules refuse (the candidate's: a failure)


@dataclass
class _Game:
    gid: str
    pair: int
    candidate_first: bool
    state: State
    result: GameResult | None = None


@dataclass
class _Pair:
    index: int
    games: list[_Game] = field(default_factory=list)


Progress = Callable[[MatchOutcome], None]


class PairPlan(msgspec.Struct, frozen=True, kw_only=True):
    """One pair to play: its index in the match, its opening, which game id gets the candidate
    first (drawn as the match always drew it; no effect on play)."""

    index: int
    opening: tuple[int, ...] = ()
    flip: bool = False


class PairPlayed(msgspec.Struct, frozen=True, kw_only=True):
    """A finished pair: its pentanomial index (the candidate's) and both games."""

    index: int
    pentanomial: int
    games: tuple[tuple[int, ...], ...]  # candidate first in the first game
    outcomes: tuple[int, ...]


class IllegalMovePlayed(JetzeroError):
    """An engine played a move the rules refuse (``side``: candidate | base)."""

    def __init__(self, side: str, message: str):
        super().__init__(message)
        self.side = side


def _openings(game: Game, count: int, seed: int) -> list[tuple[int, ...]]:
    shipped = openings_for(game)
    if shipped != [()]:
        return [shipped[i % len(shipped)] for i in range(count)]
    import numpy as np

    return [random_opening(game, RANDOM_OPENING_PLIES, np.random.default_rng([seed, i]))
            for i in range(count)]


def plan_pairs(game: Game, count: int, seed: int) -> list[PairPlan]:
    """The match's first ``count`` pairs: shared openings, and the flips from ``seed``."""
    openings = _openings(game, count, seed)
    rng = random.Random(seed)
    return [PairPlan(index=i, opening=tuple(openings[i]), flip=rng.random() < 0.5) for i in range(count)]


def _outcome(counts: list[int], gate: MatchGate, illegal: str = "") -> MatchOutcome:
    s = gate.sprt
    pairs = sum(counts)
    if pairs:
        look = sprt(counts, s.elo0, s.elo1, s.alpha, s.beta, s.model)  # type: ignore[arg-type]
        est = elo_from_pentanomial(counts)
        llr, lower, upper, verdict = look.llr, look.lower, look.upper, look.verdict
        elo, ci, nelo = est.elo, est.ci95, est.nelo
    else:
        lower, upper = wald_bounds(s.alpha, s.beta)
        llr, verdict, elo, ci, nelo = 0.0, "continue", 0.0, math.inf, 0.0
    return MatchOutcome(pentanomial=tuple(counts), pairs=pairs, games=2 * pairs, llr=llr, lower=lower,
                        upper=upper, verdict=verdict, elo=elo, elo_ci95=ci, nelo=nelo, illegal=illegal)


class SprtFold:
    """The pentanomial SPRT fed pair by pair, counted in pair-index order.

    A pair that finishes before an earlier one waits for it, so the verdict (and the pair at
    which it comes) depends on the pairs' results alone, not on which finished first: a match
    played over WORK by agents of any speed ends as the same match played here. A pair index
    is counted once (a pair reported twice changes nothing); once decided, nothing more is.
    """

    def __init__(self, gate: MatchGate, progress: Progress = lambda m: None):
        self.gate = gate
        self.progress = progress
        self.counts = [0] * 5
        self.next_index = 0
        self.held: dict[int, int] = {}
        self.outcome = _outcome(self.counts, gate)

    @property
    def decided(self) -> bool:
        return self.outcome.verdict != "continue" or self.next_index >= self.gate.max_pairs

    def add(self, index: int, pentanomial: int) -> bool:
        """Take pair ``index``'s result; True if it is new (not counted or held already)."""
        if index < self.next_index or index in self.held or self.decided:
            return False
        self.held[index] = pentanomial
        while not self.decided and self.next_index in self.held:
            self.counts[self.held.pop(self.next_index)] += 1
            self.next_index += 1
            self.outcome = _outcome(self.counts, self.gate)
            self.progress(self.outcome)
        return True


def play_pairs(game: Game, candidate: EngineProcess, base: EngineProcess, pairs: Sequence[PairPlan], *,
               simulations: int, in_flight: int, on_pair: Callable[[PairPlayed], bool]) -> None:
    """Play ``pairs`` in lockstep, ``in_flight`` at once, in order; ``on_pair`` is told each
    finished pair and returns whether to go on (False: no pair is started and the games in
    flight are dropped). ``IllegalMovePlayed`` when an engine plays a move the rules refuse."""
    queue = list(pairs)
    playing: dict[int, _Pair] = {}
    engines = {True: candidate, False: base}
    going = True
    try:
        while True:
            while going and queue and len(playing) < in_flight:
                plan = queue.pop(0)
                pair = _Pair(plan.index)
                for candidate_first in (plan.flip, not plan.flip):
                    gid = f"p{plan.index}{'c' if candidate_first else 'b'}"
                    pair.games.append(_Game(gid, plan.index, candidate_first, game.from_moves(plan.opening)))
                playing[plan.index] = pair
            if not playing or not going:
                return
            live = [g for p in playing.values() for g in p.games if g.result is None]
            to_move: dict[bool, list[_Game]] = {True: [], False: []}  # candidate's turn -> games
            for g in live:
                to_move[(g.state.to_play == 0) == g.candidate_first].append(g)
            for side, games in to_move.items():
                if games:
                    for g in games:
                        engines[side].send(_position(g))
                    engines[side].send(f"go simulations {simulations}")
            for side, games in to_move.items():
                if games:
                    _apply_moves(engines, side, games)
            for index in [i for i, p in playing.items() if all(g.result is not None for g in p.games)]:
                going = on_pair(_pair_played(playing.pop(index))) and going
    finally:
        for p in playing.values():  # dropped (decided, illegal move, error): free their trees
            for g in p.games:
                if g.result is None:
                    _forget(engines, g.gid)


def _apply_moves(engines: dict[bool, EngineProcess], side: bool, games: list[_Game]) -> None:
    moves = engines[side].read_moves([(g.gid, g.state.moves) for g in games])
    for g, move in zip(games, moves, strict=True):
        if move not in g.state.legal_moves():
            who = "candidate" if side else "base"
            raise IllegalMovePlayed(who, f"the {who} engine played illegal move {move} in game {g.gid} "
                                         f"({list(g.state.moves)})")
        g.state = g.state.play(move)
        if g.state.is_terminal():
            g.result = GameResult(moves=g.state.moves, outcome=int(g.state.outcome() or 0))
            _forget(engines, g.gid)


def _forget(engines: dict[bool, EngineProcess], gid: str) -> None:
    for engine in engines.values():
        if engine.proc.poll() is None:
            engine.forget(gid)


def _pair_played(pair: _Pair) -> PairPlayed:
    first = next(g for g in pair.games if g.candidate_first)
    second = next(g for g in pair.games if not g.candidate_first)
    assert first.result is not None and second.result is not None
    penta = pair_result(first.result, second.result).pentanomial_index
    return PairPlayed(index=pair.index, pentanomial=penta,
                      games=(tuple(first.result.moves), tuple(second.result.moves)),
                      outcomes=(first.result.outcome, second.result.outcome))


def play_match(game: Game, candidate: EngineProcess, base: EngineProcess, gate: MatchGate, *,
               seed: int = 0, progress: Progress = lambda m: None) -> MatchOutcome:
    """Play pairs until the SPRT decides or ``gate.max_pairs`` are played."""
    fold = SprtFold(gate, progress)

    def counted(pair: PairPlayed) -> bool:
        fold.add(pair.index, pair.pentanomial)
        return not fold.decided

    try:
        play_pairs(game, candidate, base, plan_pairs(game, gate.max_pairs, seed),
                   simulations=gate.simulations, in_flight=gate.pairs_in_flight, on_pair=counted)
    except IllegalMovePlayed as exc:
        return _outcome(fold.counts, gate, illegal=str(exc))
    return fold.outcome


def _position(g: _Game) -> str:
    from handlers.pipeline.protocol import format_position

    return format_position(g.state.moves, g.gid)


def match_gate(game: Game, candidate: EngineProcess, base: EngineProcess, gate: MatchGate, *,
               seed: int = 0, progress: Progress = lambda m: None) -> tuple[GateOutcome, MatchOutcome]:
    start = time.perf_counter()
    m = play_match(game, candidate, base, gate, seed=seed, progress=progress)
    return gate_outcome(m, gate, time.perf_counter() - start), m


def gate_outcome(m: MatchOutcome, gate: MatchGate, seconds: float, *, where: str = "",
                 extra: dict[str, float] | None = None) -> GateOutcome:
    """The match gate's outcome for ``m`` (``where``: who played the pairs, appended to the
    message; ``extra``: more figures)."""
    s = gate.sprt
    figures = {"llr": m.llr, "lower": m.lower, "upper": m.upper, "elo0": s.elo0, "elo1": s.elo1,
               "alpha": s.alpha, "beta": s.beta, "elo": m.elo, "elo_ci95": m.elo_ci95, "nelo": m.nelo,
               "pairs": float(m.pairs), "games": float(m.games), "max_pairs": float(gate.max_pairs),
               **{f"penta_{k}": float(c) for k, c in zip(("ll", "ld", "dd", "wd", "ww"), m.pentanomial,
                                                          strict=True)}, **(extra or {})}
    ci = "inf" if math.isinf(m.elo_ci95) else f"{m.elo_ci95:.1f}"
    sprt_text = (f"LLR {m.llr:+.2f} in [{m.lower:.2f}, {m.upper:.2f}] "
                 f"({s.model} Elo [{s.elo0:g}, {s.elo1:g}]), "
                 f"Elo {m.elo:+.1f} ± {ci} after {m.pairs} pairs, pentanomial {list(m.pentanomial)}")
    if m.illegal:
        status, message = ("failed" if "candidate" in m.illegal.split()[1] else "error"), m.illegal
    elif m.verdict == "accept":
        status, message = "passed", f"no regression: {sprt_text}"
    elif m.verdict == "reject":
        status, message = "failed", f"regression: the SPRT rejected the candidate: {sprt_text}"
    else:
        status = "passed" if gate.inconclusive == "pass" else "failed"
        message = (f"undecided at the cap of {gate.max_pairs} pairs (counted as {gate.inconclusive}): "
                   f"{sprt_text}")
    return GateOutcome(gate="match", status=status, message=message + (f"; {where}" if where else ""),
                       figures=figures, seconds=seconds)

"""The non-regression match: candidate engine against base engine, game pairs in lockstep.

Each pair plays one opening twice with colours swapped (``engine.arena.pair_result``), the
openings shared by both sides (``engine.openings``; games without an opening set start from a
few seeded random moves). ``pairs_in_flight`` pairs are played at once: each step sends every
game where the candidate is to move to the candidate engine and every game where the base is to
move to the base engine, both requests out before either answer is read, so the two processes
search at the same time (one core each) and each searches its games as one batch. After every
finished pair the pentanomial SPRT (``engine.sprt``, non-regression bounds) is looked at; once
it decides, no pair is started and the games in flight are dropped (as Fishtest does).
``MatchOutcome`` has the counts, the SPRT and the Elo estimate; the gate passes on ``accept``
(and, per config, when ``max_pairs`` ends undecided).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from engine.arena import GameResult, pair_result, random_opening
from engine.games.base import Game, State
from engine.openings import openings_for
from engine.rating import elo_from_pentanomial
from engine.sprt import sprt, wald_bounds
from handlers.pipeline.config import MatchGate
from handlers.pipeline.engines import EngineProcess
from streams.pipeline_events import GateOutcome

__all__ = ["MatchOutcome", "match_gate", "play_match"]

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


def _openings(game: Game, count: int, seed: int) -> list[tuple[int, ...]]:
    shipped = openings_for(game)
    if shipped != [()]:
        return [shipped[i % len(shipped)] for i in range(count)]
    import numpy as np

    return [random_opening(game, RANDOM_OPENING_PLIES, np.random.default_rng([seed, i]))
            for i in range(count)]


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


def play_match(game: Game, candidate: EngineProcess, base: EngineProcess, gate: MatchGate, *,
               seed: int = 0, progress: Progress = lambda m: None) -> MatchOutcome:
    """Play pairs until the SPRT decides or ``gate.max_pairs`` are played."""
    openings = _openings(game, gate.max_pairs, seed)
    counts = [0] * 5
    pairs: dict[int, _Pair] = {}
    started = 0
    rng = random.Random(seed)
    verdict = "continue"
    while True:
        while verdict == "continue" and started < gate.max_pairs and len(pairs) < gate.pairs_in_flight:
            pair = _Pair(started)
            flip = rng.random() < 0.5  # which game id gets the candidate first; no effect on play
            for candidate_first in (flip, not flip):
                gid = f"p{started}{'c' if candidate_first else 'b'}"
                pair.games.append(_Game(gid, started, candidate_first, game.from_moves(openings[started])))
            pairs[started] = pair
            started += 1
        if not pairs or verdict != "continue":
            break
        live = [g for p in pairs.values() for g in p.games if g.result is None]
        to_move: dict[bool, list[_Game]] = {True: [], False: []}  # candidate's turn -> games
        for g in live:
            to_move[(g.state.to_play == 0) == g.candidate_first].append(g)
        engines = {True: candidate, False: base}
        for side, games in to_move.items():
            if games:
                for g in games:
                    engines[side].send(_position(g))
                engines[side].send(f"go simulations {gate.simulations}")
        for side, games in to_move.items():
            if not games:
                continue
            moves = engines[side].read_moves([(g.gid, g.state.moves) for g in games])
            for g, move in zip(games, moves, strict=True):
                if move not in g.state.legal_moves():
                    who = "candidate" if side else "base"
                    return _outcome(counts, gate, illegal=f"the {who} engine played illegal move {move} "
                                                          f"in game {g.gid} ({list(g.state.moves)})")
                g.state = g.state.play(move)
                if g.state.is_terminal():
                    g.result = GameResult(moves=g.state.moves, outcome=int(g.state.outcome() or 0))
                    candidate.forget(g.gid)
                    base.forget(g.gid)
        for index in [i for i, p in pairs.items() if all(g.result is not None for g in p.games)]:
            pair = pairs.pop(index)
            first = next(g for g in pair.games if g.candidate_first)
            second = next(g for g in pair.games if not g.candidate_first)
            assert first.result is not None and second.result is not None
            counts[pair_result(first.result, second.result).pentanomial_index] += 1
            outcome = _outcome(counts, gate)
            verdict = outcome.verdict
            progress(outcome)
            if verdict != "continue":
                break
    return _outcome(counts, gate)


def _position(g: _Game) -> str:
    from handlers.pipeline.protocol import format_position

    return format_position(g.state.moves, g.gid)


def match_gate(game: Game, candidate: EngineProcess, base: EngineProcess, gate: MatchGate, *,
               seed: int = 0, progress: Progress = lambda m: None) -> tuple[GateOutcome, MatchOutcome]:
    start = time.perf_counter()
    m = play_match(game, candidate, base, gate, seed=seed, progress=progress)
    s = gate.sprt
    figures = {"llr": m.llr, "lower": m.lower, "upper": m.upper, "elo0": s.elo0, "elo1": s.elo1,
               "alpha": s.alpha, "beta": s.beta, "elo": m.elo, "elo_ci95": m.elo_ci95, "nelo": m.nelo,
               "pairs": float(m.pairs), "games": float(m.games), "max_pairs": float(gate.max_pairs),
               **{f"penta_{k}": float(c) for k, c in zip(("ll", "ld", "dd", "wd", "ww"), m.pentanomial,
                                                          strict=True)}}
    ci = "inf" if math.isinf(m.elo_ci95) else f"{m.elo_ci95:.1f}"
    where = (f"LLR {m.llr:+.2f} in [{m.lower:.2f}, {m.upper:.2f}] ({s.model} Elo [{s.elo0:g}, {s.elo1:g}]), "
             f"Elo {m.elo:+.1f} ± {ci} after {m.pairs} pairs, pentanomial {list(m.pentanomial)}")
    if m.illegal:
        status, message = ("failed" if "candidate" in m.illegal.split()[1] else "error"), m.illegal
    elif m.verdict == "accept":
        status, message = "passed", f"no regression: {where}"
    elif m.verdict == "reject":
        status, message = "failed", f"regression: the SPRT rejected the candidate: {where}"
    else:
        status = "passed" if gate.inconclusive == "pass" else "failed"
        message = f"undecided at the cap of {gate.max_pairs} pairs (counted as {gate.inconclusive}): {where}"
    return (GateOutcome(gate="match", status=status, message=message, figures=figures,
                        seconds=time.perf_counter() - start), m)

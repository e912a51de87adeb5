"""The speed gate: the candidate's code against the base's, measured side by side in one run.

Each round asks the base engine, then the candidate engine (the order alternating every
round), for ``seconds`` of selfplay (``bench``: that checkout's selfplay driver, search and
inference). Rounds interleave, so load from other processes falls on both sides alike; the
ratio is of the medians over the rounds. It fails when the candidate's evaluations/s or
simulations/s fall below ``1 − tolerance`` times the base's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from handlers.pipeline.config import SpeedGate
from handlers.pipeline.engines import EngineProcess
from handlers.pipeline.protocol import BenchFigures
from streams.pipeline_events import GateOutcome

__all__ = ["speed_gate"]


def speed_gate(candidate: EngineProcess, base: EngineProcess, gate: SpeedGate, *,
               progress: Callable[[int, int], None] = lambda done, total: None) -> GateOutcome:
    start = time.perf_counter()
    runs: dict[str, list[BenchFigures]] = {"candidate": [], "base": []}
    sides = [("base", base), ("candidate", candidate)]
    for _, engine in sides:  # warm-up: each side's driver and first search, not counted
        engine.bench(min(gate.seconds, 0.2), gate.games, gate.simulations)
    for round_ in range(gate.rounds):
        for side, engine in sides if round_ % 2 == 0 else sides[::-1]:
            runs[side].append(engine.bench(gate.seconds, gate.games, gate.simulations))
        progress(round_ + 1, gate.rounds)
    evals = {k: statistics.median(r.evals_per_s for r in v) for k, v in runs.items()}
    sims = {k: statistics.median(r.sims_per_s for r in v) for k, v in runs.items()}
    evals_ratio = evals["candidate"] / evals["base"] if evals["base"] else 0.0
    sims_ratio = sims["candidate"] / sims["base"] if sims["base"] else 0.0
    floor = 1.0 - gate.tolerance
    figures = {"evals_ratio": evals_ratio, "sims_ratio": sims_ratio, "tolerance": gate.tolerance,
               "candidate_evals_per_s": evals["candidate"], "base_evals_per_s": evals["base"],
               "candidate_sims_per_s": sims["candidate"], "base_sims_per_s": sims["base"],
               "rounds": float(gate.rounds), "seconds_per_round": gate.seconds}
    text = (f"evals/s {evals['candidate']:,.0f} vs base {evals['base']:,.0f} (ratio {evals_ratio:.2f}), "
            f"sims/s {sims['candidate']:,.0f} vs {sims['base']:,.0f} (ratio {sims_ratio:.2f})")
    slow = min(evals_ratio, sims_ratio) < floor
    message = (f"slower than the base beyond the tolerance (ratio floor {floor:.2f}): {text}" if slow
               else f"{text}; floor {floor:.2f}")
    return GateOutcome(gate="speed", status="failed" if slow else "passed", message=message,
                       figures=figures, seconds=time.perf_counter() - start)

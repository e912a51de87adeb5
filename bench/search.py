"""The batched search's own cost: evaluations per CPU-second with a free evaluator, beside
the same search with the real network on CPU, in one run.

    .venv/bin/python bench/search.py [--seconds 8] [--games 128,1024] [--simulations 128]

Connect Four selfplay (engine defaults: noise, temperature, tree reuse) drives the search
for ``--seconds`` of CPU time per row. The free evaluator (uniform priors, value 0:
``UniformEvaluator``) costs next to nothing, so its row is the search alone; the network
row (default net, inference copy, torch on ``--threads`` threads) shows the share of the
network's time in a real selfplay step. Figures are per CPU-second of this process
(``time.process_time``), robust to other processes' load. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import msgspec
import numpy as np

from engine.games import get_game
from engine.games.base import State
from engine.mcts import Evaluator, UniformEvaluator
from engine.selfplay import DEFAULT_CONNECT4_SELFPLAY, SelfplayDriver

WIDTHS = (12, 7, 13, 9, 11, 12)


class TimedEvaluator:
    """An evaluator that adds up the CPU time spent inside the one it wraps."""

    def __init__(self, inner: Evaluator):
        self.inner = inner
        self.cpu = 0.0

    def evaluate(
        self, states: Sequence[State], legal: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        start = time.process_time()
        try:
            return self.inner.evaluate(states, legal)
        finally:
            self.cpu += time.process_time() - start

    def evaluate_one(self, state: State) -> tuple[np.ndarray, float]:
        priors, values = self.evaluate([state])
        return priors[0], float(values[0])


def measure(evaluator: Evaluator, games: int, simulations: int, seconds: float, seed: int) -> dict:
    """Selfplay steps with ``evaluator`` for ``seconds`` of CPU time (after one warm-up step)."""
    game = get_game("connect4")
    search = msgspec.structs.replace(DEFAULT_CONNECT4_SELFPLAY.search, simulations=simulations)
    settings = msgspec.structs.replace(DEFAULT_CONNECT4_SELFPLAY, search=search, games_in_flight=games)
    timed = TimedEvaluator(evaluator)
    driver = SelfplayDriver(game, timed, settings, np.random.default_rng(seed))
    driver.step()
    evals0, cpu_eval0 = driver.stats.evaluations, timed.cpu
    cpu0, wall0 = time.process_time(), time.perf_counter()
    steps = 0
    while time.process_time() - cpu0 < seconds or steps == 0:
        driver.step()
        steps += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    evals = driver.stats.evaluations - evals0
    eval_cpu = timed.cpu - cpu_eval0
    return {
        "games_in_flight": games,
        "simulations": simulations,
        "steps": steps,
        "evaluations": evals,
        "evals_per_cpu_s": evals / cpu,
        "evals_per_s": evals / wall,
        "us_per_eval": 1e6 * cpu / evals,
        "search_us_per_eval": 1e6 * (cpu - eval_cpu) / evals,
        "evaluator_share": eval_cpu / cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="CPU seconds per row")
    parser.add_argument("--games", default="128,1024", help="games in flight, comma-separated")
    parser.add_argument("--simulations", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the network row")
    parser.add_argument("--no-network", action="store_true", help="skip the network row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    games = [int(g) for g in args.games.split(",")]
    rows = [
        ("free", measure(UniformEvaluator(), g, args.simulations, args.seconds, args.seed))
        for g in games
    ]
    if not args.no_network:
        from engine.network import (
            DEFAULT_CONNECT4_NETWORK,
            NetworkEvaluator,
            build_network,
            set_torch_threads,
        )

        set_torch_threads(args.threads)
        net = build_network(get_game("connect4"), DEFAULT_CONNECT4_NETWORK, seed=args.seed)
        evaluator = NetworkEvaluator(net, device="cpu")
        rows.append(("network cpu", measure(evaluator, games[0], args.simulations, args.seconds, args.seed)))

    print(f"connect4, {args.simulations} simulations, selfplay settings (noise, temperature, reuse)")
    header = ("evaluator", "games", "evals/CPU-s", "µs/eval", "search µs", "eval share")
    cells = enumerate(zip(header, WIDTHS, strict=True))
    print("".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in cells))
    for name, r in rows:
        print(
            f"{name:<12}{r['games_in_flight']:>7}{r['evals_per_cpu_s']:>13,.0f}{r['us_per_eval']:>9.2f}"
            f"{r['search_us_per_eval']:>11.2f}{r['evaluator_share']:>12.2f}"
        )
    print(json.dumps({"bench": "search", "rows": [{"evaluator": n, **r} for n, r in rows]}))


if __name__ == "__main__":
    main()

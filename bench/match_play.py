"""Match play throughput: game pairs one at a time against pairs batched, and the ceiling.

    .venv/bin/python bench/match_play.py [--pairs 32] [--sequential-pairs 4] [--simulations 48]

Two seeded Connect Four networks of the default size play colour-swapped pairs from seeded
two-ply openings at ``--simulations`` per move, one torch thread, as the eval worker does:

- one pair at a time (``engine.arena.play_pair``: every search evaluates one position per call);
- ``--pairs`` pairs together (``engine.batched_arena``: one move in every game per step, the
  searches of each network batched across its games).

It reports network evaluations/s and seconds per pair for both, the speed-up, and the ratio of
the batched rate to the ceiling measured in the same run: raw forward throughput of the same
inference module at the mean batch size the batched searches sent. Prints a table, then one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench.* importable
from bench.selfplay import forward_rate  # noqa: E402
from engine.arena import play_pair, random_opening
from engine.batched_arena import BatchedGames, pair_jobs
from engine.games import get_game
from engine.network import DEFAULT_CONNECT4_NETWORK, NetworkEvaluator, build_network, set_torch_threads
from engine.players import NetworkMCTSPlayer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=32, help="pairs played together (the eval worker: 16 units of 2)"
    )
    parser.add_argument("--sequential-pairs", type=int, default=4, help="pairs played one at a time")
    parser.add_argument("--simulations", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.pairs < 1 or args.sequential_pairs < 1 or args.simulations < 1:
        parser.error("--pairs, --sequential-pairs and --simulations must be >= 1")

    set_torch_threads(1)
    torch.manual_seed(args.seed)
    game = get_game("connect4")
    net_a = build_network(game, DEFAULT_CONNECT4_NETWORK, seed=args.seed)
    net_b = build_network(game, DEFAULT_CONNECT4_NETWORK, seed=args.seed + 1)
    eval_a, eval_b = NetworkEvaluator(net_a), NetworkEvaluator(net_b)
    rng = np.random.default_rng(args.seed)
    openings = [random_opening(game, 2, rng) for _ in range(max(args.pairs, args.sequential_pairs))]

    def player(net, evaluator, seed):
        return NetworkMCTSPlayer(net, args.simulations, seed=seed, evaluator=evaluator)

    # 1. one pair at a time: each player searches alone (batch 1)
    start, evals = time.perf_counter(), 0
    for k in range(args.sequential_pairs):
        a, b = player(net_a, eval_a, k), player(net_b, eval_b, 1000 + k)
        play_pair(game, a, b, openings[k])
        evals += sum(p._search.evaluations for p in (a, b) if p._search is not None)
    sequential_s = time.perf_counter() - start
    sequential_rate = evals / sequential_s

    # 2. the pairs together
    jobs = []
    for k in range(args.pairs):
        jobs += pair_jobs(
            (player(net_a, eval_a, k), player(net_b, eval_b, 1000 + k)),
            (player(net_b, eval_b, 1000 + k), player(net_a, eval_a, k)),
            openings[k],
        )
    games = BatchedGames(game, jobs)
    start = time.perf_counter()
    while not games.finished:
        games.step()
    batched_s = time.perf_counter() - start
    groups = games._groups.values()
    calls = sum(g.search.evaluator_calls for g in groups)
    batched_rate = games.evaluations / batched_s
    mean_batch = games.evaluations / max(calls, 1)

    # 3. the ceiling: the same module's raw forward rate at that mean batch size
    ceiling, _ = forward_rate(eval_a.net, max(1, round(mean_batch)), 5.0, game.plane_shape)

    per_pair = {"sequential": sequential_s / args.sequential_pairs, "batched": batched_s / args.pairs}
    print(f"match play, Connect Four, default net, {args.simulations} simulations per move, 1 thread")
    print(f"  one pair at a time   {sequential_rate:>9,.0f} evals/s   {per_pair['sequential']:6.2f} s/pair")
    print(f"  {args.pairs} pairs together   {batched_rate:>9,.0f} evals/s   {per_pair['batched']:6.2f} s/pair"
          f"   (mean batch {mean_batch:.1f})")
    print(f"  speed-up             {sequential_rate and batched_rate / sequential_rate:>9.2f}x")
    print(f"  ceiling at batch {round(mean_batch)}: {ceiling:,.0f} positions/s; "
          f"batched / ceiling = {batched_rate / ceiling:.2f}")
    print(json.dumps({
        "bench": "match_play",
        "simulations": args.simulations,
        "pairs_batched": args.pairs,
        "pairs_sequential": args.sequential_pairs,
        "sequential_evals_per_s": round(sequential_rate),
        "batched_evals_per_s": round(batched_rate),
        "seconds_per_pair": {k: round(v, 3) for k, v in per_pair.items()},
        "speedup": round(batched_rate / sequential_rate, 2),
        "mean_batch": round(mean_batch, 1),
        "ceiling_positions_per_s": round(ceiling),
        "ratio_to_ceiling": round(batched_rate / ceiling, 3),
    }))


if __name__ == "__main__":
    main()

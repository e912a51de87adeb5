"""What float16 inference changes: a trained net's moves on the solved positions in float32 and
float16, and its forward speed in each, measured in one run.

    .venv/bin/python bench/half_precision.py --model CKPT [--device auto|cpu|cuda[:N]]
        [--sims 200] [--limit N] [--batch 256] [--threads 1] [--seconds 5]

``CKPT`` is a Connect Four checkpoint file (``jetzero models export`` writes one; the learn
bench saves every champion's under its data folder's ``models/``). The net answers every
public position (``engine/data/connect4_public.jsonl``, or ``--limit`` of them, evenly
spread) twice, in float32 and in float16 (``engine.bench_strength.model_answers``): with its
raw policy and with MCTS at ``--sims`` simulations. Printed for each: the share of positions
where float16 plays the same move as float32, how many of the moves that changed went from an
optimal move to a worse one and back, the graded accuracy in each precision (outcome-optimal /
exactly optimal) and the largest change of a raw value. Then the forward rate at ``--batch``
in each precision on the device, as a ratio to float32's in the same run (the ceiling).
``selfplay.half_precision`` and ``evaluation.half_precision`` are worth turning on where the
moves agree and the rate goes up: on a GPU (on the CPU float16 is only emulated, so its speed
says nothing; its moves are those of float16 arithmetic all the same). One JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: bench.* importable
from bench.selfplay import forward_rate  # noqa: E402
from engine.bench_strength import (
    PUBLIC_POSITIONS,
    RAW_POLICY,
    Answers,
    grade_answers,
    mcts_name,
    model_answers,
    spread,
)
from engine.checkpoint import load_checkpoint_file
from engine.devices import resolve_device
from engine.errors import EngineError
from engine.games.connect4 import ConnectFour
from engine.network import NetworkEvaluator, set_torch_threads
from engine.strength import Tally, load_positions


def compare(positions, game: ConnectFour, full: Answers, half: Answers) -> dict:
    """Agreement of float16's moves with float32's, and how the moves that changed grade
    (optimal: keeps the position's game-theoretic outcome)."""
    moves32, values32 = full
    moves16, values16 = half
    # the file's moves are columns 1-7, the answers action indices 0-6
    keyed = [(p.state(game).moves, {column - 1 for column in p.outcome_optimal_moves}) for p in positions]
    changed = [(key, optimal) for key, optimal in keyed if moves32[key] != moves16[key]]
    return {
        "positions": len(positions),
        "same_move": round(1 - len(changed) / len(positions), 5),
        "changed": len(changed),
        "optimal_to_worse": sum(1 for key, optimal in changed
                                if moves32[key] in optimal and moves16[key] not in optimal),
        "worse_to_optimal": sum(1 for key, optimal in changed
                                if moves32[key] not in optimal and moves16[key] in optimal),
        "max_value_change": round(max(abs(values32[k] - values16[k]) for k in values32), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Connect Four checkpoint file")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sims", type=int, default=200, help="MCTS simulations (0: raw policy only)")
    parser.add_argument("--limit", type=int, default=None, help="positions, evenly spread (default all)")
    parser.add_argument("--batch", type=int, default=256, help="positions per network call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--seconds", type=float, default=5.0, help="per forward-rate measurement")
    args = parser.parse_args()
    game = ConnectFour()
    try:
        device = resolve_device(args.device)
        net, meta = load_checkpoint_file(args.model, expect_game=game)
        positions = spread(load_positions(PUBLIC_POSITIONS, game), args.limit)
    except (EngineError, OSError, ValueError) as exc:
        sys.exit(f"half_precision: {exc}")
    set_torch_threads(args.threads)
    print(f"model {meta.model_id} ({Path(args.model).name}) on {device}, {len(positions)} positions, "
          f"MCTS at {args.sims} simulations")

    answers, graded = {}, {}
    for label, half in (("float32", False), ("float16", True)):
        started = time.perf_counter()
        answers[label] = model_answers(net, positions, args.sims, batch=args.batch, game=game,
                                       device=device, half=half)
        graded[label] = {name: grade_answers(positions, game, *moves_values).overall
                         for name, moves_values in answers[label].items()}
        print(f"  {label}: answered in {time.perf_counter() - started:.0f} s")

    result: dict = {"bench": "half_precision", "model": meta.model_id, "device": device,
                    "positions": len(positions), "sims": args.sims, "players": {}}
    names = [RAW_POLICY] + ([mcts_name(args.sims)] if args.sims > 0 else [])
    print(f"{'player':<16}{'same move':>11}{'opt->worse':>12}{'worse->opt':>12}"
          f"{'float32 %':>16}{'float16 %':>16}{'max |dv|':>10}")
    for name in names:
        agreement = compare(positions, game, answers["float32"][name], answers["float16"][name])
        f32, f16 = graded["float32"][name], graded["float16"][name]
        print(f"{name:<16}{100 * agreement['same_move']:>10.2f}%{agreement['optimal_to_worse']:>12}"
              f"{agreement['worse_to_optimal']:>12}{_pct(f32):>16}{_pct(f16):>16}"
              f"{agreement['max_value_change']:>10.4f}")
        result["players"][name] = {**agreement, "float32": _shares(f32), "float16": _shares(f16)}

    batch = min(args.batch, len(positions))
    rates = {label: forward_rate(NetworkEvaluator(net, device=device, half=half, half_on_cpu=True).net,
                                 batch, args.seconds, game.plane_shape)[0]
             for label, half in (("float32", False), ("float16", True))}
    ratio = rates["float16"] / rates["float32"]
    print(f"forward at batch {batch}: float32 {rates['float32']:,.0f} positions/s (the ceiling), "
          f"float16 {rates['float16']:,.0f} ({ratio:.2f}x)"
          + ("  [CPU: float16 is emulated there]" if device == "cpu" else ""))
    result["forward_positions_per_s"] = {k: round(v) for k, v in rates.items()}
    result["float16_to_float32"] = round(ratio, 3)
    print(json.dumps(result))


def _shares(tally: Tally) -> dict:
    return {"outcome_optimal": round(tally.outcome_optimal, 4),
            "exactly_optimal": round(tally.exactly_optimal, 4)}


def _pct(tally: Tally) -> str:
    return f"{100 * tally.outcome_optimal:.1f} / {100 * tally.exactly_optimal:.1f}"


if __name__ == "__main__":
    main()

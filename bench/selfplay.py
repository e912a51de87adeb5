"""Selfplay throughput against the raw batched-inference ceiling, measured in one run.

    .venv/bin/python bench/selfplay.py [--seconds 60] [--threads 1,2] [--games-in-flight N]
        [--device cpu,cuda] [--half] [--batches-in-flight auto|N]

``--device`` measures each device in turn in one run (a CUDA device that is not there is
skipped with a line); on CUDA the games in flight default to the loop's
``gpu_games_in_flight`` (1024), the ceiling is measured at that batch too, and the GPU's
utilisation is read (when torch can) after the selfplay run. ``--batches-in-flight`` (auto: 2
on CUDA, 1 on the CPU, as the loop's ``selfplay.batches_in_flight``) splits the games into
that many parts stepped on their own threads, so one part's search overlaps another's network
call (``engine.overlapped_selfplay``); the batch each call carries, and the CUDA ceiling's
batch, is then the games in flight divided by it.

With the default Connect Four network and selfplay settings (engine defaults), it measures
the forward throughput of the inference net (positions/s at batch 1, 64, 256 for each
thread count) — the ceiling — then runs batched selfplay and reports network evaluations/s,
positions (moves)/s, games/min, and the ratio of selfplay evaluations/s to the best
ceiling (target ≥ 0.7). The ceiling is probed again after every selfplay step and the
larger of table and probes is used, so that load from other processes makes the ratio
pessimistic, not flattering; the ratio per CPU-second of this process is given too (with
one thread it does not move with other processes' load). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import msgspec
import numpy as np
import torch

from engine.devices import (
    DeviceUnavailable,
    batches_in_flight_for,
    games_in_flight_for,
    is_cuda,
    resolve_device,
)
from engine.games import get_game
from engine.network import (
    DEFAULT_CONNECT4_NETWORK,
    NetworkEvaluator,
    build_network,
    set_torch_threads,
)
from engine.overlapped_selfplay import selfplay_driver
from engine.selfplay import DEFAULT_CONNECT4_SELFPLAY
from handlers.loop.config import SelfplaySection

BATCHES = (1, 64, 256)


def forward_rate(net: torch.nn.Module, batch: int, seconds: float, plane_shape) -> tuple[float, float]:
    """Positions per second of wall time and per second of this process's CPU time, of
    ``net`` on random planes at ``batch`` (after a short warm-up); on CUDA the planes go
    from host to device and the outputs back, as in selfplay."""
    x = torch.from_numpy((np.random.default_rng(0).random((batch, *plane_shape)) < 0.3).astype(np.float32))
    param = next(net.parameters())
    on_cuda = param.device.type == "cuda"
    if on_cuda:
        x = x.pin_memory()

    def once() -> None:
        logits, values = net(x.to(param.device, non_blocking=True).to(param.dtype))
        if on_cuda:
            logits.float().cpu(), values.float().cpu()

    with torch.inference_mode():
        for _ in range(3):
            once()
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        while (elapsed := time.perf_counter() - start) < seconds:
            once()
            n += batch
    return n / elapsed, n / max(time.process_time() - cpu, 1e-9)


def gpu_utilisation(device: str) -> float | None:
    """The GPU's utilisation in percent (None when torch cannot read it: no pynvml)."""
    try:
        return float(torch.cuda.utilization(torch.device(device)))
    except Exception:  # noqa: BLE001 - optional reading
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="total time budget")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to try")
    parser.add_argument("--games-in-flight", type=int, default=None)
    parser.add_argument("--simulations", type=int, default=None)
    parser.add_argument("--blocks", type=int, default=None, help="override the default net")
    parser.add_argument("--channels", type=int, default=None, help="override the default net")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="devices to measure, e.g. cpu,cuda")
    parser.add_argument("--half", action="store_true", help="float16 inference on CUDA")
    parser.add_argument("--batches-in-flight", default="auto",
                        help="auto (2 on CUDA, 1 on the CPU) or a number of parts")
    args = parser.parse_args()
    results = {}
    for spec in args.device.split(","):
        try:
            device = resolve_device(spec.strip())
        except DeviceUnavailable as exc:
            print(f"{spec}: skipped ({exc})")
            continue
        results[device] = run_device(args, device)
    if "cpu" in results and len(results) > 1:
        for device, r in results.items():
            if device != "cpu":
                speedup = r["selfplay_evals_per_s"] / results["cpu"]["selfplay_evals_per_s"]
                print(f"{device} / cpu selfplay evaluations/s per process: {speedup:.1f}x (target >= 10)")


def run_device(args: argparse.Namespace, device: str) -> dict:
    """The ceiling and selfplay on one device; prints the table and the JSON line."""
    print(f"== device {device}")
    on_cuda = is_cuda(device)

    game = get_game("connect4")
    settings = DEFAULT_CONNECT4_SELFPLAY
    games_in_flight = args.games_in_flight or games_in_flight_for(
        device, settings.games_in_flight, SelfplaySection().gpu_games_in_flight)
    settings = msgspec.structs.replace(settings, games_in_flight=games_in_flight)
    if args.simulations:
        search = msgspec.structs.replace(settings.search, simulations=args.simulations)
        settings = msgspec.structs.replace(settings, search=search)
    cfg = msgspec.structs.replace(
        DEFAULT_CONNECT4_NETWORK,
        blocks=args.blocks or DEFAULT_CONNECT4_NETWORK.blocks,
        channels=args.channels or DEFAULT_CONNECT4_NETWORK.channels,
    )
    net = build_network(game, cfg, seed=args.seed)
    evaluator = NetworkEvaluator(net, device=device, half=args.half)  # the inference copy selfplay uses
    threads = [int(t) for t in args.threads.split(",")]
    parts = batches_in_flight_for(
        device, "auto" if args.batches_in_flight == "auto" else int(args.batches_in_flight))
    per_call = -(-settings.games_in_flight // parts)  # the batch one network call carries
    batches = tuple(sorted({*BATCHES, per_call})) if on_cuda else BATCHES

    # 1. the ceiling: raw forward throughput of the very module selfplay calls
    share = 0.3 * args.seconds / (len(threads) * len(batches))
    ceiling: dict[tuple[int, int], float] = {}
    for t in threads:
        set_torch_threads(t)
        for batch in batches:
            ceiling[(t, batch)] = forward_rate(evaluator.net, batch, share, game.plane_shape)[0]
    best_threads, best_batch = max(ceiling, key=ceiling.__getitem__)
    selfplay_threads = max(threads, key=lambda t: ceiling[(t, 256)])
    if on_cuda:  # the ceiling at the batch selfplay sends, not the best of any batch
        best_batch = per_call

    # 2. selfplay, each search step followed by a short probe of the best ceiling, so that
    #    both see the same machine load (other processes on a shared box)
    driver = selfplay_driver(game, evaluator, settings, np.random.default_rng(args.seed), batches=parts)
    set_torch_threads(selfplay_threads)
    driver.step()  # warm-up: root expansions and the first search
    s0 = dataclasses.replace(driver.stats)
    plies: list[int] = []
    probes: list[tuple[float, float]] = []
    selfplay_time, selfplay_cpu = 0.0, 0.0
    budget_end = time.perf_counter() + 0.6 * args.seconds
    while time.perf_counter() < budget_end or not probes:
        set_torch_threads(selfplay_threads)
        t0, c0 = time.perf_counter(), time.process_time()
        plies += [r.plies for r in driver.step()]
        step_time = time.perf_counter() - t0
        selfplay_time += step_time
        selfplay_cpu += time.process_time() - c0
        set_torch_threads(best_threads)
        probe_seconds = min(3.0, 0.3 * step_time)
        probes.append(forward_rate(evaluator.net, best_batch, probe_seconds, game.plane_shape))
    stats = driver.stats
    n_evals = stats.evaluations - s0.evaluations
    evals = n_evals / selfplay_time
    # per CPU-second of this process: insensitive to other processes' load (1 thread)
    cpu_ratio = (n_evals / selfplay_cpu) / float(np.mean([p[1] for p in probes]))
    positions = (stats.positions - s0.positions) / selfplay_time
    batch_mean = n_evals / max(1, stats.evaluator_calls - s0.evaluator_calls)
    # Games all start together, so a short window sees only the quickest games end.
    # Measured: games that ended in the window per minute (low while the first wave is
    # still playing). Steady state: moves/min ÷ mean moves per game (Little's law), which
    # is fair only once a full wave has ended (before that the mean length is too short).
    games_measured = 60 * len(plies) / selfplay_time
    games_per_min = 60 * positions / float(np.mean(plies)) if plies else None
    steady_reliable = len(plies) >= settings.games_in_flight
    interleaved = float(np.mean([p[0] for p in probes]))
    best = max(ceiling[(best_threads, best_batch)], interleaved)
    ratio = evals / best

    print(
        f"network {cfg.blocks} blocks x {cfg.channels} channels "
        f"({sum(p.numel() for p in net.parameters()):,} parameters), "
        f"{settings.search.simulations} simulations, {settings.games_in_flight} games in flight "
        f"in {parts} batch(es)"
    )
    print(f"{'raw forward (positions/s)':<24}" + "".join(f"{f'batch {b}':>11}" for b in batches))
    for t in threads:
        print(f"{f'  {t} thread(s)':<24}" + "".join(f"{ceiling[(t, b)]:>11,.0f}" for b in batches))
    print(
        f"  interleaved with selfplay ({best_threads} thr, batch {best_batch}): "
        f"{interleaved:,.0f} ({len(probes)} probes)"
    )
    print(f"selfplay ({selfplay_threads} thread(s), {selfplay_time:.0f} s, mean batch {batch_mean:.0f})")
    print(f"  network evaluations/s {evals:>10,.0f}")
    print(f"  positions (moves)/s   {positions:>10,.1f}")
    finished = f"{len(plies):>10}" + (f"   (mean {np.mean(plies):.1f} plies)" if plies else "")
    print(f"  games finished        {finished}")
    print(
        f"  games/min (measured)  {games_measured:>10,.1f}\n"
        f"  games/min (steady)    {games_per_min:>10,.1f}"
        + ("" if steady_reliable else "   (upper bound: first wave not finished; run longer)")
        if games_per_min
        else "  games/min                    n/a (no game finished yet: run longer)"
    )
    print(f"  ratio to the ceiling  {ratio:>10.2f}   (best of table and interleaved; target >= 0.70)")
    print(f"  ratio to interleaved  {evals / interleaved:>10.2f}")
    print(f"  ratio per CPU-second  {cpu_ratio:>10.2f}   (same threads; robust to other load)")
    utilisation = gpu_utilisation(device) if on_cuda else None
    if on_cuda:
        print(f"  GPU utilisation       {'n/a' if utilisation is None else f'{utilisation:.0f} %':>10}")
    result = {
                "bench": "selfplay",
                "device": device,
                "half": evaluator.half,
                "gpu_utilisation": utilisation,
                "network": {"blocks": cfg.blocks, "channels": cfg.channels},
                "simulations": settings.search.simulations,
                "games_in_flight": settings.games_in_flight,
                "batches_in_flight": parts,
                "ceiling_positions_per_s": {f"t{t}_b{b}": round(v) for (t, b), v in ceiling.items()},
                "ceiling_interleaved": round(interleaved),
                "ceiling_best": round(best),
                "selfplay_threads": selfplay_threads,
                "selfplay_evals_per_s": round(evals),
                "selfplay_positions_per_s": round(positions, 2),
                "selfplay_games_per_min": round(games_measured, 2),
                "selfplay_games_per_min_steady": round(games_per_min, 2) if games_per_min else None,
                "steady_estimate_reliable": steady_reliable,
                "games_finished": len(plies),
                "mean_batch": round(batch_mean, 1),
                "ratio_to_ceiling": round(ratio, 3),
                "ratio_to_interleaved_ceiling": round(evals / interleaved, 3),
                "ratio_per_cpu_second": round(cpu_ratio, 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

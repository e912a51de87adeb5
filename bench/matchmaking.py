"""Matchmaking under load: N WebSocket clients playing the AI at the easiest and hardest level.

    .venv/bin/python bench/matchmaking.py [--clients 500] [--seconds 60] [--game connect4]
        [--think-ms 200] [--hard-simulations N] [--selfplay-seconds 20]

One run, on loopback: a nats-server (temporary store), the matchmaking server (``jetzero p2p
serve``'s ``MatchmakingServer`` with ``AiPlayers``, config/p2p.yaml's settings) in its own
process, and in this process N clients, half at level 1 and half at level 8, each answering
the AI's move after ``--think-ms`` with a random legal move and seeking a new game when one
ends. Measured after a warm-up:

- move round trip per level: from sending a move to the ``state`` that carries it (the
  server's decode, checks, JetStream append and broadcast); the AI's reply time (from that
  state to the one with the AI's move) is shown apart; and the server's own share of it, from
  its ``jetzero_p2p_move_seconds`` histogram (frame handled to broadcast, p50 / p99
  interpolated within its buckets, as Grafana's ``histogram_quantile`` does);
- games/min, and the server process's CPU per move (its own CPU time, the AI's worker
  processes not included: their work is the AI's);
- the ceiling, in the same run: a bare websockets echo server (its own process) under the
  same N clients and think time;
- the hardest level's searches: mean positions per network call (batch size), and its
  evaluations per second while searching against the batched-selfplay evaluation rate of
  this machine (``bench/selfplay.py``'s measurement, run first, same net, 1 thread).

Targets: p99 of the easiest level < 50 ms at 500 clients; hardest level ≥ 0.5 of the
batched-selfplay rate. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERVE = "--serve"
ECHO = "--echo"
EASY, HARD = 1, 8


# -- the server processes --------------------------------------------------------------------


async def serve(nats_port: int, data_dir: str, game: str, hard_simulations: int | None) -> None:
    """The matchmaking server with its AI (a child process of the bench): prints ``READY
    <port>``, then answers ``stats`` lines on stdin with a JSON line, until ``quit``."""
    from handlers.matchmaking.ai import AiPlayers
    from handlers.matchmaking.config import load_p2p_config
    from handlers.matchmaking.server import MatchmakingServer
    from handlers.matchmaking.service import settle_heap
    from streams.config import NatsSettings
    from streams.connection import connect
    from streams.store import EventStore

    config = load_p2p_config()
    levels = config.levels
    if hard_simulations:
        levels = [msgspec.structs.replace(lv, simulations=hard_simulations) if lv.number == HARD else lv
                  for lv in levels]
        config = msgspec.structs.replace(config, levels=levels)
    nats = NatsSettings(port=nats_port, data_dir=data_dir)
    conn = await connect(nats, name="bench-matchmaking")
    store = EventStore(conn)
    async with AiPlayers.open(config.ai, nats, "bench", levels=levels) as ai:
        await ai.warm_up(game)
        server = MatchmakingServer(config, store, "bench", ai, b"bench-secret", host="127.0.0.1", port=0)
        async with server:
            settle_heap()  # as `jetzero p2p serve` does once it listens
            print(f"READY {server.port}", flush=True)
            loop = asyncio.get_running_loop()
            while True:
                line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
                if line == "stats":
                    stats = {"cpu_s": time.process_time(), "moves": server.moves_played,
                             "move_buckets": move_buckets(server),
                             "ai": msgspec.to_builtins(ai.stats),
                             "hard_simulations": ai.level(HARD).simulations}
                    print(json.dumps(stats), flush=True)
                elif line in ("quit", ""):
                    break
    await conn.close()


def move_buckets(server) -> list[tuple[float, float]]:
    """The server's move-time histogram: (upper bound, cumulative count) per bucket."""
    return [(float(sample.labels["le"]), sample.value)
            for family in server.metrics.registry.collect() if family.name == "jetzero_p2p_move_seconds"
            for sample in family.samples if sample.name.endswith("_bucket")]


def bucket_quantile(q: float, before: list, after: list) -> float:
    """``q`` of what the histogram counted between two reads, in ms (linear within a bucket)."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= rank:
            if le == float("inf"):
                return 1000 * lower
            return 1000 * (lower + (le - lower) * (rank - below) / max(cumulative - below, 1e-12))
        lower, below = le, cumulative
    return 1000 * lower


async def echo() -> None:
    from websockets.asyncio.server import serve as ws_serve

    async def handler(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async with ws_serve(handler, "127.0.0.1", 0, compression=None) as server:
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


class Child:
    """A child process of this script in one of its server modes."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("READY "):
            raise RuntimeError(f"{args[0]} did not start: {line!r}")
        self.port = int(line.split()[1])

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        return json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the clients -----------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.recording = False
        self.rtt: dict[int, list[float]] = {EASY: [], HARD: []}
        self.ai: dict[int, list[float]] = {EASY: [], HARD: []}
        self.games = 0
        self.errors: list[str] = []


async def player(url: str, level: int, game: str, think_s: float, tally: Tally, stop: asyncio.Event,
                 rng: random.Random) -> None:
    from websockets.asyncio.client import connect as ws_connect

    async with ws_connect(url, compression=None, max_size=2**20, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "hello", "v": 1}))
        seek = json.dumps({"type": "seek", "game": game, "opponent": "ai", "level": level, "seat": 0})
        sent_at = acked_at = None
        pending = -1  # the version our move will make
        await ws.send(seek)
        while not stop.is_set():
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
            except TimeoutError:
                continue
            kind = msg["type"]
            if kind == "error":
                tally.errors.append(f"{msg['code']}: {msg['message']}")
                continue
            if kind == "over":
                if tally.recording:
                    tally.games += 1
                sent_at = acked_at = None
                await ws.send(seek)
                continue
            if kind not in ("start", "state"):
                continue
            state = msg["state"] if kind == "start" else msg
            now = time.perf_counter()
            if sent_at is not None and state["version"] == pending:
                if tally.recording:
                    tally.rtt[level].append(now - sent_at)
                sent_at, acked_at = None, now
            elif acked_at is not None and state["version"] > pending:
                if tally.recording:
                    tally.ai[level].append(now - acked_at)
                acked_at = None
            if state["status"] == "playing" and state["to_move"] == 0 and sent_at is None:
                await asyncio.sleep(think_s)
                move = rng.choice(state["legal"])
                pending = state["version"] + 1
                sent_at = time.perf_counter()
                await ws.send(json.dumps({"type": "move", "game_id": state["game_id"], "move": move,
                                          "version": state["version"]}))


async def echo_client(url: str, think_s: float, rtts: list[float], stop: asyncio.Event, record) -> None:
    from websockets.asyncio.client import connect as ws_connect

    frame = json.dumps({"type": "move", "game_id": "0123456789ab", "move": 3, "version": 7})
    async with ws_connect(url, compression=None, open_timeout=60) as ws:
        while not stop.is_set():
            await asyncio.sleep(think_s)
            t0 = time.perf_counter()
            await ws.send(frame)
            await ws.recv()
            if record():
                rtts.append(time.perf_counter() - t0)


async def connect_all(factories, batch: int = 50) -> list[asyncio.Task]:
    """Start the clients in waves (a handshake storm of 500 would time some out)."""
    tasks = []
    for i in range(0, len(factories), batch):
        tasks += [asyncio.create_task(f()) for f in factories[i : i + batch]]
        await asyncio.sleep(0.05)
    return tasks


async def stop_all(stop: asyncio.Event, tasks: list[asyncio.Task]) -> list[BaseException]:
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]


async def measure_echo(port: int, clients: int, think_s: float, warm_s: float, seconds: float) -> list[float]:
    rtts: list[float] = []
    stop = asyncio.Event()
    start = time.perf_counter() + warm_s
    url = f"ws://127.0.0.1:{port}/"
    def recording() -> bool:
        return time.perf_counter() > start

    tasks = await connect_all([lambda: echo_client(url, think_s, rtts, stop, recording)
                               for _ in range(clients)])
    await asyncio.sleep(warm_s + seconds)
    failures = await stop_all(stop, tasks)
    if failures:
        print(f"echo: {len(failures)} client(s) failed, e.g. {failures[0]!r}")
    return rtts


async def measure_matchmaking(server: Child, args: argparse.Namespace) -> dict:
    tally = Tally()
    stop = asyncio.Event()
    url = f"ws://127.0.0.1:{server.port}/ws"
    rngs = [random.Random(i) for i in range(args.clients)]
    tasks = await connect_all([
        (lambda i=i: player(url, EASY if i % 2 == 0 else HARD, args.game, args.think_ms / 1000, tally, stop,
                            rngs[i]))
        for i in range(args.clients)
    ])
    await asyncio.sleep(args.warm_up)
    before, t0 = server.ask("stats"), time.perf_counter()
    tally.recording = True
    await asyncio.sleep(args.seconds)
    tally.recording = False
    after, wall = server.ask("stats"), time.perf_counter() - t0
    failures = await stop_all(stop, tasks)
    return {"tally": tally, "before": before, "after": after, "wall": wall, "failures": failures}


def selfplay_rate(seconds: float, simulations: int) -> float:
    """bench/selfplay.py's batched-selfplay evaluation rate (1 thread, the default net)."""
    from bench.selfplay import run_device

    args = argparse.Namespace(seconds=seconds, threads="1", games_in_flight=None, simulations=simulations,
                              blocks=None, channels=None, seed=0, device="cpu", half=False)
    return float(run_device(args, "cpu")["selfplay_evals_per_s"])


# -- the report ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time of each phase")
    parser.add_argument("--warm-up", type=float, default=10.0)
    parser.add_argument("--game", default="connect4")
    parser.add_argument("--think-ms", type=float, default=200.0)
    parser.add_argument("--hard-simulations", type=int, default=None, help="override level 8's simulations")
    parser.add_argument("--selfplay-seconds", type=float, default=20.0)
    args = parser.parse_args()

    from engine.network import set_torch_threads
    from streams.config import NatsSettings
    from streams.server import EmbeddedServer, free_port

    set_torch_threads(1)
    print(f"== batched selfplay ({args.selfplay_seconds:.0f} s budget, bench/selfplay.py)")
    from handlers.matchmaking.config import load_p2p_config

    hard_sims = args.hard_simulations or {lv.number: lv for lv in load_p2p_config().levels}[HARD].simulations
    selfplay_evals = selfplay_rate(args.selfplay_seconds, hard_sims)

    with tempfile.TemporaryDirectory(prefix="bench-mm-") as tmp:
        nats = EmbeddedServer(NatsSettings(port=free_port(), data_dir=os.path.join(tmp, "nats")))
        nats.start()
        echo_server = Child(ECHO)
        try:
            print(f"== echo ceiling: {args.clients} clients, think {args.think_ms:.0f} ms")
            echo_rtts = asyncio.run(measure_echo(echo_server.port, args.clients, args.think_ms / 1000,
                                                 min(args.warm_up, 5.0), min(args.seconds, 20.0)))
        finally:
            echo_server.close()
        extra = ["--hard-simulations", str(args.hard_simulations)] if args.hard_simulations else []
        server = Child(SERVE, str(nats.settings.port), nats.settings.data_dir, args.game, *extra)
        try:
            print(f"== matchmaking: {args.clients} clients (half level {EASY}, half level {HARD}), "
                  f"{args.game}, think {args.think_ms:.0f} ms, {args.seconds:.0f} s "
                  f"after {args.warm_up:.0f} s")
            run = asyncio.run(measure_matchmaking(server, args))
        finally:
            server.close()
            nats.stop()
    report(args, run, echo_rtts, selfplay_evals)


def report(args: argparse.Namespace, run: dict, echo_rtts: list[float], selfplay_evals: float) -> None:
    tally, before, after, wall = run["tally"], run["before"], run["after"], run["wall"]
    moves = after["moves"] - before["moves"]
    cpu_per_move_ms = 1000 * (after["cpu_s"] - before["cpu_s"]) / max(moves, 1)
    hard_b, hard_a = before["ai"]["search"], after["ai"]["search"]
    evals = hard_a["evaluations"] - hard_b["evaluations"]
    calls = hard_a["network_calls"] - hard_b["network_calls"]
    busy = hard_a["busy_s"] - hard_b["busy_s"]
    hard_rate_busy = evals / busy if busy > 0 else 0.0
    hard_rate_wall = evals / wall
    mean_batch = evals / calls if calls else 0.0
    print(f"{'':<28}{'p50 ms':>10}{'p99 ms':>10}{'samples':>10}")
    for level in (EASY, HARD):
        rtt = tally.rtt[level]
        print(f"{f'level {level} move round trip':<28}{pct(rtt, 50):>10.1f}{pct(rtt, 99):>10.1f}"
              f"{len(rtt):>10}")
        ai = tally.ai[level]
        print(f"{f'level {level} AI reply (apart)':<28}{pct(ai, 50):>10.1f}{pct(ai, 99):>10.1f}{len(ai):>10}")
    server_p50 = bucket_quantile(0.5, before["move_buckets"], after["move_buckets"])
    server_p99 = bucket_quantile(0.99, before["move_buckets"], after["move_buckets"])
    print(f"{'server time of a move':<28}{server_p50:>10.1f}{server_p99:>10.1f}"
          f"{int(after['move_buckets'][-1][1] - before['move_buckets'][-1][1]):>10}")
    print(f"{'echo round trip (ceiling)':<28}{pct(echo_rtts, 50):>10.1f}{pct(echo_rtts, 99):>10.1f}"
          f"{len(echo_rtts):>10}")
    print(f"games/min                   {60 * tally.games / wall:>10.1f}   "
          f"({tally.games} games in {wall:.0f} s)")
    print(f"server CPU per move         {cpu_per_move_ms:>10.2f} ms ({moves} moves, AI workers excluded)")
    print(f"level {HARD} searches             {after['hard_simulations']} simulations, "
          f"mean batch {mean_batch:.1f} positions per network call")
    print(f"  evaluations/s while busy  {hard_rate_busy:>10,.0f}   (wall: {hard_rate_wall:,.0f}, "
          f"busy {100 * busy / wall:.0f}% of the time)")
    print(f"  batched selfplay evals/s  {selfplay_evals:>10,.0f}")
    ratio = hard_rate_busy / selfplay_evals if selfplay_evals else 0.0
    print(f"  ratio                     {ratio:>10.2f}   (target >= 0.5)")
    easy_p99 = pct(tally.rtt[EASY], 99)
    print(f"level {EASY} p99 {easy_p99:.1f} ms (target < 50 ms at 500 clients; {args.clients} clients here)")
    problems = run["failures"] or tally.errors
    if problems:
        print(f"client failures: {len(run['failures'])}, errors: {len(tally.errors)}, e.g. {problems[0]!r}")
    print(json.dumps({
        "bench": "matchmaking", "clients": args.clients, "game": args.game, "think_ms": args.think_ms,
        "seconds": round(wall, 1),
        "rtt_ms": {str(lv): {"p50": round(pct(tally.rtt[lv], 50), 2), "p99": round(pct(tally.rtt[lv], 99), 2),
                             "n": len(tally.rtt[lv])} for lv in (EASY, HARD)},
        "ai_reply_ms": {str(lv): {"p50": round(pct(tally.ai[lv], 50), 1),
                                  "p99": round(pct(tally.ai[lv], 99), 1)} for lv in (EASY, HARD)},
        "server_move_ms": {"p50": round(server_p50, 2), "p99": round(server_p99, 2)},
        "echo_ms": {"p50": round(pct(echo_rtts, 50), 2), "p99": round(pct(echo_rtts, 99), 2)},
        "games_per_min": round(60 * tally.games / wall, 1),
        "server_cpu_ms_per_move": round(cpu_per_move_ms, 3),
        "hard_mean_batch": round(mean_batch, 1), "hard_evals_per_s_busy": round(hard_rate_busy),
        "hard_evals_per_s_wall": round(hard_rate_wall), "selfplay_evals_per_s": round(selfplay_evals),
        "hard_to_selfplay": round(ratio, 3), "errors": len(tally.errors), "failures": len(run["failures"]),
    }))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == SERVE:
        flag = "--hard-simulations"
        hard = int(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else None
        asyncio.run(serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], hard))
    elif len(sys.argv) > 1 and sys.argv[1] == ECHO:
        asyncio.run(echo())
    else:
        main()

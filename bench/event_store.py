"""Event-store benchmark: jetzero's bulk append and replay against nats-py's own ceiling.

Starts its own nats-server (free port, temporary store) and measures, side by side on it,
with uvloop: nats-py ``publish_async`` against ``EventStore.append_many``; nats-py's ordered
consumer reading raw messages against ``ProjectionRunner`` replay with decode and a fold; and
the peak memory of replaying ``--replay-events`` events in a fresh subprocess. Prints a table,
then one JSON line with the figures and the ratios.

    .venv/bin/python bench/event_store.py [--events 200000] [--replay-events 1000000] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any  # noqa: E402

import msgspec  # noqa: E402
import uvloop  # noqa: E402

from projections.base import BaseProjection  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from streams import auth, codec, names  # noqa: E402
from streams import events as ev  # noqa: E402
from streams.config import NatsSettings  # noqa: E402
from streams.connection import Log, connect  # noqa: E402
from streams.definitions import ensure_streams  # noqa: E402
from streams.envelope import Event  # noqa: E402
from streams.games import GameFinished, pack_policies  # noqa: E402
from streams.server import EmbeddedServer, free_port  # noqa: E402
from streams.store import EventStore  # noqa: E402

RUN = "bench"
MEMORY_RUN = "mem"
MODELS = ("gen-07", "gen-08", "gen-09", "gen-10")
STREAMS = (names.GAMES, names.EVENTS)
MEMORY_LIMIT_MB = 300.0
TARGET_APPEND = 1.5
TARGET_REPLAY = 1.0

# -- the events ----------------------------------------------------------------------------


def _game(rng: random.Random, i: int, run: str) -> GameFinished:
    """A finished Connect Four game: ~30 moves, a 7-move search policy at each (packed)."""
    n = rng.randint(15, 42)
    policies = []
    for _ in range(n):
        weights = [rng.random() ** 3 for _ in range(7)]
        total = sum(weights)
        policies.append([round(w / total, 4) for w in weights])
    return GameFinished(
        id=uuid.UUID(int=rng.getrandbits(128)).hex,
        time=1.7e9 + i,
        run=run,
        game_id=f"g{i}",
        game="connect4",
        moves=[rng.randrange(7) for _ in range(n)],
        **pack_policies(policies),
        outcome=rng.choice((1, -1, 0)),
        model_id=rng.choice(MODELS),
        generation=9,
        stage="full",
        search={"simulations": 200, "c_puct": 1.5, "dirichlet_alpha": 0.3},
        worker=f"selfplay-{i % 8}",
    )


def _control(rng: random.Random, i: int, run: str) -> Event:
    """One of a few ~200 B control events."""
    common: dict[str, Any] = {
        "id": uuid.UUID(int=rng.getrandbits(128)).hex, "time": 1.7e9 + i, "run": run
    }
    kind = i % 4
    if kind == 0:
        return ev.HealthCheckFailed(
            **common, check="selfplay_rate", severity="warning", detail="below 50 games/min",
            node=f"node-{i % 5}", value=41.5, threshold=50.0,
        )
    if kind == 1:
        return ev.NodeJoined(
            **common, node=f"node-{i % 5}", host="10.0.0.7", roles=["selfplay"],
            model_id=rng.choice(MODELS),
        )
    if kind == 2:
        return ev.CommandAccepted(
            **common, command_id=uuid.UUID(int=rng.getrandbits(128)).hex, command="status",
            detail="ok",
        )
    return ev.LoopHalted(**common, by="operator", reason="maintenance window")


def make_events(count: int, *, run: str = RUN, games_share: float = 0.9, seed: int = 7) -> list:
    """``count`` events like the real log: mostly finished games, some control events.

    Contents come from a pool of 1000 distinct games and 4 kinds of control event; each event
    gets its own id, time and game id (building 200k games from scratch takes a while).
    """
    rng = random.Random(seed)
    games = [_game(rng, i, run) for i in range(1000)]
    controls = [_control(rng, i, run) for i in range(4)]
    replace = msgspec.structs.replace
    out: list[Event] = []
    for i in range(count):
        ident = uuid.UUID(int=rng.getrandbits(128)).hex
        if rng.random() < games_share:
            out.append(replace(games[i % 1000], id=ident, time=1.7e9 + i, game_id=f"g{i}"))
        else:
            out.append(replace(controls[i % 4], id=ident, time=1.7e9 + i))
    return out


def control_events(count: int, *, run: str, start: int = 0, seed: int = 11) -> list:
    """``count`` ~200 B control events with ids and times from ``start`` on."""
    rng = random.Random(seed + start)
    controls = [_control(rng, i, run) for i in range(4)]
    replace = msgspec.structs.replace
    return [
        replace(controls[i % 4], id=uuid.UUID(int=rng.getrandbits(128)).hex, time=1.7e9 + i)
        for i in range(start, start + count)
    ]


# -- the folds -----------------------------------------------------------------------------


class ModelTally(msgspec.Struct, frozen=True):
    games: dict[str, int] = {}
    positions: dict[str, int] = {}


class GamesPerModel(BaseProjection[ModelTally]):
    """Games and positions played by each model."""

    name = "bench_games_per_model"
    stream = names.GAMES
    state_type = ModelTally

    def initial(self) -> ModelTally:
        return ModelTally()

    def on_game_finished(self, s: ModelTally, e: GameFinished) -> ModelTally:
        m = e.model_id
        return ModelTally(
            games={**s.games, m: s.games.get(m, 0) + 1},
            positions={**s.positions, m: s.positions.get(m, 0) + len(e.moves)},
        )


class TagCounts(msgspec.Struct, frozen=True):
    counts: dict[str, int] = {}


class EventsPerTag(BaseProjection[TagCounts]):
    """How many control events of each type."""

    name = "bench_events_per_tag"
    stream = names.EVENTS
    state_type = TagCounts

    def initial(self) -> TagCounts:
        return TagCounts()

    def apply(self, state: TagCounts, event: Event) -> TagCounts:
        tag = event.tag
        return TagCounts(counts={**state.counts, tag: state.counts.get(tag, 0) + 1})


# -- measurements --------------------------------------------------------------------------


async def reset_streams(log: Log) -> None:
    """Delete and recreate the streams the benchmark writes, so every round starts empty."""
    for stream in STREAMS:
        try:
            await log.js.delete_stream(stream)
        except Exception:  # noqa: BLE001 - not there yet
            pass
    await ensure_streams(log.js, log.settings)


async def stored_count(log: Log) -> int:
    return sum([(await log.js.stream_info(s)).state.messages for s in STREAMS])


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def raw_publish(log: Log, encoded: list[tuple[str, bytes, str]]) -> None:
    """nats-py's own pipelined publish: ``publish_async`` with 4000 in flight."""
    js = log.nc.jetstream(publish_async_max_pending=4000)
    for subj, payload, event_id in encoded:
        await js.publish_async(subj, payload, headers={names.HDR_MSG_ID: event_id})
    await js.publish_async_completed()


async def raw_replay(log: Log, stream: str, expected: int) -> int:
    """nats-py's ordered consumer with a callback that only counts (no decode)."""
    count = 0
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        nonlocal count
        count += 1
        if count >= expected:
            done.set()

    sub = await log.js.subscribe(
        names.run_filter(stream), stream=stream, cb=on_msg, ordered_consumer=True
    )
    await done.wait()
    await sub.unsubscribe()
    return count


async def jetzero_replay(store: EventStore) -> tuple[ModelTally, TagCounts]:
    """Replay with decode and fold, through the projection runner."""
    games = ProjectionRunner(store, GamesPerModel(), RUN, use_snapshots=False)
    control = ProjectionRunner(store, EventsPerTag(), RUN, use_snapshots=False)
    return await games.catch_up(), await control.catch_up()


async def bench_append(log: Log, store: EventStore, events: list, rounds: int) -> dict:
    encoded = [(codec.subject_of(e), codec.encode(e), e.id) for e in events]
    raw_t, ours_t = [], []
    for _ in range(rounds):
        await reset_streams(log)
        raw_t.append(await timed(lambda: raw_publish(log, encoded)))
        if await stored_count(log) != len(events):
            raise SystemExit("raw publish: stored count differs from published")
        await reset_streams(log)
        ours_t.append(await timed(lambda: store.append_many(events)))
        if await stored_count(log) != len(events):
            raise SystemExit("append_many: stored count differs from appended")
    n = len(events)
    return {
        "raw": [n / t for t in raw_t],
        "ours": [n / t for t in ours_t],
        "bytes": sum(len(p) for _, p, _ in encoded) / n,
    }


async def bench_replay(log: Log, store: EventStore, events: list, rounds: int) -> dict:
    per_stream = {s: sum(1 for e in events if e.STREAM == s) for s in STREAMS}
    n = len(events)
    games = sum(1 for e in events if isinstance(e, GameFinished))
    positions = sum(len(e.moves) for e in events if isinstance(e, GameFinished))
    raw_t, ours_t = [], []
    for _ in range(rounds):

        async def raw_all() -> None:
            for stream, count in per_stream.items():
                if count and await raw_replay(log, stream, count) != count:
                    raise SystemExit(f"raw replay of {stream}: wrong count")

        raw_t.append(await timed(raw_all))
        start = time.perf_counter()
        tally, tags = await jetzero_replay(store)
        ours_t.append(time.perf_counter() - start)
        if sum(tally.games.values()) != games or sum(tally.positions.values()) != positions:
            raise SystemExit("jetzero replay: the fold's totals differ from the events")
        if sum(tags.counts.values()) != n - games:
            raise SystemExit("jetzero replay: control event count differs")
    return {"raw": [n / t for t in raw_t], "ours": [n / t for t in ours_t]}


async def fill_memory_log(store: EventStore, count: int, chunk: int = 50_000) -> None:
    for start in range(0, count, chunk):
        await store.append_many(control_events(min(chunk, count - start), run=MEMORY_RUN,
                                               start=start))


def memory_child(url: str, credentials: str, until_seq: int) -> dict:
    """Run in a fresh process: replay ``until_seq`` events with decode and fold; report RSS."""

    async def main() -> dict:
        log = await connect(NatsSettings(url=url, credentials=credentials), name="bench-memory",
                            long_lived=False, ensure=False)
        before = _vm("VmRSS")
        try:
            runner = ProjectionRunner(EventStore(log), EventsPerTag(), MEMORY_RUN,
                                      use_snapshots=False)
            start = time.perf_counter()
            state = await runner.catch_up(until_seq=until_seq)
            seconds = time.perf_counter() - start
        finally:
            await log.close()
        return {
            "events": sum(state.counts.values()),
            "seconds": seconds,
            "rss_before_mb": before / 1024,
            "peak_mb": _vm("VmHWM") / 1024,
        }

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_memory_child(settings: NatsSettings, until_seq: int) -> dict:
    credentials = str(auth.client_file(settings))
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", settings.client_url, credentials,
         str(until_seq)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


async def bench(args: argparse.Namespace, settings: NatsSettings) -> dict:
    log = await connect(settings, name="bench", long_lived=False)
    store = EventStore(log)
    try:
        events = make_events(args.events)
        append = await bench_append(log, store, events, args.rounds)
        replay = await bench_replay(log, store, events, args.rounds)
        del events
        await reset_streams(log)
        small = max(1, args.replay_events // 10)
        await fill_memory_log(store, args.replay_events)
    finally:
        await log.close()
    memory = {
        "small": run_memory_child(settings, small),
        "full": run_memory_child(settings, args.replay_events),
    }
    return {"append": append, "replay": replay, "memory": memory}


def load_average() -> float:
    return os.getloadavg()[0]


def report(args: argparse.Namespace, figures: dict) -> dict:
    a, r, m = figures["append"], figures["replay"], figures["memory"]
    append_ratio = max(a["ours"]) / max(a["raw"])
    replay_ratio = max(r["ours"]) / max(r["raw"])
    full, small = m["full"], m["small"]
    rows = [
        ("nats-py publish_async (max_pending 4000)", a["raw"], "events/s"),
        ("jetzero EventStore.append_many", a["ours"], "events/s"),
        ("nats-py ordered consumer, raw callback", r["raw"], "events/s"),
        ("jetzero replay + decode + fold", r["ours"], "events/s"),
    ]
    print(f"\n{args.events:,} events, mean payload {a['bytes']:.0f} B "
          f"(90% game.finished, 10% control); best / worst of {args.rounds} rounds; "
          f"load average {figures['load'][0]:.1f} at start, {figures['load'][1]:.1f} at end")
    print("append_many's time includes encoding the events; publish_async gets the bytes\n")
    print(f"{'measurement':<44}{'best':>12}{'worst':>12}")
    for label, values, unit in rows:
        print(f"{label:<44}{max(values):>12,.0f}{min(values):>12,.0f}  {unit}")
    print(f"\n{'ratio (best / best)':<44}{'measured':>12}{'target':>12}")
    print(f"{'bulk append / publish_async':<44}{append_ratio:>12.2f}{'>= 1.5':>12}")
    print(f"{'replay+decode+fold / raw ordered consumer':<44}{replay_ratio:>12.2f}{'>= 1.0':>12}")
    print("\nreplay peak RSS (fresh process, decode + fold):")
    for row in (small, full):
        print(f"  {row['events']:>10,} events: peak {row['peak_mb']:6.1f} MB "
              f"(after connect {row['rss_before_mb']:.1f} MB), "
              f"{row['events'] / row['seconds']:,.0f} events/s")
    print(f"  target: < {MEMORY_LIMIT_MB:.0f} MB for {args.replay_events:,} events\n")
    result = {
        "events": args.events,
        "mean_payload_bytes": round(a["bytes"]),
        "rounds": args.rounds,
        "load_avg_1m": [round(x, 2) for x in figures["load"]],
        "publish_async_eps": [round(x) for x in a["raw"]],
        "append_many_eps": [round(x) for x in a["ours"]],
        "ordered_consumer_raw_eps": [round(x) for x in r["raw"]],
        "replay_decode_fold_eps": [round(x) for x in r["ours"]],
        "append_ratio": round(append_ratio, 3),
        "replay_ratio": round(replay_ratio, 3),
        "replay_memory_events": full["events"],
        "replay_memory_peak_mb": round(full["peak_mb"], 1),
        "replay_memory_small_events": small["events"],
        "replay_memory_small_peak_mb": round(small["peak_mb"], 1),
        "targets_met": {
            "append": append_ratio >= TARGET_APPEND,
            "replay": replay_ratio >= TARGET_REPLAY,
            "memory": full["peak_mb"] < MEMORY_LIMIT_MB,
        },
    }
    print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--replay-events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20k events, 100k for memory")
    parser.add_argument("--memory-child", nargs=3, metavar=("URL", "CREDENTIALS", "UNTIL_SEQ"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        url, credentials, until = args.memory_child
        print(json.dumps(memory_child(url, credentials, int(until))))
        return 0
    if args.quick:
        args.events, args.replay_events = 20_000, 100_000
    with tempfile.TemporaryDirectory(prefix="jetzero-bench-") as tmp:
        settings = NatsSettings(port=free_port(), data_dir=str(Path(tmp) / "nats"),
                                games_max_bytes=8 * 1024**3)
        server = EmbeddedServer(settings)
        server.start()
        try:
            load = load_average()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                figures = runner.run(bench(args, settings))
            figures["load"] = (load, load_average())
        finally:
            server.stop()
    result = report(args, figures)
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

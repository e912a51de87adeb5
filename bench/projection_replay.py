"""Projections benchmark: replaying every projection stays linear as the log grows, and
``--status`` from snapshots stays fast on a long log.

Synthetic runs of ``--sizes`` records (default 100,000 and 1,000,000) shaped like a real
loop: selfplay games (``GAMES``) synced into shards, trainings, checkpoints, and for about
half of the checkpoints an evaluation (gate, regression and two reference matches, each with
its ``match.pair_played`` per pair, a redone pair now and then, then ``match.completed``),
promotions and rejections, watch matches, occasional rollbacks, health failures, restarts
and poison records. For each size:

- in memory: the replay of every projection of ``projections.PROJECTIONS``, one pass as a
  reader makes it (each record decoded with ``streams.codec``, folded into every projection of
  its stream, dropped): its rate is the one compared across sizes; then, for the breakdown,
  decoding every record (the ceiling of any fold) and each projection folding the decoded
  records of its stream alone;
- through a real nats-server (embedded, temporary store): the bulk append of the log, each
  projection's ``ProjectionRunner`` replay (which writes its snapshot), against the lean
  reader with a no-op handler (the ceiling there), and the size of each snapshot; then 1,000
  more records and ``--status`` (``collect_status``), which starts from those snapshots, and
  (up to ``--full-status-max`` records) the same report folded from the start, compared.

Prints the figures, the 1M / 100k replay-rate ratio (target >= 0.8) and the status time on
the largest log (target < 2 s), then one JSON line.

    .venv/bin/python bench/projection_replay.py [--sizes 100000 1000000] [--memory-only]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import uvloop  # noqa: E402

from handlers.loop.config import LoopConfig  # noqa: E402
from projections import PROJECTIONS, build_projection  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from streams import codec, names  # noqa: E402
from streams import events as ev  # noqa: E402
from streams.config import NatsSettings  # noqa: E402
from streams.connection import connect  # noqa: E402
from streams.envelope import Event  # noqa: E402
from streams.games import GameFinished  # noqa: E402
from streams.server import EmbeddedServer, free_port  # noqa: E402
from streams.store import EventStore  # noqa: E402

RUN = "bench"
SIZES = (100_000, 1_000_000)
TARGET_RATIO = 0.8
TARGET_STATUS_S = 2.0
TAIL = 1_000  # records appended after the snapshots, folded by --status
RANDOM = ev.PlayerSpec(kind="random")
PURE_MCTS = ev.PlayerSpec(kind="pure_mcts", simulations=200)
GATE_SPRT = ev.SprtParams(elo0=0.0, elo1=30.0)
REGRESSION_SPRT = ev.SprtParams(elo0=-20.0, elo1=0.0)

# -- the synthetic run ---------------------------------------------------------------------


class SyntheticRun:
    """An endless, deterministic loop run; ``take(n)`` gives its next ``n`` records, in log
    order. It keeps the sequence each record will have in its stream (a fresh stream per
    run), so rollbacks name real promotion sequences."""

    def __init__(self, run: str = RUN, seed: int = 0):
        self.run, self.rng = run, random.Random(seed)
        self.count = 0
        self.seq = {names.EVENTS: 0, names.GAMES: 0}
        self.models = 0
        self.champion = ""
        self.generation = 0
        self.promotions: list[tuple[str, int, int]] = []  # (model, generation, seq)
        self.pending: list[Event] = []
        self.time = 1.7e9

    def take(self, n: int) -> list[Event]:
        out: list[Event] = []
        cycles = self._cycles()
        while len(out) < n:
            if not self.pending:
                self.pending = list(next(cycles))
            room = n - len(out)
            out += self.pending[:room]
            self.pending = self.pending[room:]
        return out

    def _cycles(self) -> Iterator[list[Event]]:
        while True:
            yield list(self._cycle())

    # each record is made by _event, which numbers it, times it and counts its sequence
    def _event(self, cls: type[Any], **fields: Any) -> Any:
        self.count += 1
        self.time += 0.05
        event = cls(id=f"{self.run}-{self.count}", time=self.time, run=self.run, **fields)
        self.seq[event.STREAM] += 1
        return event

    def _cycle(self) -> Iterator[Event]:
        rng = self.rng
        if not self.champion:
            yield self._event(ev.LoopStarted, by="bench")
            yield self._checkpoint()
            yield self._promoted(self._last_model(), previous="")
        yield from self._selfplay_and_sync(rng.randint(12, 30))
        yield self._event(ev.TrainingStarted, trainer="trainer", parent_model=self.champion,
                          shards=[f"shard-{self.seq[names.EVENTS]}"], window_positions=50_000,
                          samples_planned=4096)
        yield self._checkpoint()
        if rng.random() < 0.5:
            yield from self._evaluation(self._last_model())
        if rng.random() < 0.05:
            yield self._event(ev.HealthCheckFailed, check="selfplay_rate", severity="warning",
                              detail="selfplay slower than 1 game/s", value=0.5, threshold=1.0)
        if rng.random() < 0.02:
            yield self._event(ev.ProcessRestarted, process=rng.choice(["sync", "trainer", "selfplay"]),
                              exit_code=1)
        if rng.random() < 0.01:
            yield self._event(ev.EventRejected, stream=names.EVENTS, subject="jz.events.bench.x.y",
                              seq=self.seq[names.EVENTS], reason="not msgpack")
        if rng.random() < 0.004 and len(self.promotions) >= 3:
            yield self._rollback()

    def _last_model(self) -> str:
        return f"m{self.models - 1}"

    def _checkpoint(self) -> Event:
        self.models += 1
        return self._event(ev.CheckpointSaved, model_id=self._last_model(),
                           object_name=f"models/{self._last_model()}.pt", digest="d" * 16,
                           parent_model=self.champion, generation=self.generation + 1,
                           step=self.models * 100, game="connect4", policy_loss=1.2, value_loss=0.4)

    def _selfplay_and_sync(self, games: int) -> Iterator[Event]:
        first = self.seq[names.GAMES] + 1
        positions = 0
        for _ in range(games):
            moves = [self.rng.randrange(7) for _ in range(self.rng.randint(9, 30))]
            positions += len(moves)
            yield self._event(GameFinished, game_id=f"g{self.count}", game="connect4", moves=moves,
                              outcome=self.rng.choice((-1, 0, 1)),
                              model_id=self.champion, generation=self.generation, worker="w1")
        shard = f"shard-{self.seq[names.EVENTS] + 1}"
        yield self._event(ev.PoolBatchSynced, shard_id=shard, object_name=f"pool/{shard}",
                          digest="d" * 16, games=games, positions=positions, games_first_seq=first,
                          games_last_seq=self.seq[names.GAMES], models=[self.champion])

    def _evaluation(self, candidate: str) -> Iterator[Event]:
        rng = self.rng
        specs = [("gate", ev.PlayerSpec(kind="model", model_id=self.champion, simulations=48), 200)]
        if len(self.promotions) > 1:
            previous = self.promotions[-2][0]
            specs.append(("regression", ev.PlayerSpec(kind="model", model_id=previous, simulations=48), 20))
        specs += [("reference", RANDOM, 20), ("reference", PURE_MCTS, 20)]
        strength = rng.gauss(0.0, 1.0)
        matches: list[list[Any]] = []  # [match id, pairs to play, played, pentanomial]
        for purpose, opponent, cap in specs:
            match_id = f"{purpose}-{candidate}-vs-{opponent.label}"
            sprt = GATE_SPRT if purpose == "gate" else REGRESSION_SPRT
            yield self._event(ev.MatchScheduled, match_id=match_id,
                              candidate=ev.PlayerSpec(kind="model", model_id=candidate, simulations=48),
                              opponent=opponent, purpose=purpose, max_pairs=cap, sprt=sprt,
                              set_size=len(specs))
            pairs = rng.randint(cap // 10, cap // 2) if purpose == "gate" else rng.randint(6, cap)
            matches.append([match_id, pairs, 0, [0, 0, 0, 0, 0]])
        # the matches' pairs arrive interleaved, as workers play their units side by side
        while any(m[2] < m[1] for m in matches):
            m = rng.choice([m for m in matches if m[2] < m[1]])
            category = min(4, max(0, round(2 + strength + rng.gauss(0.0, 1.2))))
            yield self._pair(m[0], m[2], category)
            if rng.random() < 0.02:  # a unit redone by a second worker
                yield self._pair(m[0], m[2], category)
            m[2] += 1
            m[3][category] += 1
        for match_id, pairs, _, counts in matches:
            yield self._event(ev.MatchCompleted, match_id=match_id, verdict="accept" if strength > 0.5
                              else "reject", pairs=pairs, pentanomial=counts, elo=40.0 * strength,
                              elo_ci95=60.0, llr=1.0, lower=-2.94, upper=2.94, reason="SPRT")
        if strength > 0.5:
            previous = self.champion
            yield self._promoted(candidate, previous)
            watch = f"watch-{candidate}-vs-{previous}"
            yield self._event(ev.MatchScheduled, match_id=watch,
                              candidate=ev.PlayerSpec(kind="model", model_id=candidate, simulations=48),
                              opponent=ev.PlayerSpec(kind="model", model_id=previous, simulations=48),
                              purpose="watch", max_pairs=20, sprt=REGRESSION_SPRT)
            for index in range(20):
                yield self._pair(watch, index, rng.randint(1, 4))
        else:
            yield self._event(ev.CandidateRejected, model_id=candidate, reason="gate: SPRT rejects")

    def _pair(self, match_id: str, index: int, category: int) -> Event:
        return self._event(ev.MatchPairPlayed, match_id=match_id, unit_id=f"{match_id}-{index // 2}",
                           pair_index=index, opening=[3, 3], pentanomial=category, worker="w1")

    def _promoted(self, model: str, previous: str) -> Event:
        self.generation += 1
        event = self._event(ev.CandidatePromoted, model_id=model, previous_champion=previous,
                            generation=self.generation)
        self.champion = model
        self.promotions.append((model, self.generation, self.seq[names.EVENTS]))
        return event

    def _rollback(self) -> Event:
        to_model, generation, seq = self.promotions[-2]
        reverted = [self.promotions[-1][0]]
        self.promotions = self.promotions[:-1]
        self.champion, self.generation = to_model, generation
        return self._event(ev.ChampionRolledBack, to_promotion_seq=seq, model_id=to_model,
                           reverted_models=reverted, reason="regression", automatic=True)


def synthetic_log(size: int, run: str = RUN, seed: int = 0) -> list[Event]:
    """The first ``size`` records of a synthetic run (both streams, in log order)."""
    return SyntheticRun(run, seed).take(size)


def mix(events: list[Event]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        counts[e.tag] = counts.get(e.tag, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# -- in memory -----------------------------------------------------------------------------


def replay_streaming(
    log: list[tuple[str, bytes]], projections: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """One pass over the log as a reader makes it: each record decoded, folded into every
    projection of its stream (with its stream sequence), then dropped. Seconds and states."""
    by_stream: dict[str, list[tuple[str, Any, Any]]] = {names.EVENTS: [], names.GAMES: []}
    states: dict[str, Any] = {}
    for name, projection in projections.items():
        by_stream[projection.stream].append((name, projection, getattr(projection, "apply_at", None)))
        states[name] = projection.initial()
    seqs = {names.EVENTS: 0, names.GAMES: 0}
    decode = codec.decode
    gc.collect()
    started = time.perf_counter()
    for stream, data in log:
        seqs[stream] += 1
        seq, event = seqs[stream], decode(data)
        for name, projection, apply_at in by_stream[stream]:
            state = states[name]
            if apply_at is not None:
                states[name] = apply_at(state, event, seq)
            else:
                states[name] = projection.apply(state, event)
    return time.perf_counter() - started, states


def fold_in_memory(
    events: list[Event], config: Any = None, exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The replay of every projection (one streaming pass: decode, fold into each projection of
    the record's stream); then, for the breakdown, decoding every record (the ceiling of any
    fold) and each projection folding the decoded records of its stream alone."""
    config = config or LoopConfig(run=RUN)
    log = [(e.STREAM, codec.encode(e)) for e in events]
    chosen = {name: build_projection(name, config) for name in PROJECTIONS if name not in exclude}
    replay_s, replayed = replay_streaming(log, chosen)
    del replayed
    payloads: dict[str, list[bytes]] = {names.EVENTS: [], names.GAMES: []}
    for stream, data in log:
        payloads[stream].append(data)
    del log
    gc.collect()
    started = time.perf_counter()
    decoded: dict[str, list[Any]] = {stream: [codec.decode(p) for p in items]
                                     for stream, items in payloads.items()}
    decode_s = time.perf_counter() - started
    del payloads
    folds: dict[str, dict[str, float]] = {}
    states: dict[str, Any] = {}
    for name in chosen:
        projection = build_projection(name, config)
        items = decoded[projection.stream]
        apply_at = getattr(projection, "apply_at", None)
        state = projection.initial()
        gc.collect()
        started = time.perf_counter()
        if apply_at is not None:
            for seq, event in enumerate(items, 1):
                state = apply_at(state, event, seq)
        else:
            for event in items:
                state = projection.apply(state, event)
        seconds = time.perf_counter() - started
        folds[name] = {"records": len(items), "seconds": seconds, "rate": len(items) / max(seconds, 1e-9)}
        states[name] = state
    del decoded
    started = time.perf_counter()
    champion = getattr(states.get("model_registry"), "champion", None)
    rating = states["ratings"].rating(champion.model_id) if champion is not None else None
    ladder_s = time.perf_counter() - started
    return {
        "records": len(events), "decode_s": decode_s, "decode_rate": len(events) / decode_s,
        "folds": folds, "replay_s": replay_s, "replay_rate": len(events) / replay_s,
        "ladder_players": len(states["ratings"].ladder), "ladder_fit_s": ladder_s,
        "champion": champion.model_id if champion is not None else None,
        "champion_elo": rating.elo if rating else None, "states": states,
    }


# -- through the log -----------------------------------------------------------------------


async def through_the_log(
    events: list[Event], tail: list[Event], settings: NatsSettings, full_status: bool = True
) -> dict[str, Any]:
    from handlers.loop import status as status_module

    config = LoopConfig(run=RUN)
    log = await connect(settings, name="bench-projections", long_lived=False)
    store = EventStore(log)
    try:
        started = time.perf_counter()
        for stream in (names.GAMES, names.EVENTS):
            batch = [e for e in events if e.STREAM == stream]
            for i in range(0, len(batch), 100_000):
                await store.append_many(batch[i:i + 100_000])
        append_s = time.perf_counter() - started
        ceilings = {}
        for stream in (names.EVENTS, names.GAMES):
            started = time.perf_counter()
            await store.replay(stream, lambda *a: None, subject_filter=names.run_filter(stream, RUN))
            ceilings[stream] = time.perf_counter() - started
        replays = {}
        for name in PROJECTIONS:
            runner = ProjectionRunner(store, build_projection(name, config), RUN, snapshot_every=1)
            started = time.perf_counter()
            await runner.catch_up()  # a full replay, then its snapshot
            replays[name] = {"seconds": time.perf_counter() - started,
                             "ceiling_s": ceilings[runner.projection.stream],
                             "records": runner.position, "snapshot_bytes": runner.snapshot_bytes}
        await store.append_many(tail)
        started = time.perf_counter()
        report = await status_module.collect_status(store, config)  # from the snapshots + the tail
        status_snap_s = time.perf_counter() - started
        status_full_s = None
        if full_status:
            started = time.perf_counter()
            full = await status_module.collect_status(store, config, use_snapshots=False)
            status_full_s = time.perf_counter() - started
            report.pop("now"), full.pop("now")
            assert full == report, "--status from snapshots and from a full fold disagree"
    finally:
        await log.close()
    return {"append_s": append_s, "ceilings": ceilings, "replays": replays,
            "status_from_snapshots_s": status_snap_s, "status_full_fold_s": status_full_s,
            "champion": report["champion"]}


def run_log_bench(events: list[Event], tail: list[Event], full_status: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jetzero-bench-projections-") as tmp:
        settings = NatsSettings(port=free_port(), data_dir=str(Path(tmp) / "nats"),
                                games_max_bytes=8 * 1024**3)
        server = EmbeddedServer(settings)
        server.start()
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(through_the_log(events, tail, settings, full_status))
        finally:
            server.stop()


# -- report --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--memory-only", action="store_true", help="skip the real-log part")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="PROJECTION",
                        help="projections left out of the in-memory folds (too slow to wait for)")
    parser.add_argument("--log-sizes", type=int, nargs="*", default=None,
                        help="sizes that also run through a real server (default: every size)")
    parser.add_argument("--full-status-max", type=int, default=200_000,
                        help="largest size whose --status is also folded from the start and compared")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"sizes": args.sizes, "memory": {}, "log": {}}
    for size in args.sizes:
        run = SyntheticRun(RUN, seed=0)
        events = run.take(size)
        tail = run.take(TAIL)
        kinds = mix(events)
        print(f"\n== {size:,} records: " + ", ".join(f"{k} {v:,}" for k, v in kinds.items()))
        mem = fold_in_memory(events, exclude=tuple(args.exclude))
        mem.pop("states")
        result["memory"][size] = mem
        print(f"in memory: replay of every projection {mem['replay_rate']:,.0f} rec/s (decode + every fold, "
              f"one pass); decode alone {mem['decode_rate']:,.0f} rec/s; "
              f"ladder of {mem['ladder_players']:,} players read in {mem['ladder_fit_s']:.2f} s "
              f"(champion {mem['champion']} Elo {mem['champion_elo']})")
        for name, f in mem["folds"].items():
            print(f"  fold {name:<16} {f['records']:>9,} rec {f['seconds']:>8.2f} s "
                  f"{f['rate']:>12,.0f} rec/s")
        if not args.memory_only and (args.log_sizes is None or size in args.log_sizes):
            got = run_log_bench(events, tail, full_status=size <= args.full_status_max)
            result["log"][size] = got
            print(f"real log: bulk append {size:,} records in {got['append_s']:.1f} s "
                  f"({size / got['append_s']:,.0f} rec/s)")
            for name, r in got["replays"].items():
                print(f"  runner {name:<14} {r['records']:>9,} rec {r['seconds']:>8.2f} s; no-op reader "
                      f"{r['ceiling_s']:.2f} s ({r['ceiling_s'] / r['seconds']:.2f} of the ceiling); "
                      f"snapshot {r['snapshot_bytes'] / 1e6:.2f} MB")
            full = got["status_full_fold_s"]
            print(f"  --status: {got['status_from_snapshots_s']:.2f} s from snapshots (+{TAIL} records)"
                  + (f", {full:.2f} s folding every projection from the start (same report)"
                     if full is not None else ""))
        del events
        gc.collect()
    small, large = min(args.sizes), max(args.sizes)
    mem = result["memory"]
    ratio = mem[large]["replay_rate"] / mem[small]["replay_rate"]
    per_projection = {name: mem[large]["folds"][name]["rate"] / mem[small]["folds"][name]["rate"]
                      for name in mem[large]["folds"]}
    result["ratio"] = ratio
    result["ratio_per_projection"] = per_projection
    left_out = f" (left out: {', '.join(args.exclude)})" if args.exclude else ""
    print(f"\nreplay rate {large:,} / {small:,}{left_out}: {ratio:.2f} (target >= {TARGET_RATIO}); "
          "per projection: "
          + ", ".join(f"{k} {v:.2f}" for k, v in per_projection.items()))
    met = {"ratio": ratio >= TARGET_RATIO}
    if large in result["log"]:
        status_s = result["log"][large]["status_from_snapshots_s"]
        print(f"--status from snapshots on {large:,} records: {status_s:.2f} s "
              f"(target < {TARGET_STATUS_S} s)")
        met["status"] = status_s < TARGET_STATUS_S
    result["targets_met"] = met
    print(json.dumps(result, default=str))
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

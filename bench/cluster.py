"""Cluster benchmark: the event store on a 3-server JetStream cluster (R3) against one server (R1),
leader failover through the event store beside a bare nats-py publisher, and a frozen server.

One run, on this machine, everything started here (free ports, temporary stores, per-role
permissions on the cluster):

- append (``EventStore.append_many`` and one-by-one ``append``) and replay
  (``EventStore.replay``) rates on R3 and R1, and the ratios R3 / R1;
- failover: ``--kills`` times, the EVENTS stream leader is killed (-9) while an event-store
  producer and a bare nats-py publisher (``js.publish``, 0.5 s timeout, the same
  ``Nats-Msg-Id`` retried every 50 ms, as in CLUSTER_NOTES §3) both write; for each, the time
  from the kill to the acknowledgement of the first append *started* after it; p50 and max.
  The killed server is restarted and caught up before the next kill. Afterwards every
  acknowledged event is read back: nothing lost, nothing stored twice (printed);
- a frozen server (SIGSTOP) holding the producer's connection: time to the first append
  acknowledged elsewhere (the client's pings give up on it), ``--freezes`` times.
- games/s through the cluster with 1, 2, 3 agents: ``games_per_second`` in
  ``bench/cluster_agents.py`` when that module exists (the agent side's), else skipped.

    .venv/bin/python bench/cluster.py [--events 20000] [--kills 10] [--freezes 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import uvloop  # noqa: E402

from bench.event_store import control_events, make_events  # noqa: E402
from handlers.cluster import credentials  # noqa: E402
from handlers.cluster.servers import LocalCluster  # noqa: E402
from handlers.cluster.up import apply_with_retry  # noqa: E402
from streams import names  # noqa: E402
from streams.cluster_info import placement  # noqa: E402
from streams.config import NatsSettings  # noqa: E402
from streams.connection import Log, connect  # noqa: E402
from streams.errors import StoreError  # noqa: E402
from streams.events import LoopHalted  # noqa: E402
from streams.server import EmbeddedServer, free_port  # noqa: E402
from streams.store import EventStore  # noqa: E402

RUN = "bench"
STORE_RUN, BARE_RUN = "fo-store", "fo-bare"
TARGET_FAILOVER_RATIO = 1.2
TARGET_FREEZE_S = 3.0


# -- rates ----------------------------------------------------------------------------------


async def rates(settings: NatsSettings, events: int, singles: int) -> dict:
    conn = await connect(settings, name="bench-rates")
    try:
        store = EventStore(conn)
        batch = make_events(events, run=RUN)
        t0 = time.perf_counter()
        await store.append_many(batch)
        bulk = events / (time.perf_counter() - t0)
        one = control_events(singles, run=RUN, start=events)
        t0 = time.perf_counter()
        for event in one:
            await store.append(event)
        single = singles / (time.perf_counter() - t0)
        counted = 0

        def handle(seq, subject, ts, data) -> None:
            nonlocal counted
            counted += 1

        t0 = time.perf_counter()
        for stream in (names.GAMES, names.EVENTS):
            await store.replay(stream, handle, subject_filter=names.run_filter(stream, RUN))
        replay = counted / (time.perf_counter() - t0)
        if counted != events + singles:
            raise SystemExit(f"replay read {counted} events, {events + singles} were appended")
        return {"append_many_eps": bulk, "append_eps": single, "replay_eps": replay}
    finally:
        await conn.close()


# -- failover -------------------------------------------------------------------------------


class Writer:
    """Appends one after another, recording when each append started and was acknowledged."""

    def __init__(self) -> None:
        self.acks: list[tuple[float, float, str, int]] = []  # started, acked, id, seq
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def first_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the ack of the first append started at or after it."""
        for started, acked, _, _ in self.acks:
            if started >= moment:
                return acked - moment
        return None


class StoreWriter(Writer):
    def __init__(self, store: EventStore) -> None:
        super().__init__()
        self.store = store

    async def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            event = LoopHalted.new(STORE_RUN, by="bench", reason=str(i))
            started = time.monotonic()
            seq = await self.store.append(event)
            self.acks.append((started, time.monotonic(), event.id, seq))
            i += 1


class BareWriter(Writer):
    """nats-py's ``js.publish`` with the retry of CLUSTER_NOTES §3 (the server's own failover)."""

    def __init__(self, log: Log) -> None:
        super().__init__()
        self.js = log.nc.jetstream()

    async def run(self) -> None:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import APIError, NoStreamResponseError

        subject = names.subject(names.EVENTS, BARE_RUN, "bare", "bare.msg")
        i = 0
        while not self.stop.is_set():
            msg_id = f"bare-{i}"
            started = time.monotonic()
            while True:
                try:
                    ack = await self.js.publish(subject, b"x" * 200, timeout=0.5,
                                                headers={names.HDR_MSG_ID: msg_id})
                    break
                except (NatsTimeout, NoStreamResponseError):
                    pass
                except APIError as exc:
                    if exc.err_code != 10158:
                        raise
                await asyncio.sleep(0.05)
            self.acks.append((started, time.monotonic(), msg_id, int(ack.seq)))
            i += 1


async def wait_caught_up(admin: Log, cluster: LocalCluster, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            placed = await placement(admin.js, names.EVENTS)
            follower = {r.name: r for r in placed.followers}.get(name)
            if placed.leader and (placed.leader == name or (
                    follower is not None and follower.current and follower.lag == 0)):
                return
        except StoreError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit(f"{name} did not catch up in {timeout:.0f} s")


async def leader_index(admin: Log, cluster: LocalCluster) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            placed = await placement(admin.js, names.EVENTS)
            if placed.leader:
                return cluster.index_of(placed.leader)
        except StoreError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("EVENTS has no leader")


async def failover(cluster: LocalCluster, settings_for, kills: int) -> dict:
    admin = await connect(settings_for("admin"), name="bench-admin", ensure=False)
    ours = await connect(settings_for("admin"), name="bench-store", ensure=False)
    bare = await connect(settings_for("admin"), name="bench-bare", ensure=False)
    store_w, bare_w = StoreWriter(EventStore(ours)), BareWriter(bare)
    tasks = [asyncio.ensure_future(w.run()) for w in (store_w, bare_w)]
    store_s, bare_s = [], []
    try:
        for k in range(kills):
            n_store, n_bare = len(store_w.acks), len(bare_w.acks)
            while len(store_w.acks) < n_store + 20 or len(bare_w.acks) < n_bare + 20:
                await asyncio.sleep(0.05)  # both writing steadily before the kill
                for t in tasks:
                    if t.done():
                        t.result()
            victim = await leader_index(admin, cluster)
            killed_at = time.monotonic()
            cluster.kill(victim)
            while store_w.first_after(killed_at) is None or bare_w.first_after(killed_at) is None:
                await asyncio.sleep(0.02)
                for t in tasks:
                    if t.done():
                        t.result()
            s, b = store_w.first_after(killed_at), bare_w.first_after(killed_at)
            store_s.append(s)
            bare_s.append(b)
            print(f"  kill {k + 1:>2}: {cluster.servers[victim].name} (leader) -> event store "
                  f"{s:5.2f} s, bare publisher {b:5.2f} s", flush=True)
            cluster.restart(victim)
            await wait_caught_up(admin, cluster, cluster.servers[victim].name)
        for w in (store_w, bare_w):
            w.stop.set()
        await asyncio.gather(*tasks)
        check = await loss_check(EventStore(admin), store_w, bare_w)
    finally:
        for t in tasks:
            t.cancel()
        for conn in (admin, ours, bare):
            await conn.close()
    return {"store_s": store_s, "bare_s": bare_s, **check}


async def loss_check(store: EventStore, store_w: StoreWriter, bare_w: BareWriter) -> dict:
    stored = {}
    duplicates = 0
    async for s in store.read(names.EVENTS, subject_filter=names.run_filter(names.EVENTS, STORE_RUN)):
        duplicates += s.event.id in stored
        stored[s.event.id] = s.seq
    acked = {i: seq for _, _, i, seq in store_w.acks}
    lost = sum(1 for i, seq in acked.items() if stored.get(i) != seq)
    unacked = len(set(stored) - set(acked))
    bare_seqs: list[int] = []

    def handle(seq, subject, ts, data) -> None:
        bare_seqs.append(seq)

    await store.replay(names.EVENTS, handle, subject_filter=names.run_filter(names.EVENTS, BARE_RUN))
    bare_acked = [seq for _, _, _, seq in bare_w.acks]
    return {
        "store_acked": len(acked), "store_lost": lost, "store_duplicates": duplicates,
        "store_stored_unacked": unacked,
        "bare_acked": len(bare_acked), "bare_lost": len(set(bare_acked) - set(bare_seqs)),
        "bare_duplicates": len(bare_seqs) - len(set(bare_seqs)) + len(bare_seqs) - len(bare_acked),
    }


# -- frozen server --------------------------------------------------------------------------


async def freezes(cluster: LocalCluster, settings_for, times: int) -> list[float]:
    admin = await connect(settings_for("admin"), name="bench-admin", ensure=False)
    out = []
    try:
        for _ in range(times):
            frozen = (await leader_index(admin, cluster) + 1) % len(cluster.servers)
            # connected to the frozen server alone; the others are learned from the cluster
            conn = await connect(settings_for("admin", url=cluster.servers[frozen].url),
                                 name="bench-frozen", ensure=False)
            writer = StoreWriter(EventStore(conn))
            task = asyncio.ensure_future(writer.run())
            try:
                while len(writer.acks) < 20:
                    await asyncio.sleep(0.02)
                frozen_at = time.monotonic()
                cluster.freeze(frozen)
                while writer.first_after(frozen_at) is None:
                    await asyncio.sleep(0.02)
                    if task.done():
                        task.result()
                out.append(writer.first_after(frozen_at) or 0.0)
                print(f"  freeze {len(out)}: {cluster.servers[frozen].name} -> next append "
                      f"{out[-1]:.2f} s", flush=True)
            finally:
                cluster.thaw(frozen)
                writer.stop.set()
                await asyncio.wait([task], timeout=10)
                await conn.close()
            await wait_caught_up(admin, cluster, cluster.servers[frozen].name)
    finally:
        await admin.close()
    return out


# -- games/s (the agent side's hook) --------------------------------------------------------


def games_hook():
    try:
        module = importlib.import_module("bench.cluster_agents")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.cluster_agents":
            raise
        return None
    return getattr(module, "games_per_second", None)


# -- the run --------------------------------------------------------------------------------


def cluster_settings(cluster: LocalCluster):
    def settings_for(role: str, **overrides) -> NatsSettings:
        fields = dict(url=",".join(cluster.urls), replicas=3,
                      credentials=str(credentials.role_file(cluster.credentials_dir, role)),
                      ping_interval_s=cluster.nats.ping_interval_s,
                      max_outstanding_pings=cluster.nats.max_outstanding_pings,
                      games_max_bytes=8 * 1024**3)
        fields.update(overrides)
        return NatsSettings(**fields)  # type: ignore[arg-type]
    return settings_for


async def bench(args, tmp: Path) -> dict:
    single = EmbeddedServer(NatsSettings(port=free_port(), data_dir=str(tmp / "r1"),
                                         games_max_bytes=8 * 1024**3))
    single.start()
    try:
        r1 = await rates(single.settings, args.events, args.singles)
    finally:
        single.stop()
    cluster = LocalCluster.on_free_ports(tmp / "cluster")
    cluster.start()
    try:
        settings_for = cluster_settings(cluster)
        await apply_with_retry(settings_for("admin"))
        r3 = await rates(settings_for("admin"), args.events, args.singles)
        print(f"failover: {args.kills} kills of the EVENTS leader", flush=True)
        fo = await failover(cluster, settings_for, args.kills)
        print(f"frozen server: {args.freezes} freezes", flush=True)
        frozen = await freezes(cluster, settings_for, args.freezes)
        hook = games_hook()
        games = ({n: await hook(settings_for, n) for n in (1, 2, 3)} if hook else None)
    finally:
        cluster.stop(timeout=5)
    return {"r1": r1, "r3": r3, "failover": fo, "frozen_s": frozen, "games_per_s": games}


def report(args, f: dict) -> dict:
    r1, r3, fo = f["r1"], f["r3"], f["failover"]
    print(f"\n{args.events:,} events bulk (90% game.finished), {args.singles:,} one by one")
    print(f"{'rate':<28}{'R1':>12}{'R3':>12}{'R3/R1':>8}")
    for key, label in (("append_many_eps", "append_many events/s"), ("append_eps", "append events/s"),
                       ("replay_eps", "replay events/s")):
        print(f"{label:<28}{r1[key]:>12,.0f}{r3[key]:>12,.0f}{r3[key] / r1[key]:>8.2f}")
    p50_s, p50_b = statistics.median(fo["store_s"]), statistics.median(fo["bare_s"])
    max_s, max_b = max(fo["store_s"]), max(fo["bare_s"])
    print(f"\nfailover over {len(fo['store_s'])} leader kills (kill -> first append started after it)")
    print(f"  event store      p50 {p50_s:5.2f} s  max {max_s:5.2f} s")
    print(f"  bare nats-py     p50 {p50_b:5.2f} s  max {max_b:5.2f} s")
    ratio = p50_s / p50_b
    print(f"  ratio p50 {ratio:.2f} (target <= {TARGET_FAILOVER_RATIO}), max {max_s / max_b:.2f}")
    print(f"  check: event store {fo['store_acked']} acked, {fo['store_lost']} lost, "
          f"{fo['store_duplicates']} stored twice, {fo['store_stored_unacked']} stored unacked; "
          f"bare {fo['bare_acked']} acked, {fo['bare_lost']} lost, {fo['bare_duplicates']} extra")
    frozen = f["frozen_s"]
    print(f"\nfrozen server: next append after p50 {statistics.median(frozen):.2f} s, max "
          f"{max(frozen):.2f} s (target < {TARGET_FREEZE_S} s)")
    print("games/s with 1, 2, 3 agents: " + (json.dumps(f["games_per_s"]) if f["games_per_s"]
          else "skipped (bench/cluster_agents.py games_per_second not present)"))
    clean = not (fo["store_lost"] or fo["store_duplicates"] or fo["bare_lost"])
    result = {
        "r1": {k: round(v) for k, v in r1.items()}, "r3": {k: round(v) for k, v in r3.items()},
        "ratios_r3_r1": {k: round(r3[k] / r1[k], 3) for k in r1},
        "failover_store_s": [round(x, 2) for x in fo["store_s"]],
        "failover_bare_s": [round(x, 2) for x in fo["bare_s"]],
        "failover_p50_ratio": round(ratio, 3),
        "frozen_s": [round(x, 2) for x in frozen],
        "loss_check": {k: v for k, v in fo.items() if not k.endswith("_s")},
        "targets_met": {"failover": ratio <= TARGET_FAILOVER_RATIO, "nothing_lost": clean,
                        "frozen": max(frozen) < TARGET_FREEZE_S},
    }
    print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=1_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--freezes", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jetzero-bench-cluster-") as tmp:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            figures = runner.run(bench(args, Path(tmp)))
    result = report(args, figures)
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The event store on a real 3-server JetStream cluster (R3, per-role permissions on):
a killed stream leader, a frozen server, a restart of all three, denied publishes, the CLI's
credentials and ``cluster up | status | down``."""

from __future__ import annotations

import asyncio
import json
import stat
import time

import pytest
import yaml
from typer.testing import CliRunner

from handlers.cluster import credentials
from handlers.cluster.config import load_cluster_config
from handlers.cluster.servers import LocalCluster
from scripts.cluster_orchestrator import orchestrate
from streams import names
from streams.commands import StopLoop
from streams.connection import connect
from streams.errors import PublishDenied
from streams.events import CandidatePromoted, LoopHalted
from streams.games import GameFinished
from streams.server import free_port
from streams.store import EventStore
from tests.waiting import until

pytestmark = pytest.mark.integration
RUN = "c1"


class Producer:
    """Appends numbered events one after another through the event store, keeping every
    acknowledged (id, seq); stops when told."""

    def __init__(self, store: EventStore):
        self.store = store
        self.acked: list[tuple[str, int]] = []
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> Producer:
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            event = LoopHalted.new(RUN, by="producer", reason=str(i))
            self.acked.append((event.id, await self.store.append(event)))
            i += 1

    async def acked_at_least(self, n: int, timeout: float, what: str) -> None:
        async def enough():
            if self.task is not None and self.task.done():
                self.task.result()  # the producer's own failure, not a timeout
            return len(self.acked) >= n
        await until(enough, timeout, what, poll=0.02)

    async def finish(self) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task


async def stored_ids(store: EventStore) -> list[tuple[str, int]]:
    return [(s.event.id, s.seq) async for s in store.read(
        names.EVENTS, subject_filter=names.run_filter(names.EVENTS, RUN))]


def check_nothing_lost_or_twice(acked, stored) -> None:
    ids = [i for i, _ in stored]
    assert len(ids) == len(set(ids)), "an event is stored twice"
    assert dict(stored) == dict(acked), "acknowledged events and the log differ"


async def test_stream_leader_killed_mid_append_loses_nothing_stores_nothing_twice(nats_cluster):
    conn = await connect(nats_cluster.settings_for("admin"), name="producer", ensure=False)
    try:
        producer = Producer(EventStore(conn)).start()
        await producer.acked_at_least(50, 20, "appends before the kill")
        leader = await nats_cluster.leader(names.EVENTS)
        nats_cluster.kill(leader)
        killed_at = len(producer.acked)
        await producer.acked_at_least(killed_at + 50, 30, "appends after the leader died")
        await producer.finish()
        new_leader = await nats_cluster.leader(names.EVENTS)
        assert new_leader != leader
        check_nothing_lost_or_twice(producer.acked, await stored_ids(EventStore(conn)))
        nats_cluster.restart(leader)  # it rejoins on its store and catches up

        async def caught_up():
            placed = await nats_cluster.placement(names.EVENTS)
            follower = {r.name: r for r in placed.followers}.get(nats_cluster.servers[leader].name)
            return follower is not None and follower.current and follower.lag == 0
        await until(caught_up, 20, "the restarted server to catch up")
    finally:
        await conn.close()


async def test_frozen_server_clients_move_off_within_3s_and_it_catches_up(nats_cluster):
    leader = await nats_cluster.leader(names.EVENTS)
    frozen = (leader + 1) % 3
    # Connected to the frozen server alone: the others are learned from the cluster.
    settings = nats_cluster.settings_for("admin", url=nats_cluster.urls[frozen])
    conn = await connect(settings, name="producer", ensure=False)
    try:
        producer = Producer(EventStore(conn)).start()
        await producer.acked_at_least(20, 20, "appends before the freeze")
        nats_cluster.freeze(frozen)
        frozen_at, t0 = len(producer.acked), time.monotonic()
        await producer.acked_at_least(frozen_at + 2, 15, "an append after the freeze")
        moved_s = time.monotonic() - t0
        assert conn.nc.connected_url is not None
        assert conn.nc.connected_url.port != nats_cluster.servers[frozen].port
        assert moved_s < 3.0, f"the client took {moved_s:.1f} s to move off the frozen server"
        await producer.acked_at_least(frozen_at + 100, 20, "the other two going on")
        nats_cluster.thaw(frozen)
        await producer.acked_at_least(len(producer.acked) + 50, 20, "appends after the thaw")
        await producer.finish()
        name = nats_cluster.servers[frozen].name

        async def caught_up():
            placed = await nats_cluster.placement(names.EVENTS)
            follower = {r.name: r for r in placed.followers}.get(name)
            return placed.leader == name or (follower is not None and follower.current
                                             and follower.lag == 0)
        await until(caught_up, 20, "the thawed server to catch up")
        check_nothing_lost_or_twice(producer.acked, await stored_ids(EventStore(conn)))
    finally:
        await conn.close()


async def test_all_three_restarted_everything_resumes(nats_cluster):
    conn = await connect(nats_cluster.settings_for("admin"), name="producer", ensure=False)
    try:
        store = EventStore(conn)
        before = Producer(store).start()
        await before.acked_at_least(30, 20, "appends before the restart")
        await before.finish()
        nats_cluster.cluster.stop(timeout=5)
        nats_cluster.cluster.start()  # on the same stores; the connection reconnects
        after = Producer(store).start()
        await after.acked_at_least(30, 40, "appends after the restart")
        await after.finish()
        check_nothing_lost_or_twice([*before.acked, *after.acked], await stored_ids(store))
    finally:
        await conn.close()


async def test_selfplay_forged_promotion_denied_at_once_operator_may_command(nats_cluster):
    selfplay = await connect(nats_cluster.settings_for("selfplay"), name="selfplay", ensure=False)
    operator = await connect(nats_cluster.settings_for("operator"), name="cli", ensure=False)
    try:
        store = EventStore(selfplay)
        game = GameFinished.new(RUN, game_id="g1", game="tictactoe", moves=[4, 0, 8], outcome=0,
                                model_id="m0")
        assert await store.append(game) > 0  # its own records: allowed
        forged = CandidatePromoted.new(RUN, model_id="forged")
        t0 = time.monotonic()
        with pytest.raises(PublishDenied) as denied:
            await store.append(forged)
        assert time.monotonic() - t0 < 1.0, "a denial must not wait out the publish timeout"
        subject = names.subject(names.EVENTS, RUN, names.AGG_CHAMPION, "candidate.promoted")
        assert subject in str(denied.value) and "'selfplay'" in str(denied.value)
        assert denied.value.user == "selfplay"
        admin = await connect(nats_cluster.settings_for("admin"), name="check", ensure=False)
        try:
            champion = names.aggregate_filter(names.EVENTS, RUN, names.AGG_CHAMPION)
            assert await EventStore(admin).last(names.EVENTS, champion) is None
        finally:
            await admin.close()
        with pytest.raises(PublishDenied):  # nor commands
            await store.append(StopLoop.new(RUN, by="selfplay"))
        t0 = time.monotonic()
        with pytest.raises(PublishDenied) as bulk_denied:  # the bulk path says so too
            await store.append_many([CandidatePromoted.new(RUN, model_id="forged2")])
        assert time.monotonic() - t0 < 1.0 and "selfplay" in str(bulk_denied.value)
        assert await EventStore(operator).append(StopLoop.new(RUN, by="operator")) > 0
    finally:
        await selfplay.close()
        await operator.close()


def test_cli_credentials_up_status_down(tmp_path):
    from scripts.cli import app

    data = tmp_path / "cluster"
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump({
        "run": RUN,
        "nats": {"embedded": 3, "data_dir": str(data), "port": _three_free(),
                 "route_port": _three_free(), "http_port": _three_free()},
        "replicas": 3,
        "min_version": "0.2.0",
        "max_model_lag": 3,
        "nodes": [{"name": "a1", "roles": ["selfplay", "eval"]}],
    }))
    runner = CliRunner()
    out = runner.invoke(app, ["cluster", "credentials", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    creds = data / "credentials"
    for login in (*credentials.ROLES, credentials.node_user("a1")):
        path = credentials.role_file(creds, login)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((creds / credentials.INCLUDE_FILE).stat().st_mode) == 0o600
    try:
        up = runner.invoke(app, ["cluster", "up", "--config", str(cfg)])
        assert up.exit_code == 0, up.output
        status = runner.invoke(app, ["cluster", "status", "--config", str(cfg), "--json"])
        assert status.exit_code == 0, status.output
        report = json.loads(status.output)
        assert [s["healthy"] for s in report["servers"]] == [True, True, True]
        events = {s["stream"]: s for s in report["streams"]}[names.EVENTS]
        assert events["replicas"] == 3 and events["leader"] in {"n1", "n2", "n3"}
        assert len(events["followers"]) == 2
        # cluster up recorded the config's policy; no singleton role is held (no agent runs)
        assert "policy recorded: min_version 0.2.0, max_model_lag 3" in up.output
        assert report["policy"] == {"min_version": "0.2.0", "max_model_lag": 3, "by": "cluster up"}
        assert report["leases"] == []
        text = runner.invoke(app, ["cluster", "status", "--config", str(cfg)]).output
        assert "policy: min_version 0.2.0, max_model_lag 3 (by cluster up)" in text
        assert "leases: 0 held" in text
        config = load_cluster_config(cfg)

        async def node_login():  # the node's own login works on the servers started
            conn = await connect(config.settings_for(credentials.node_user("a1")), ensure=False,
                                 long_lived=False)
            game = GameFinished.new(RUN, game_id="g", game="tictactoe", moves=[0], outcome=0,
                                    model_id="m0")
            try:
                return await EventStore(conn).append(game)
            finally:
                await conn.close()
        assert asyncio.run(node_login()) > 0
        servers = LocalCluster(config.nats)
        servers.kill(1)  # the orchestrator's round starts it again on its store
        asyncio.run(orchestrate(cfg, interval=0.01, rounds=1))
        servers.wait_healthy([1], timeout=20)
    finally:
        down = runner.invoke(app, ["cluster", "down", "--config", str(cfg)])
    assert down.exit_code == 0, down.output
    assert not any(s.running() for s in LocalCluster(config.nats).servers)


def _three_free() -> int:
    """A first port whose next two are free too (consecutive ports for a config file)."""
    while True:
        first = free_port()
        if first < 65000 and all(_is_free(first + i) for i in range(3)):
            return first


def _is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False

"""Node agents on a real 3-server JetStream cluster (R3, per-role permissions on), tic-tac-toe
with tiny nets: agents on different servers play and evaluate; a promotion reaches every agent,
which switches after verifying the digest; a corrupt champion is refused and the agents keep
their model until ``heal`` resyncs them once it is repaired; an agent below ``min_version`` is
refused at join; a restarted agent publishes nothing twice; the cluster view and
``sync_report`` say who plays what."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec
import pytest

from engine.checkpoint import make_meta, save_checkpoint
from engine.games import get_game
from engine.network import build_network
from engine.openings import openings_for
from handlers.cluster.agent import Agent, AgentOptions, run_agent
from handlers.cluster.heal import REFUSED, RESYNCED, UNREACHABLE, heal
from handlers.cluster.nodes import live_nodes
from handlers.cluster.policy import record_policy
from handlers.cluster.sync_report import sync_report
from handlers.loop.checkpoints import create_initial_model, publish_checkpoint
from handlers.loop.config import load_in_force
from handlers.promotion.evaluator import work_units
from handlers.runtime.service import ServiceContext
from projections.cluster_view import ClusterViewProjection, lag
from projections.loop_status import LoopStatusProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.cluster_events import NodeModelRefused, NodeModelSynced, NodeRefused
from streams.connection import connect
from streams.errors import AgentRefused
from streams.games import GameFinished
from streams.objects import put_object
from streams.store import EventStore
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "ag"
GAME = get_game("tictactoe")


async def events_of(store: EventStore, stream: str, kind: type, subject: str | None = None) -> list[Any]:
    subject = subject or names.run_filter(stream, RUN)
    return [s.event async for s in store.read(stream, subject_filter=subject) if isinstance(s.event, kind)]


async def save_model(store: EventStore, config, generation: int) -> tuple[str, str, bytes]:
    """A tiny net of ``generation`` (seeded by it) stored and recorded: (id, object name, bytes)."""
    model_id = f"{RUN}-gen{generation}"
    net = build_network(GAME, config.network, seed=generation)
    data = save_checkpoint(net, make_meta(net, game=GAME, model_id=model_id, generation=generation,
                                          created=0.0))
    published = await publish_checkpoint(store, RUN, data, event_id=f"ckpt-{generation}", model_id=model_id,
                                         generation=generation, game=GAME.name, parent_model=f"{RUN}-gen0",
                                         architecture=msgspec.to_builtins(net.config))
    assert published is not None
    return model_id, published.event.object_name, data


async def promote(store: EventStore, model_id: str, generation: int) -> None:
    await store.append(ev.CandidatePromoted.new(RUN, model_id=model_id, generation=generation))


class Agents:
    """Agents running in this process, each on its own connection (its node's login)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.running: dict[str, tuple[asyncio.Task, asyncio.Event]] = {}

    def start(self, name: str, server: int) -> None:
        settings = self.cluster.settings_for(f"node-{name}", url=self.cluster.urls[server])
        stop = asyncio.Event()
        options = AgentOptions(name=name, roles=("selfplay", "eval"))
        task = asyncio.create_task(run_agent(settings, RUN, options, stop=stop))
        self.running[name] = (task, stop)

    async def stop(self, name: str) -> None:
        task, stop = self.running.pop(name)
        stop.set()
        await asyncio.wait_for(task, 40)

    async def stop_all(self) -> None:
        for name in list(self.running):
            await self.stop(name)


@pytest.mark.cluster_nodes({"a1": ["selfplay", "eval"], "a2": ["selfplay", "eval"],
                            "old": ["selfplay"]})
async def test_agents_play_evaluate_follow_promotions_refuse_corrupt_models_and_are_healed(
        nats_cluster, tmp_path):
    admin = await connect(nats_cluster.settings_for("admin"), name="test-admin", ensure=False)
    operator = await connect(nats_cluster.settings_for("operator"), name="test-operator", ensure=False)
    store, ops = EventStore(admin), EventStore(operator)
    agents = Agents(nats_cluster)
    try:
        path, _ = write_tiny_loop(nats_cluster.settings_for("admin"), tmp_path, RUN)
        in_force = load_in_force(path)
        config = in_force.loop
        await store.append(ev.LoopStarted.new(RUN, by="test", **in_force.started_fields()))
        await record_policy(store, RUN, min_version="0.1.0", max_model_lag=1, by="test")
        registry = ProjectionRunner(store, ModelRegistryProjection(), RUN)
        await registry.follow()
        gen0 = await create_initial_model(store, RUN, config, registry)
        await registry.stop()

        # two agents, each connected to another server, each on its own node login
        agents.start("a1", 0)
        agents.start("a2", 1)

        async def games_by() -> Counter:
            return Counter((g.worker, g.model_id) for g in await events_of(store, names.GAMES, GameFinished))

        await until(lambda: _has(games_by, {("a1-selfplay", gen0), ("a2-selfplay", gen0)}), 60,
                    "games of both agents")
        # evaluation work: a match of the champion against random, taken from WORK by the agents
        scheduled = ev.MatchScheduled.new(
            RUN, match_id="m1", candidate=ev.PlayerSpec(kind="model", model_id=gen0, simulations=4),
            opponent=ev.PlayerSpec(kind="random"), purpose="reference", max_pairs=6, pairs_per_unit=1)
        await store.append(scheduled)
        for unit in work_units(scheduled, GAME.name, openings_for(GAME)):
            await store.append(unit)

        async def pairs() -> list[ev.MatchPairPlayed]:
            return await events_of(store, names.EVENTS, ev.MatchPairPlayed)

        played = await until(lambda: _enough(pairs, 6), 60, "six pairs played")
        assert sorted(p.pair_index for p in played) == list(range(6))  # each pair once
        assert {p.worker for p in played} <= {"a1-eval", "a2-eval"}

        statuses = await until(lambda: _all_on(admin, {"a1", "a2"}, gen0), 20, "both statuses on gen0")
        assert all(s.software_version and s.config_sha256 == in_force.loop_sha256 for s in statuses.values())

        # a promotion reaches both agents; each verifies and switches between games
        gen1, _, _ = await save_model(store, config, 1)
        await promote(store, gen1, 1)
        report = await sync_report(ops, RUN, timeout=30)
        assert report is not None and report.complete, report
        assert [n.node for n in report.switched] == ["a1", "a2"] and report.model_id == gen1
        synced = await events_of(store, names.EVENTS, NodeModelSynced)
        promoted = {(e.node, e.model_id) for e in synced if e.trigger == "promotion"}
        assert promoted == {("a1", gen1), ("a2", gen1)}
        await until(lambda: _has(games_by, {("a1-selfplay", gen1), ("a2-selfplay", gen1)}), 60,
                    "games of the new champion from both agents")

        # a champion whose stored bytes are not what checkpoint.saved recorded is refused
        gen2, object_name, good = await save_model(store, config, 2)
        await put_object(admin, names.OBJ_MODELS, object_name, good[:-16] + b"x" * 16)
        await promote(store, gen2, 2)

        async def refusals() -> set[str]:
            return {e.node for e in await events_of(store, names.EVENTS, NodeModelRefused)
                    if e.model_id == gen2}

        await until(lambda: _equal(refusals, {"a1", "a2"}), 30, "both agents refusing the corrupt model")
        lagging = await sync_report(ops, RUN, timeout=0.5)
        assert lagging is not None and {n.node: (n.model_id, n.lag) for n in lagging.lagging} == {
            "a1": (gen1, 1), "a2": (gen1, 1)}
        assert {m for (_, m) in (await games_by())} <= {gen0, gen1}  # nothing played by gen2

        # heal while still corrupt: the agents answer, refuse again, keep gen1
        still = await heal(ops, RUN, timeout=20)
        assert {a.node: a.outcome for a in still.actions} == {"a1": REFUSED, "a2": REFUSED}
        # repaired: heal resyncs both, and the report says so
        await put_object(admin, names.OBJ_MODELS, object_name, good)
        healed = await heal(ops, RUN, timeout=20)
        assert {a.node: (a.outcome, a.model_after) for a in healed.actions} == {
            "a1": (RESYNCED, gen2), "a2": (RESYNCED, gen2)}
        assert any("resynced    a1" in line for line in healed.lines())
        await until(lambda: _all_on(admin, {"a1", "a2"}, gen2), 20, "both statuses on gen2")

        # an agent on an old software version is refused at join, with the version it needs
        old = await connect(nats_cluster.settings_for("node-old"), name="old", ensure=False)
        try:
            status = ProjectionRunner(EventStore(old), LoopStatusProjection(), RUN, use_snapshots=False)
            ctx = ServiceContext("agent-old", RUN, old, EventStore(old), status, asyncio.Event())
            options = AgentOptions(name="old", roles=("selfplay",), software_version="0.0.9")
            needed = r"0\.0\.9 .*below.* min_version 0\.1\.0.*install jetzero 0\.1\.0"
            with pytest.raises(AgentRefused, match=needed):
                await Agent(ctx, options).run()
        finally:
            await old.close()
        [refused] = await events_of(store, names.EVENTS, NodeRefused)
        assert (refused.node, refused.software_version, refused.min_version) == ("old", "0.0.9", "0.1.0")

        # a restarted agent publishes nothing twice: no second sync for the same champion,
        # a new join (a new session), every pair and game once
        await agents.stop("a1")
        agents.start("a1", 2)
        await until(lambda: _joins(store, "a1", 2), 60, "a1 joined again")
        await until(lambda: _has(games_by, {("a1-selfplay", gen2)}), 60, "a1 playing gen2 again")
        await agents.stop_all()

        synced = await events_of(store, names.EVENTS, NodeModelSynced)
        keys = Counter((e.node, e.model_id, e.causation_id) for e in synced)
        assert max(keys.values()) == 1 and keys[("a1", gen2, "")] == 0  # gen2 came by the heal only
        assert len({e.id for e in synced}) == len(synced)
        games = await events_of(store, names.GAMES, GameFinished)
        assert len({g.game_id for g in games}) == len(games)
        left = await events_of(store, names.EVENTS, ev.NodeLeft)
        assert Counter(e.node for e in left) == {"a1": 2, "a2": 1}
        assert await live_nodes(admin, RUN) == {}  # the statuses are removed on leaving

        view = await ProjectionRunner(store, ClusterViewProjection(), RUN, use_snapshots=False).catch_up()
        assert view.champion == gen2 and view.max_model_lag == 1 and view.min_version == "0.1.0"
        for name in ("a1", "a2"):
            node = view.nodes[name]
            assert node.model_id == gen2 and lag(view, node) == 0 and node.left
            assert node.config_sha256 == in_force.loop_sha256 and node.software_version
        assert view.nodes["old"].refusals == 1 and "0.1.0" in view.nodes["old"].refused_join
        # nobody live: heal has nothing to do and says so; the joined-but-gone are not unreachable
        nobody = await heal(ops, RUN, timeout=1)
        assert not nobody.of(UNREACHABLE) and nobody.lines()[0].startswith("heal: no node agents")
    finally:
        await agents.stop_all()
        await operator.close()
        await admin.close()


async def _has(probe, wanted: set) -> bool:
    return wanted <= set(await probe())


async def _enough(probe, n: int):
    found = await probe()
    return found if len(found) >= n else None


async def _equal(probe, wanted) -> bool:
    return await probe() == wanted


async def _all_on(log, nodes: set[str], model_id: str):
    live = await live_nodes(log, RUN)
    if set(live) == nodes and all(s.model_id == model_id for s in live.values()):
        return live
    return None


async def _joins(store: EventStore, node: str, n: int) -> bool:
    subject = names.subject(names.EVENTS, RUN, names.node_aggregate(node), "node.joined")
    return len(await events_of(store, names.EVENTS, ev.NodeJoined, subject)) >= n


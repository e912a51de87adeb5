"""A node agent with the train and sync roles on the 3-server cluster (R3, permissions on):
it takes both singleton leases, syncs its own selfplay games into pool batches and trains
checkpoints from them, and every pool batch and checkpoint it writes carries the fence of the
role it holds (checked from the log: ``role.taken``, ``pool.batch_synced``,
``training.started``, ``checkpoint.saved``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handlers.cluster.agent import AgentOptions, run_agent
from handlers.cluster.leases import held_roles
from streams import events as ev
from streams import names
from streams.cluster_events import RoleTaken
from streams.connection import connect
from streams.store import EventStore
from tests.loop_configs import start_tiny_run
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "trains"
NODE = "t1"


async def _events(store: EventStore) -> list[Any]:
    subjects = names.run_filter(names.EVENTS, RUN)
    return [s.event async for s in store.read(names.EVENTS, subject_filter=subjects)]


def _trainers_writes(events: list[Any]) -> list[Any]:
    """What the trainer wrote: training runs and checkpoints (not the initial model's)."""
    return [e for e in events if isinstance(e, ev.TrainingStarted)
            or (isinstance(e, ev.CheckpointSaved) and e.source != "initial")]


async def _trained(store: EventStore) -> list[Any] | None:
    events = await _events(store)
    done = any(isinstance(e, ev.CheckpointSaved) for e in _trainers_writes(events)) and \
        any(isinstance(e, ev.PoolBatchSynced) for e in events)
    return events if done else None


@pytest.mark.cluster_nodes({NODE: ["selfplay", "train", "sync"]})
async def test_an_agent_holding_train_and_sync_writes_batches_and_checkpoints_under_their_fences(
        nats_cluster, tmp_path):
    admin = await connect(nats_cluster.settings_for("admin"), name="test-admin", ensure=False)
    store = EventStore(admin)
    stop = asyncio.Event()
    agent = None
    try:
        await start_tiny_run(store, nats_cluster.settings_for("admin"), tmp_path, RUN)
        agent = asyncio.create_task(run_agent(nats_cluster.settings_for(f"node-{NODE}"), RUN,
                                              AgentOptions(name=NODE, roles=("selfplay", "train", "sync")),
                                              stop=stop))
        events = await until(lambda: _trained(store), 120, "a pool batch and a checkpoint")
        held = {h.role: h for h in await held_roles(store, RUN)}
        assert {role: h.node for role, h in held.items()} == {"trainer": NODE, "sync": NODE}
    finally:
        stop.set()
        if agent is not None:
            await asyncio.wait_for(agent, 40)
        await admin.close()

    taken = {e.role: e for e in events if isinstance(e, RoleTaken)}
    assert {role: t.node for role, t in taken.items()} == {"trainer": NODE, "sync": NODE}
    assert all(t.fence > 0 for t in taken.values())
    assert held["trainer"].fence == taken["trainer"].fence and held["sync"].fence == taken["sync"].fence
    batches = [e for e in events if isinstance(e, ev.PoolBatchSynced)]
    trained = _trainers_writes(events)
    assert batches and {b.fence for b in batches} == {taken["sync"].fence}
    assert trained and {e.fence for e in trained} == {taken["trainer"].fence}

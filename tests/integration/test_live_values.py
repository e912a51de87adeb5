"""Listing the live entries of a TTL bucket (heartbeats, node statuses) while they are being
replaced: every listing holds every key, on a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from handlers.cluster.nodes import NodeStatus, drop_status, live_nodes, put_status
from streams import names
from streams.kv import Heartbeat, alive_nodes, beat, live_values, put_value

pytestmark = pytest.mark.integration

NODES = 3
LISTINGS = 300  # nats-py's kv.keys() came back short in ~2% of such listings


async def test_every_listing_holds_every_busy_heartbeat(log):
    stop = asyncio.Event()
    written = [0] * NODES

    async def keep_beating(i: int) -> None:
        while not stop.is_set():
            await beat(log, "r", Heartbeat(node=f"n{i}", host="h", roles=["selfplay"]))
            written[i] += 1

    await asyncio.gather(*(beat(log, "r", Heartbeat(node=f"n{i}", host="h", roles=[])) for i in range(NODES)))
    writers = [asyncio.create_task(keep_beating(i)) for i in range(NODES)]
    try:
        counts = [len(await alive_nodes(log, "r")) for _ in range(LISTINGS)]
    finally:
        stop.set()
        await asyncio.gather(*writers)
    assert min(written) > 10, "the heartbeats were not replaced while they were listed"
    assert counts == [NODES] * LISTINGS
    assert await alive_nodes(log, "other-run") == []


async def test_deleted_and_foreign_values_are_left_out(log):
    await put_status(log, "r", NodeStatus(node="a"))
    await put_status(log, "r", NodeStatus(node="b"))
    await put_status(log, "r2", NodeStatus(node="c"))
    await drop_status(log, "r", "b")
    await put_value(log, names.KV_NODES, names.node_key("r", "junk"), b"\x00not msgpack")
    assert set(await live_nodes(log, "r")) == {"a"}
    assert [s.node for s in await live_values(log, names.KV_NODES, "r2", NodeStatus)] == ["c"]

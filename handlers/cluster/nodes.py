"""What a node agent says about itself: its status in the nodes KV (a heartbeat with a TTL),
the software version it runs, and reading every live node back.

The status is a cache of the present (who is alive, at what rate): the facts that matter later
(joined, left, which model it switched to, refused) are events (``streams.cluster_events``).
"""

from __future__ import annotations

import importlib.metadata
import time

import msgspec

from handlers.cluster.config import version_tuple
from streams import names
from streams.connection import Log
from streams.kv import live_values, put_value

__all__ = ["NodeStatus", "drop_status", "live_nodes", "put_status", "software_version", "version_below"]

PACKAGE = "jetzero"


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One agent's heartbeat in ``names.KV_NODES`` (key ``names.node_key(run, node)``)."""

    node: str
    host: str = ""
    session: str = ""  # the node.joined this agent process recorded
    roles: list[str] = []
    model_id: str = ""  # the model its selfplay games are played by from now on
    model_digest: str = ""
    generation: int = 0
    software_version: str = ""
    config_sha256: str = ""  # the loop config in force it runs on
    games_per_s: float = 0.0  # selfplay games published per second (since its worker started)
    evals_per_s: float = 0.0  # evaluation match games per second (last minute)
    games: int = 0
    match_pairs: int = 0
    state: str = "running"  # running | paused (loop halted) | waiting (no config / champion yet)
    time: float = 0.0


def software_version() -> str:
    """jetzero's package version here (``0.0.0`` if it is not installed as a package)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def version_below(version: str, minimum: str) -> bool:
    """True if ``version`` is older than ``minimum`` (dotted numbers; an unreadable version is
    older than any)."""
    try:
        have = version_tuple(version)
    except ValueError:
        return True
    return have < version_tuple(minimum)


async def put_status(log: Log, run: str, status: NodeStatus) -> None:
    stamped = msgspec.structs.replace(status, time=time.time())
    await put_value(log, names.KV_NODES, names.node_key(run, status.node), msgspec.msgpack.encode(stamped))


async def live_nodes(log: Log, run: str) -> dict[str, NodeStatus]:
    """Every node of ``run`` whose status has not expired, by name."""
    return {status.node: status for status in await live_values(log, names.KV_NODES, run, NodeStatus)}


async def drop_status(log: Log, run: str, node: str) -> None:
    """Remove a node's status (it left); one that cannot be removed expires with the TTL."""
    kv = await log.js.key_value(names.KV_NODES)
    await kv.delete(names.node_key(run, node))

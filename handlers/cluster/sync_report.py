"""After a promotion or a rollback: which node agents play the new champion, and which lag.

``sync_report`` reads the live agents' statuses (the nodes KV) until every one reports the
target model or ``timeout`` passes; None when no agent is registered (a single-machine loop
says nothing). ``jetzero promotion candidate | promote | rollback --wait-nodes SECONDS`` and
``model_promotion_manager.py`` print its lines (the guide's "cluster sync").
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from handlers.cluster.nodes import NodeStatus, live_nodes
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams.store import EventStore

__all__ = ["NodeSync", "SyncReport", "sync_report"]


class NodeSync(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    model_id: str
    generation: int = 0
    lag: int = 0  # generations behind the target (0 when it plays it)


class SyncReport(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    generation: int = 0
    switched: list[NodeSync] = []
    lagging: list[NodeSync] = []
    waited_s: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.lagging

    def lines(self) -> list[str]:
        total = len(self.switched) + len(self.lagging)
        out = [f"cluster sync: {len(self.switched)} of {total} nodes play {self.model_id} "
               f"(after {self.waited_s:.1f} s)"]
        out += [f"  switched  {n.node}" for n in self.switched]
        out += [f"  lagging   {n.node}: plays {n.model_id or 'no model'} ({n.lag} generation"
                f"{'' if n.lag == 1 else 's'} behind)" for n in self.lagging]
        return out


def _report(model_id: str, generation: int, nodes: dict[str, NodeStatus], waited: float) -> SyncReport:
    switched: list[NodeSync] = []
    lagging: list[NodeSync] = []
    for status in sorted(nodes.values(), key=lambda s: s.node):
        row = NodeSync(node=status.node, model_id=status.model_id, generation=status.generation,
                       lag=0 if status.model_id == model_id else max(generation - status.generation, 0))
        (switched if status.model_id == model_id else lagging).append(row)
    return SyncReport(model_id=model_id, generation=generation, switched=switched, lagging=lagging,
                      waited_s=waited)


async def sync_report(store: EventStore, run: str, model_id: str | None = None, *,
                      timeout: float = 10.0, poll: float = 0.5) -> SyncReport | None:
    """Wait up to ``timeout`` for every live agent to play ``model_id`` (default: the champion);
    the report then, or None when no agent is registered."""
    registry = ProjectionRunner(store, ModelRegistryProjection(), run, use_snapshots=False)
    state = await registry.catch_up()
    target = model_id or (state.champion.model_id if state.champion else "")
    record = state.models.get(target)
    generation = record.generation if record else 0
    started = time.monotonic()
    while True:
        nodes = await live_nodes(store.log, run)
        if not nodes:
            return None
        waited = time.monotonic() - started
        report = _report(target, generation, nodes, waited)
        if report.complete or waited >= timeout:
            return report
        await asyncio.sleep(poll)  # polling the nodes KV at a fixed pace, until the deadline

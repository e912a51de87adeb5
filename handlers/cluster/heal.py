"""Healing version skew: lagging node agents are told to resync; the unreachable are reported.

``heal`` compares every live agent's model (the nodes KV) with the champion, sends each one
that plays another model a ``command.node_resync`` addressed to it alone, and waits up to
``timeout`` for the ``node.model_synced`` / ``node.model_refused`` the command causes. Agents
that joined and never left but have no live status, and lagging ones that do not answer in
time, are unreachable: ``restart_unreachable`` is the boundary where their launch method
(``config/cluster.yaml``: ssh or managed) takes over. ``jetzero cluster heal`` prints the
report's lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import msgspec

from handlers.cluster.config import Launch
from handlers.cluster.nodes import live_nodes
from projections.cluster_view import ClusterViewProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import names
from streams.cluster_events import NodeModelRefused, NodeModelSynced
from streams.commands import NodeResync
from streams.store import EventStore

__all__ = ["HealAction", "HealReport", "heal", "restart_unreachable"]

RESYNCED, REFUSED, UNREACHABLE, IN_STEP = "resynced", "refused", "unreachable", "in step"


class HealAction(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    outcome: str  # resynced | refused | unreachable | in step
    model_before: str = ""
    model_after: str = ""
    detail: str = ""


class HealReport(msgspec.Struct, frozen=True, kw_only=True):
    champion: str
    actions: list[HealAction] = []

    def of(self, outcome: str) -> list[HealAction]:
        return [a for a in self.actions if a.outcome == outcome]

    def lines(self) -> list[str]:
        if not self.actions:
            return [f"heal: no node agents (champion {self.champion or 'none'})"]
        out = [f"heal: champion {self.champion}; " + ", ".join(
            f"{len(self.of(o))} {o}" for o in (IN_STEP, RESYNCED, REFUSED, UNREACHABLE) if self.of(o))]
        for a in self.actions:
            if a.outcome == IN_STEP:
                continue
            move = f"{a.model_before or 'no model'} -> {a.model_after}" if a.outcome == RESYNCED else ""
            out.append(f"  {a.outcome:<11} {a.node}" + (f": {move}" if move else "")
                       + (f" ({a.detail})" if a.detail else ""))
        return out


async def _answers(store: EventStore, run: str, commands: dict[str, NodeResync], start_seq: int,
                   timeout: float) -> dict[str, NodeModelSynced | NodeModelRefused]:
    """The node events each command caused, read from ``start_seq`` on, until all or timeout."""
    wanted = {c.id: node for node, c in commands.items()}
    got: dict[str, NodeModelSynced | NodeModelRefused] = {}

    async def collect() -> None:
        subjects = names.tag_filter(names.EVENTS, run, f"{names.NODE_EVENT_PREFIX}>")
        async for stored in store.read(names.EVENTS, subject_filter=subjects, start_seq=start_seq,
                                       follow=True):
            event = stored.event
            if isinstance(event, NodeModelSynced | NodeModelRefused) and event.causation_id in wanted:
                got[wanted[event.causation_id]] = event
                if len(got) == len(wanted):
                    return

    if commands:
        try:
            await asyncio.wait_for(collect(), timeout)
        except TimeoutError:
            pass
    return got


async def heal(store: EventStore, run: str, *, timeout: float = 10.0, by: str = "cluster heal") -> HealReport:
    """Resync every live agent that plays another model than the champion; report each node."""
    registry = await ProjectionRunner(store, ModelRegistryProjection(), run, use_snapshots=False).catch_up()
    view = await ProjectionRunner(store, ClusterViewProjection(), run, use_snapshots=False).catch_up()
    champion = registry.champion.model_id if registry.champion else ""
    live = await live_nodes(store.log, run)
    actions: list[HealAction] = []
    for name, node in sorted(view.nodes.items()):
        if node.session and not node.left and name not in live:
            actions.append(HealAction(node=name, outcome=UNREACHABLE, model_before=node.model_id,
                                      detail="joined, no live status (heartbeat expired)"))
    lagging = {name: s for name, s in live.items() if champion and s.model_id != champion}
    actions += [HealAction(node=name, outcome=IN_STEP, model_before=s.model_id, model_after=s.model_id)
                for name, s in sorted(live.items()) if name not in lagging]
    start = await store.last_seq(names.EVENTS) + 1
    commands = {name: NodeResync.new(run, node=name, by=by, reason=f"plays {s.model_id or 'no model'}, "
                                     f"champion is {champion}") for name, s in lagging.items()}
    for command in commands.values():
        await store.append(command)
    answers = await _answers(store, run, commands, start, timeout)
    for name in sorted(lagging):
        before = lagging[name].model_id
        answer = answers.get(name)
        if isinstance(answer, NodeModelSynced):
            actions.append(HealAction(node=name, outcome=RESYNCED, model_before=before,
                                      model_after=answer.model_id))
        elif isinstance(answer, NodeModelRefused):
            actions.append(HealAction(node=name, outcome=REFUSED, model_before=before,
                                      detail=answer.reason))
        else:
            actions.append(HealAction(node=name, outcome=UNREACHABLE, model_before=before,
                                      detail=f"no answer to node_resync in {timeout:.0f} s"))
    return HealReport(champion=champion, actions=sorted(actions, key=lambda a: a.node))


Restart = Callable[[str, Launch], Awaitable[str]]


async def restart_unreachable(report: HealReport, launches: Mapping[str, Launch],
                              restart: Restart | None = None) -> list[str]:
    """Restart the unreachable nodes over their launch method; a line for each.

    ``launches``: node name → its ``Launch`` (``config/cluster.yaml``). ``restart(node,
    launch)`` does it (over ssh: the orchestrator's launcher) and says what it did; without
    one, or for a ``managed`` node (systemd / Kubernetes restart it), the line says who must.
    """
    lines = []
    for action in report.of(UNREACHABLE):
        launch = launches.get(action.node)
        if launch is None:
            lines.append(f"  {action.node}: not in the cluster config; restart its agent on its machine")
        elif launch.method == "managed":
            lines.append(f"  {action.node}: managed (systemd / Kubernetes restarts it)")
        elif restart is None:
            lines.append(f"  {action.node}: launch method {launch.method}: no launcher given here")
        else:
            lines.append(f"  {action.node}: {await restart(action.node, launch)}")
    return lines

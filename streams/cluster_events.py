"""Events of the cluster surface (``handlers/cluster``) on the ``EVENTS`` stream.

Every event a node agent writes is tagged ``node.*`` and lives on its node's aggregate
(``names.node_aggregate``), so one permission rule covers them. ``cluster.policy_set`` records
what agents and the training window obey (from ``config/cluster.yaml``): the lowest software
version allowed to join, and how many generations behind the champion a model may play
before its games are kept out of the training window. New fields get defaults.
"""

from __future__ import annotations

from streams import names
from streams.envelope import Event


class ClusterPolicySet(Event, frozen=True, kw_only=True, tag="cluster.policy_set"):
    min_version: str = "0.0.0"
    max_model_lag: int = -1  # -1: no limit
    by: str = ""

    def aggregate(self) -> str:
        return names.AGG_CLUSTER


class _NodeEvent(Event, frozen=True, kw_only=True):
    node: str

    def aggregate(self) -> str:
        return names.node_aggregate(self.node)


class NodeModelSynced(_NodeEvent, frozen=True, kw_only=True, tag="node.model_synced"):
    """The node pulled ``model_id``, verified its digest and plays it from its next game."""

    model_id: str
    digest: str = ""
    generation: int = 0
    previous_model: str = ""
    trigger: str = ""  # join | promotion | rollback | resync


class NodeModelRefused(_NodeEvent, frozen=True, kw_only=True, tag="node.model_refused"):
    """The node would not switch to ``model_id`` (its bytes fail the digest, or are missing)."""

    model_id: str
    reason: str
    kept_model: str = ""
    trigger: str = ""


class NodeRefused(_NodeEvent, frozen=True, kw_only=True, tag="node.refused"):
    """An agent refused at join: its software is older than the cluster's ``min_version``."""

    software_version: str
    min_version: str
    host: str = ""
    roles: list[str] = []
    reason: str = ""


class RoleTaken(Event, frozen=True, kw_only=True, tag="role.taken"):
    """``owner`` holds the singleton ``role`` (its lease in the locks KV) from here on, under
    ``fence`` (the lease's revision at creation). Its fenced appends expect this event to be
    the last of the role's aggregate: a later taking makes them fail (``handlers.cluster.leases``)."""

    role: str
    owner: str
    fence: int
    node: str = ""
    ttl_s: float = 0.0
    previous_owner: str = ""  # the role's holder before (its last role.taken)

    def aggregate(self) -> str:
        return names.role_aggregate(self.role)


class FenceRefused(Event, frozen=True, kw_only=True, tag="role.fence_refused"):
    """A write under a stale fence was refused (``refused_tag`` / ``refused_id`` never landed
    as a decision): its holder had lost ``role`` to the holder of ``current_fence``."""

    role: str
    fence: int
    current_fence: int
    owner: str = ""
    refused_tag: str = ""
    refused_id: str = ""
    by: str = ""  # who refused it: the stale holder's own fenced append, or a decision

    def aggregate(self) -> str:
        return names.role_refusals_aggregate(self.role)


ClusterEvent = (ClusterPolicySet | NodeModelSynced | NodeModelRefused | NodeRefused | RoleTaken
                | FenceRefused)

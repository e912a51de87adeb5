"""Cluster view: every node agent of a run with its model, software version, config and lag.

Rules of the fold:

- ``node.joined`` puts a node in the view (a rejoin replaces its session, version, config
  and model); ``node.left`` marks it gone (kept, with why);
- ``node.model_synced`` sets the model it plays; ``node.model_refused`` notes the model it
  would not take (cleared by its next sync);
- ``node.refused`` records an agent refused at join (below ``min_version``), with why;
- ``checkpoint.saved`` gives each model's generation; ``candidate.promoted`` and
  ``champion.rolled_back`` the champion; ``cluster.policy_set`` the ``min_version`` and
  ``max_model_lag`` in force.

:func:`lag` is how many generations a node's model is behind the champion, and
:func:`skewed` lists the nodes past ``max_model_lag`` or on another config than the
newest one seen. Live figures (throughput, last beat) are in the nodes KV, not here.
"""

from __future__ import annotations

from functools import cached_property

import msgspec

from projections import persistent
from projections.base import BaseProjection
from streams import events as ev
from streams.cluster_events import ClusterPolicySet, NodeModelRefused, NodeModelSynced, NodeRefused

__all__ = ["ClusterView", "ClusterViewProjection", "NodeView", "lag", "skewed"]


class NodeView(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    host: str = ""
    roles: tuple[str, ...] = ()
    session: str = ""
    software_version: str = ""
    config_sha256: str = ""
    model_id: str = ""
    generation: int = 0
    joined_at: float = 0.0
    left: bool = False
    left_reason: str = ""
    refused_model: str = ""  # the last model it would not take, until it syncs again
    refused_reason: str = ""
    refusals: int = 0  # joins refused for its software version
    refused_join: str = ""  # why the latest join was refused


class ClusterView(msgspec.Struct, frozen=True, kw_only=True, dict=True, forbid_unknown_fields=True):
    node_levels: persistent.Levels[str, NodeView] = ()
    generation_levels: persistent.Levels[str, int] = ()  # model id -> generation
    champion: str = ""
    champion_generation: int = 0
    min_version: str = "0.0.0"
    max_model_lag: int = -1  # -1: no limit
    last_config: str = ""  # the config digest of the newest join

    @cached_property
    def nodes(self) -> dict[str, NodeView]:
        return persistent.merged(self.node_levels)

    def generation(self, model_id: str) -> int | None:
        return persistent.get(self.generation_levels, model_id)


def lag(view: ClusterView, node: NodeView) -> int:
    """Generations ``node``'s model is behind the champion (0 when it plays it or is ahead)."""
    if not node.model_id or node.model_id == view.champion:
        return 0
    return max(view.champion_generation - node.generation, 0)


def skewed(view: ClusterView) -> list[NodeView]:
    """Present nodes past ``max_model_lag`` or on a config other than the newest join's."""
    out = []
    for node in view.nodes.values():
        if node.left or not node.session:  # gone, or never joined (refused at join)
            continue
        too_far = view.max_model_lag >= 0 and lag(view, node) > view.max_model_lag
        if too_far or (view.last_config and node.config_sha256 != view.last_config):
            out.append(node)
    return out


class ClusterViewProjection(BaseProjection[ClusterView]):
    name = "cluster_view"
    version = 1
    state_type = ClusterView

    def initial(self) -> ClusterView:
        return ClusterView()

    def _node(self, s: ClusterView, name: str) -> NodeView:
        return persistent.get(s.node_levels, name) or NodeView(node=name)

    def _put(self, s: ClusterView, node: NodeView, **changes) -> ClusterView:
        levels = persistent.put(s.node_levels, node.node, node)
        return msgspec.structs.replace(s, **changes, node_levels=levels)

    def on_node_joined(self, s: ClusterView, e: ev.NodeJoined) -> ClusterView:
        node = msgspec.structs.replace(
            self._node(s, e.node), host=e.host, roles=tuple(e.roles), session=e.session,
            software_version=e.software_version, config_sha256=e.config_sha256,
            model_id=e.model_id, generation=s.generation(e.model_id) or 0, joined_at=e.time,
            left=False, left_reason="")
        return self._put(s, node, last_config=e.config_sha256 or s.last_config)

    def on_node_left(self, s: ClusterView, e: ev.NodeLeft) -> ClusterView:
        return self._put(s, msgspec.structs.replace(self._node(s, e.node), left=True, left_reason=e.reason))

    def on_node_model_synced(self, s: ClusterView, e: NodeModelSynced) -> ClusterView:
        node = msgspec.structs.replace(self._node(s, e.node), model_id=e.model_id, generation=e.generation,
                                       refused_model="", refused_reason="")
        return self._put(s, node)

    def on_node_model_refused(self, s: ClusterView, e: NodeModelRefused) -> ClusterView:
        node = msgspec.structs.replace(self._node(s, e.node), refused_model=e.model_id,
                                       refused_reason=e.reason)
        return self._put(s, node)

    def on_node_refused(self, s: ClusterView, e: NodeRefused) -> ClusterView:
        old = self._node(s, e.node)
        node = msgspec.structs.replace(old, software_version=old.software_version or e.software_version,
                                       refusals=old.refusals + 1, refused_join=e.reason)
        return self._put(s, node)

    def on_checkpoint_saved(self, s: ClusterView, e: ev.CheckpointSaved) -> ClusterView:
        generations = persistent.put(s.generation_levels, e.model_id, e.generation)
        if not s.champion and e.generation == 0:  # the first model is the first champion (registry)
            return msgspec.structs.replace(s, generation_levels=generations, champion=e.model_id)
        return msgspec.structs.replace(s, generation_levels=generations)

    def on_candidate_promoted(self, s: ClusterView, e: ev.CandidatePromoted) -> ClusterView:
        generation = e.generation or s.generation(e.model_id) or 0
        return msgspec.structs.replace(s, champion=e.model_id, champion_generation=generation)

    def on_champion_rolled_back(self, s: ClusterView, e: ev.ChampionRolledBack) -> ClusterView:
        return msgspec.structs.replace(s, champion=e.model_id,
                                       champion_generation=s.generation(e.model_id) or 0)

    def on_cluster_policy_set(self, s: ClusterView, e: ClusterPolicySet) -> ClusterView:
        return msgspec.structs.replace(s, min_version=e.min_version, max_model_lag=e.max_model_lag)

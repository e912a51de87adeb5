"""The cluster's policy in the log: ``cluster.policy_set`` (min_version, max_model_lag).

Agents on other machines have no ``config/cluster.yaml``: what they obey is the latest
``cluster.policy_set`` of the run, recorded from that file by whoever runs the cluster
(``record_policy``: ``jetzero cluster heal``, and ``cluster up``). The training window reads
the same event through the pool projection.
"""

from __future__ import annotations

from streams import names
from streams.cluster_events import ClusterPolicySet
from streams.envelope import tag_of
from streams.store import EventStore

__all__ = ["current_policy", "record_policy"]

NO_POLICY = ClusterPolicySet(id="", time=0.0, run="")


async def current_policy(store: EventStore, run: str) -> ClusterPolicySet:
    """The run's latest policy (no limits before the first is recorded)."""
    subject = names.subject(names.EVENTS, run, names.AGG_CLUSTER, tag_of(ClusterPolicySet))
    stored = await store.last(names.EVENTS, subject)
    if stored is None or not isinstance(stored.event, ClusterPolicySet):
        return NO_POLICY
    return stored.event


async def record_policy(store: EventStore, run: str, *, min_version: str, max_model_lag: int,
                        by: str = "") -> ClusterPolicySet | None:
    """Record the policy if it differs from the one in force; the new event, or None."""
    now = await current_policy(store, run)
    if now.id and (now.min_version, now.max_model_lag) == (min_version, max_model_lag):
        return None
    event = ClusterPolicySet.new(run, min_version=min_version, max_model_lag=max_model_lag, by=by)
    await store.append(event)
    return event

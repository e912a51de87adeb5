"""Model sync on one node: pull the champion from the object store, verify its digest, switch.

``ModelSync.to_champion`` is what an agent does at join, on ``candidate.promoted`` /
``champion.rolled_back`` and on ``command.node_resync``: the champion's bytes are read back
and checked against the digest its ``checkpoint.saved`` recorded (``streams.objects``); only
then does ``current`` (the model selfplay plays from its next game) change, and
``node.model_synced`` is recorded. A model that is missing, has no recorded digest, or fails
it is refused (``node.model_refused``) and the node keeps the model it has.

Event ids come from the cause: the champion decision's sequence and model (or the resync
command's id), so a retried append lands once, and a sync already recorded for the same
champion is not recorded again by a restarted agent.
"""

from __future__ import annotations

import logging
import time

from projections.models import Champion, ModelRegistry
from projections.runner import ProjectionRunner
from streams import names
from streams.cluster_events import NodeModelRefused, NodeModelSynced
from streams.commands import NodeResync
from streams.envelope import derived_id
from streams.errors import StoreError
from streams.objects import get_object
from streams.store import EventStore

__all__ = ["ModelSync", "trigger_of"]

log = logging.getLogger(__name__)


def trigger_of(registry: ModelRegistry) -> str:
    """Why the champion is what it is: its latest decision was a ``rollback`` or a ``promotion``."""
    if registry.rollbacks and registry.rollbacks[-1].seq == registry.champion_last_seq:
        return "rollback"
    return "promotion"


class ModelSync:
    """The model one node plays, switched only to a champion whose bytes check out."""

    def __init__(self, store: EventStore, run: str, node: str, registry: ProjectionRunner[ModelRegistry]):
        self.store = store
        self.run = run
        self.node = node
        self.registry = registry
        self.current: Champion | None = None
        self.digest = ""
        self.seen_seq = -1  # the champion decision last handled (switched to, or refused)

    def _subject(self, tag: str) -> str:
        return names.subject(names.EVENTS, self.run, names.node_aggregate(self.node), tag)

    async def _append_once(self, event: NodeModelSynced | NodeModelRefused) -> bool:
        """Append unless this node's last event of that type is this very one, or (a sync
        not asked by a command) says the same: a restarted agent on the model it had."""
        last = await self.store.last(names.EVENTS, self._subject(event.tag))
        before = last.event if last is not None else None
        if before is not None and getattr(before, "id", None) == event.id:
            return False
        same = isinstance(before, NodeModelSynced) and isinstance(event, NodeModelSynced) and (
            (before.model_id, before.digest) == (event.model_id, event.digest))
        if same and not event.causation_id:
            return False
        await self.store.append(event)
        return True

    async def to_champion(self, trigger: str, *, command: NodeResync | None = None) -> bool:
        """Switch to the registry's champion if its bytes verify; True if this node plays it now."""
        registry = self.registry.state
        champion, seq = registry.champion, registry.champion_last_seq
        if champion is None:
            return False
        cause = command.id if command is not None else f"{self.run}/{self.node}/{champion.model_id}@{seq}"
        handler = f"agent-sync-{self.node}"
        record = registry.models.get(champion.model_id)
        reason = ""
        if record is None:
            reason = f"model {champion.model_id} has no checkpoint.saved"
        elif not record.digest:
            reason = f"model {champion.model_id} has no recorded digest to verify it against"
        else:
            try:
                await get_object(self.store.log, names.OBJ_MODELS, record.object_name, record.digest)
            except StoreError as exc:  # corrupt, replaced, or missing (EventNotFound)
                reason = str(exc)
        common = dict(time=time.time(), run=self.run, causation_id=command.id if command else "",
                      correlation_id=command.id if command else "", node=self.node, trigger=trigger)
        if reason:
            kept = self.current.model_id if self.current else ""
            log.warning("node %s: refused %s (%s); keeps %s", self.node, champion.model_id, reason,
                        kept or "no model")
            await self._append_once(NodeModelRefused(
                id=derived_id(cause, handler, 1), model_id=champion.model_id, reason=reason,
                kept_model=kept, **common))  # type: ignore[arg-type]
            self.seen_seq = seq
            return False
        assert record is not None
        previous = self.current.model_id if self.current else ""
        self.current, self.digest = champion, record.digest
        await self._append_once(NodeModelSynced(
            id=derived_id(cause, handler, 0), model_id=champion.model_id, digest=record.digest,
            generation=champion.generation, previous_model=previous, **common))  # type: ignore[arg-type]
        self.seen_seq = seq
        if previous != champion.model_id:
            log.info("node %s: now plays %s (generation %d, %s)", self.node, champion.model_id,
                     champion.generation, trigger)
        return True


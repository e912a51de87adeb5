"""Fencing tokens of the singleton roles, as the log records them (``role.taken``).

A singleton role's holder stamps its lease's revision (its *fence*) on what it writes; each
taking of the role is a ``role.taken`` on the role's aggregate (``handlers.cluster.leases``).
An event whose fence is below the highest fence the role had been taken with *before the
event's own position in the log* was written by a holder that had already lost the role:
``stale_fence`` says so, and ``refusal`` is the ``role.fence_refused`` that records it (a
decision refuses such an event instead of acting on it). An event written before a takeover
keeps counting, however late it is read. Fence 0: not written under a lease, never stale.
"""

from __future__ import annotations

import time

from streams import names
from streams.cluster_events import FenceRefused, RoleTaken
from streams.envelope import Event, derived_id, tag_of
from streams.store import EventStore

# Which singleton role writes each fenced event (the role's lease name; ``fence`` fields).
FENCED_BY: dict[str, str] = {
    "training.started": "trainer",
    "checkpoint.saved": "trainer",
    "pool.batch_synced": "sync",
    "match.scheduled": "evaluator",
    "match.completed": "evaluator",
    "candidate.promoted": "promoter",
    "candidate.rejected": "promoter",
    "champion.rolled_back": "promoter",
}
SINGLETON_ROLES: tuple[str, ...] = ("trainer", "sync", "promoter", "evaluator")


async def fence_before(store: EventStore, run: str, role: str, seq: int) -> int:
    """The highest fence ``role`` was taken with at a sequence below ``seq`` (0: never)."""
    if seq <= 1:
        return 0
    highest = 0
    subject = names.subject(names.EVENTS, run, names.role_aggregate(role), tag_of(RoleTaken))
    async for stored in store.read(names.EVENTS, subject_filter=subject, end_seq=seq - 1):
        if isinstance(stored.event, RoleTaken):
            highest = max(highest, stored.event.fence)
    return highest


async def stale_fence(store: EventStore, run: str, event: Event, seq: int) -> int:
    """The fence in force when ``event`` (at ``seq``) was written if its own is below it, else 0."""
    fence = getattr(event, "fence", 0)
    role = FENCED_BY.get(event.tag)
    if not fence or role is None:
        return 0
    current = await fence_before(store, run, role, seq)
    return current if current > fence else 0


def refusal(event: Event, current: int, *, by: str, role: str = "", owner: str = "") -> FenceRefused:
    """The ``role.fence_refused`` recording that ``event`` was refused (id derived from it)."""
    role = role or FENCED_BY.get(event.tag, "")
    return FenceRefused(
        id=derived_id(event.id, "fence-refused"), time=time.time(), run=event.run,
        causation_id=event.id, correlation_id=event.correlation_id or event.id, role=role,
        fence=getattr(event, "fence", 0), current_fence=current, owner=owner,
        refused_tag=event.tag, refused_id=event.id, by=by)

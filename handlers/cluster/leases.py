"""Singleton roles under fenced leases: the trainer, sync, promoter and evaluator run on exactly
one node at a time.

A role's lease is the key ``<run>.role-<role>`` of the locks KV (``streams.kv``: ``create``
with the bucket's TTL, ``lease_ttl_s``, to take it, ``update(last=revision)`` to renew,
``delete(last=revision)`` to release; the loop trainer's own ``trainer`` lease is another). Its
*fence* is the lease's revision at creation: KV revisions only grow, so a later holder's fence
is always higher. Taking a role appends ``role.taken`` (role, owner, fence) to the role's
aggregate; every event the holder then writes goes through ``RoleLease.append``, which stamps
the event's ``fence`` field and appends it *expecting ``role.taken`` to still be the role
aggregate's last event* (``Nats-Expected-Last-Subject-Sequence`` with that aggregate's filter,
checked atomically by the stream leader). A holder that was paused (SIGSTOP, a long GC, a cut
network) past the TTL while another took the role over finds a newer ``role.taken`` there:
its write is refused by the store, recorded as ``role.fence_refused`` (on a separate aggregate,
so it moves no fence), and ``FenceLost`` is raised. Nothing it writes after the takeover lands.
An append with its own expected sequence (the promoter's decisions) checks the fence just
before; a stale event that slips into the log anyway is refused by the decision that reads it
(``streams.fencing.stale_fence``: the promoter, the evaluator). ``FencedStore`` is the event
store a singleton service writes through (``handlers.cluster.singletons``).

``hold_role`` runs a body under the role: waits for the lease (retrying every TTL/10), renews
it every TTL/3, and on loss sets the body's ``stop`` (it ends at its next check or its next
fenced write, whichever comes first; cancelled after a grace period). A dead holder's role is
taken over once its key expires: within the TTL of its last renewal, plus one retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec

from streams import names
from streams.cluster_events import RoleTaken
from streams.envelope import Event, derived_id
from streams.errors import ConcurrencyConflict, FenceLost, LockHeld
from streams.fencing import SINGLETON_ROLES, refusal
from streams.kv import Lease, acquire_lease, lease_holder, lease_ttl
from streams.store import EventStore

__all__ = ["SINGLETON_ROLES", "FencedStore", "HeldRole", "RoleLease", "current_fence", "held_roles",
           "hold_role", "last_taken", "new_owner", "take_role"]

STOP_GRACE_S = 10.0  # a body still running this long after its lease was lost is cancelled
log = logging.getLogger(__name__)


def new_owner(node: str, role: str) -> str:
    """An owner name unique to this holding: ``<node>/<role>/<random>``."""
    return f"{node}/{role}/{uuid.uuid4().hex[:12]}"


async def last_taken(store: EventStore, run: str, role: str) -> RoleTaken | None:
    """The role's last ``role.taken`` (None: never taken)."""
    last = await store.last(names.EVENTS, names.aggregate_filter(names.EVENTS, run,
                                                                 names.role_aggregate(role)))
    return last.event if last is not None and isinstance(last.event, RoleTaken) else None


async def current_fence(store: EventStore, run: str, role: str) -> int:
    """The fence in force for ``role`` (0: never taken)."""
    taken = await last_taken(store, run, role)
    return taken.fence if taken else 0


class HeldRole(msgspec.Struct, frozen=True, kw_only=True):
    """A singleton role's lease as it stands: its holder (owner ``<node>/<role>/<random>``),
    the lease entry's revision, and the fence of the role's last ``role.taken``."""

    role: str
    node: str
    owner: str
    revision: int
    fence: int


async def held_roles(store: EventStore, run: str) -> list[HeldRole]:
    """Every singleton role whose lease is held now (a free or expired lease is left out)."""
    out = []
    for role in SINGLETON_ROLES:
        held = await lease_holder(store.log, run, names.role_aggregate(role))
        if held is None:
            continue
        owner, revision = held
        out.append(HeldRole(role=role, node=owner.split("/", 1)[0], owner=owner, revision=revision,
                            fence=await current_fence(store, run, role)))
    return out


@dataclass
class RoleLease:
    """A held singleton role: its lease, its fence and the ``role.taken`` that set it."""

    store: EventStore
    run: str
    role: str
    node: str
    lease: Lease
    taken_seq: int
    ttl_s: float
    fence: int  # the lease's revision when taken: higher for every later holder
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def owner(self) -> str:
        return self.lease.owner

    async def renew(self) -> None:
        """Keep the lease (``FenceLost`` if it expired and was taken, or deleted)."""
        try:
            await self.lease.renew()
        except LockHeld as exc:
            self.lost.set()
            raise FenceLost(f"{self.role}: {exc}") from None

    async def append(self, event: Event, *, expected_last_seq: int | None = None,
                     aggregate: str | None = None) -> int:
        """Append ``event`` under this holding's fence; ``FenceLost`` (and ``role.fence_refused``
        recorded) if the role was taken over since.

        Without ``expected_last_seq`` the store checks the fence atomically (the role
        aggregate's last event must be this holding's ``role.taken``). An append that has its
        own expectation (the promoter's decisions on the champion aggregate) cannot carry a
        second one: the fence is checked just before it, and what slips through that window
        carries a stale fence its readers refuse (``streams.fencing``)."""
        if "fence" in event.__struct_fields__:
            event = msgspec.structs.replace(event, fence=self.fence)  # type: ignore[type-var]
        if expected_last_seq is not None or aggregate is not None:
            current = await current_fence(self.store, self.run, self.role)
            if current != self.fence:
                await self._refused(event, current)
            return await self.store.append(event, expected_last_seq=expected_last_seq,
                                           aggregate=aggregate)
        try:
            return await self.store.append(event, expected_last_seq=self.taken_seq,
                                           aggregate=names.role_aggregate(self.role))
        except ConcurrencyConflict:
            await self._refused(event, await current_fence(self.store, self.run, self.role))

    async def _refused(self, event: Event, current: int) -> NoReturn:
        self.lost.set()
        await self.store.append(refusal(event, current, by=self.owner, role=self.role, owner=self.owner))
        log.warning("%s: %s refused: fence %d is stale (the role is at fence %d)", self.owner,
                    event.tag, self.fence, current)
        raise FenceLost(f"{self.role}: {event.tag} refused: fence {self.fence} is stale, "
                        f"the role was taken over (fence {current})")

    async def release(self) -> None:
        await self.lease.release()


class FencedStore(EventStore):
    """The event store a singleton service writes through while it holds its role: every
    ``append`` goes through ``RoleLease.append`` (fence stamped and checked)."""

    def __init__(self, held: RoleLease):
        super().__init__(held.store.log)
        self.held = held

    async def append(self, event: Event, *, expected_last_seq: int | None = None,
                     aggregate: str | None = None) -> int:
        return await self.held.append(event, expected_last_seq=expected_last_seq, aggregate=aggregate)


async def take_role(store: EventStore, run: str, role: str, owner: str, *, node: str = "") -> RoleLease:
    """Take ``role`` now or raise ``LockHeld`` naming its holder; records ``role.taken``."""
    ttl = await lease_ttl(store.log)
    lease = await acquire_lease(store.log, run, names.role_aggregate(role), owner)
    previous = await last_taken(store, run, role)
    fence = lease.revision
    try:
        taken = RoleTaken(id=derived_id(f"{run}/{role}", "role-taken", fence), time=time.time(),
                          run=run, role=role, owner=owner, fence=fence, node=node, ttl_s=ttl,
                          previous_owner=previous.owner if previous else "")
        seq = await store.append(taken)
    except BaseException:
        await lease.release()
        raise
    log.info("%s took role %s (fence %d)", owner, role, fence)
    return RoleLease(store, run, role, node, lease, seq, ttl, fence)


Body = Callable[[RoleLease, asyncio.Event], Coroutine[Any, Any, None]]


async def hold_role(store: EventStore, run: str, role: str, body: Body, *, stop: asyncio.Event,
                    node: str = "", once: bool = False, retry_s: float | None = None) -> None:
    """Run ``body(role_lease, role_stop)`` whenever this process holds ``role``, until ``stop``.

    Waits for the lease (retrying every ``retry_s``, default TTL/10), renews it every TTL/3;
    on loss ``role_stop`` is set and the body cancelled if it has not ended ``STOP_GRACE_S``
    later. ``once``: return after the first holding ends instead of waiting to take it again.
    """
    while not stop.is_set():
        held = await _wait_for_role(store, run, role, node, stop, retry_s)
        if held is None:
            return
        role_stop = asyncio.Event()
        work = asyncio.create_task(body(held, role_stop))
        keeper = asyncio.create_task(_keep(held, role_stop))
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({work, keeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            role_stop.set()
            await _end(work)
        finally:
            for task in (work, keeper, stopper):  # work: only when this was cancelled
                task.cancel()
            await asyncio.gather(work, keeper, stopper, return_exceptions=True)
            if not held.lost.is_set():
                await held.release()
        if held.lost.is_set():
            log.warning("%s lost role %s (fence %d)", held.owner, role, held.fence)
        if once:
            return


async def _wait_for_role(store: EventStore, run: str, role: str, node: str, stop: asyncio.Event,
                         retry_s: float | None) -> RoleLease | None:
    owner = new_owner(node or "node", role)
    said = False
    while not stop.is_set():
        try:
            return await take_role(store, run, role, owner, node=node)
        except LockHeld as exc:
            if not said:
                log.info("%s: role %s is held (%s); waiting for it", owner, role, exc)
                said = True
            every = retry_s if retry_s is not None else max(0.05, await lease_ttl(store.log) / 10)
            try:
                await asyncio.wait_for(stop.wait(), every)  # a retry timer, not synchronisation
            except TimeoutError:
                pass
    return None


async def _keep(held: RoleLease, role_stop: asyncio.Event) -> None:
    """Renew every TTL/3 until the lease is lost (then ``role_stop`` is set)."""
    every = max(0.1, held.ttl_s / 3) if held.ttl_s else 1.0
    while not held.lost.is_set():
        await asyncio.sleep(every)  # the renewal timer
        try:
            await held.renew()
        except FenceLost:
            break
    role_stop.set()


async def _end(work: asyncio.Task) -> None:
    """Let the body end by itself (it saw ``role_stop``, or a fenced write failed), else cancel."""
    done, _ = await asyncio.wait({work}, timeout=STOP_GRACE_S)
    if not done:
        work.cancel()
    result = await asyncio.gather(work, return_exceptions=True)
    exc = result[0]
    if isinstance(exc, Exception) and not isinstance(exc, FenceLost):
        log.warning("role body failed: %s: %s", exc.__class__.__name__, exc)

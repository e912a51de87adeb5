"""Key-value helpers: projection snapshots, handler positions, leases (locks), heartbeats.

All are caches or coordination, never the authority: snapshots and positions can be lost
and rebuilt from the log. A lease is ``create`` with the bucket TTL to take it,
``update(last=revision)`` to renew, ``delete(last=revision)`` to release. A lease whose
holder is known dead (``owner_gone``: a process of this host that no longer runs) is taken
over at once instead of after the TTL.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)

from streams import names
from streams.connection import Log
from streams.errors import LockHeld
from streams.failover import through_failover
from streams.server import pid_alive

T = TypeVar("T")


async def _get(log: Log, bucket: str, key: str) -> tuple[bytes, int] | None:
    async def read() -> tuple[bytes, int] | None:
        kv = await log.js.key_value(bucket)
        try:
            entry = await kv.get(key)
        except (KeyNotFoundError, KeyDeletedError, NotFoundError):
            return None
        if entry.value is None:
            return None
        return entry.value, int(entry.revision or 0)

    return await through_failover(log.settings, read, f"get {key} from {bucket}")


async def get_value(log: Log, bucket: str, key: str) -> bytes | None:
    got = await _get(log, bucket, key)
    return got[0] if got else None


async def lease_holder(log: Log, run: str, name: str) -> tuple[str, int] | None:
    """Who holds the lease ``name`` now and the entry's revision, or None: it is free."""
    got = await _get(log, names.KV_LOCKS, names.lock_key(run, name))
    return (got[0].decode(errors="replace"), got[1]) if got else None


async def put_value(log: Log, bucket: str, key: str, value: bytes) -> int:
    """Put ``value`` under ``key`` (a whole value by the key's one writer: repeating it through
    a failover changes nothing)."""
    async def put() -> int:
        kv = await log.js.key_value(bucket)
        return int(await kv.put(key, value))

    return await through_failover(log.settings, put, f"put {key} in {bucket}")


class Position(msgspec.Struct, frozen=True):
    """The last input sequence a handler finished (output appended, then acked)."""

    seq: int
    cause_id: str = ""


async def load_position(log: Log, run: str, handler: str) -> Position:
    data = await get_value(log, names.KV_POSITIONS, names.position_key(run, handler))
    return msgspec.msgpack.decode(data, type=Position) if data else Position(0)


async def save_position(log: Log, run: str, handler: str, position: Position) -> None:
    await put_value(
        log, names.KV_POSITIONS, names.position_key(run, handler), msgspec.msgpack.encode(position)
    )


@dataclass
class Lease:
    """A held lease on ``key``; renew it before the bucket TTL runs out."""

    log: Log
    key: str
    owner: str
    revision: int

    async def renew(self) -> None:
        """Renew at the revision held (``LockHeld`` if the lease was lost). On a cluster the
        update is repeated through a failover; finding then our own owner at a later revision
        means an earlier attempt landed unanswered: that revision is ours, not a lost lease."""
        async def update() -> int:
            kv = await self.log.js.key_value(names.KV_LOCKS)
            return int(await kv.update(self.key, self.owner.encode(), last=self.revision))

        try:
            self.revision = await through_failover(self.log.settings, update, f"renew {self.key}")
        except KeyWrongLastSequenceError:
            held = await _get(self.log, names.KV_LOCKS, self.key)
            if held is None or held[0] != self.owner.encode() or held[1] <= self.revision:
                raise LockHeld(f"lease {self.key} was lost (expired and taken by another)") from None
            self.revision = held[1]

    async def release(self) -> None:
        kv = await self.log.js.key_value(names.KV_LOCKS)
        try:
            await kv.delete(self.key, last=self.revision)
        except Exception:  # noqa: BLE001 - an expired or taken lease needs no release
            pass


async def acquire_lease(
    log: Log, run: str, name: str, owner: str, *, stale: Callable[[str], bool] | None = None
) -> Lease:
    """Take the lease ``name`` for ``owner`` or raise ``LockHeld`` naming the holder.

    ``stale(holder)`` true: the holder is known dead; its entry (that revision only) is
    deleted and the lease taken.
    """
    kv = await log.js.key_value(names.KV_LOCKS)
    key = names.lock_key(run, name)
    try:
        try:
            revision = await kv.create(key, owner.encode())
        except (KeyNotFoundError, KeyDeletedError):
            # nats-py's create: the put found the key, then its look for a tombstone found
            # nothing: the lease expired in between. It is free now: create again.
            revision = await kv.create(key, owner.encode())
    except (KeyNotFoundError, KeyDeletedError):
        raise LockHeld(f"lease {key} changed hands while taking it; try again") from None
    except KeyWrongLastSequenceError:
        held = await _get(log, names.KV_LOCKS, key)
        holder = held[0].decode(errors="replace") if held else "someone"
        if held is None or stale is None or not stale(holder):
            raise LockHeld(f"lease {key} is held by {holder}") from None
        try:
            await kv.delete(key, last=held[1])
            revision = await kv.create(key, owner.encode())
        except KeyWrongLastSequenceError:
            raise LockHeld(f"lease {key} was taken over from {holder} by another") from None
    return Lease(log, key, owner, int(revision))


async def lease_ttl(log: Log) -> float:
    """The locks bucket's TTL: how long a lease lives unrenewed (0.0: no TTL)."""
    kv = await log.js.key_value(names.KV_LOCKS)
    return float((await kv.status()).ttl or 0.0)


def process_owner(who: str) -> str:
    """A lease owner naming this process: ``"<who> pid <pid> on <host>"``."""
    return f"{who} pid {os.getpid()} on {socket.gethostname()}"


_OWNER = re.compile(r" pid (\d+) on (\S+)$")


def owner_gone(owner: str) -> bool:
    """True if ``owner`` (from ``process_owner``) is a process of this host that has ended."""
    m = _OWNER.search(owner)
    return m is not None and m[2] == socket.gethostname() and not pid_alive(int(m[1]))


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    host: str
    roles: list[str]
    model_id: str = ""
    time: float = 0.0
    detail: dict[str, float] = {}


async def beat(log: Log, run: str, heartbeat: Heartbeat) -> None:
    hb = msgspec.structs.replace(heartbeat, time=time.time(), host=heartbeat.host or socket.gethostname())
    await put_value(
        log, names.KV_HEARTBEATS, names.heartbeat_key(run, hb.node), msgspec.msgpack.encode(hb)
    )


async def live_values(log: Log, bucket: str, run: str, kind: type[T]) -> list[T]:
    """The values of ``run`` in a TTL bucket that have not expired, decoded as ``kind`` (one
    from an incompatible build is skipped, a deleted key too).

    The keys come from one stream-info request listing the bucket's subjects under the run,
    answered by the server at one instant. nats-py's ``kv.keys()`` walks a watcher instead, and
    misses a key whose value is replaced while it walks (measured: 21 of 1,000 listings of 3
    busy keys came back short or empty)."""
    prefix = names.kv_subject(bucket, "")
    try:
        info = await through_failover(
            log.settings,
            lambda: log.js.stream_info(names.kv_stream(bucket), subjects_filter=f"{prefix}{run}.>"),
            f"bucket {bucket}",
        )
    except NotFoundError:  # the bucket is not set up (no stream was ever created here)
        return []
    out = []
    for subject in sorted(info.state.subjects or {}):
        data = await get_value(log, bucket, subject.removeprefix(prefix))
        if not data:
            continue
        try:
            out.append(msgspec.msgpack.decode(data, type=kind))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a value from an incompatible build: not ours to read
    return out


async def alive_nodes(log: Log, run: str) -> list[Heartbeat]:
    """Nodes whose heartbeat has not expired (bucket TTL)."""
    return await live_values(log, names.KV_HEARTBEATS, run, Heartbeat)

"""Object-store helpers: model checkpoints and pool shards, addressed by name, verified by digest.

``put`` returns the sha256 digest of the bytes; ``get`` reads with ``writeinto`` (nats-py's
plain ``get`` is quadratic in size) and refuses bytes whose digest differs.
"""

from __future__ import annotations

import hashlib
import io

from nats.js.errors import NotFoundError, ObjectNotFoundError

from streams.connection import Log
from streams.errors import EventNotFound, StoreError
from streams.failover import through_failover


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def put_object(log: Log, bucket: str, name: str, data: bytes) -> str:
    """Store ``data`` as ``name``; a put cut by a failover is made again whole (the same name,
    the same bytes: the same object; the cut attempt's chunks are left unreferenced)."""
    async def put() -> None:
        store = await log.js.object_store(bucket)
        await store.put(name, data)

    await through_failover(log.settings, put, f"put {name} in {bucket}")
    return sha256(data)


async def get_object(log: Log, bucket: str, name: str, digest: str | None = None) -> bytes:
    async def read() -> bytes:
        store = await log.js.object_store(bucket)
        buffer = io.BytesIO()
        try:
            await store.get(name, writeinto=buffer)
        except (ObjectNotFoundError, NotFoundError):
            raise EventNotFound(f"object {name} not found in {bucket}") from None
        return buffer.getvalue()

    data = await through_failover(log.settings, read, f"get {name} from {bucket}")
    if digest is not None and sha256(data) != digest:
        raise StoreError(f"object {name} in {bucket} fails its digest check (corrupt or replaced)")
    return data

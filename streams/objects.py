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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def put_object(log: Log, bucket: str, name: str, data: bytes) -> str:
    store = await log.js.object_store(bucket)
    await store.put(name, data)
    return sha256(data)


async def get_object(log: Log, bucket: str, name: str, digest: str | None = None) -> bytes:
    store = await log.js.object_store(bucket)
    buffer = io.BytesIO()
    try:
        await store.get(name, writeinto=buffer)
    except (ObjectNotFoundError, NotFoundError):
        raise EventNotFound(f"object {name} not found in {bucket}") from None
    data = buffer.getvalue()
    if digest is not None and sha256(data) != digest:
        raise StoreError(f"object {name} in {bucket} fails its digest check (corrupt or replaced)")
    return data

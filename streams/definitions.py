"""Stream, key-value and object-store definitions, each written once, applied idempotently.

``ensure_all`` creates what is missing and updates what changed; a change the server refuses
(storage type, retention, switching off ``deny_delete``...) becomes ``DefinitionConflict``
with the stream's name and the server's reason, never a crash.
"""

from __future__ import annotations

from typing import Any

from nats.js import api
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError

from streams import names
from streams.config import NatsSettings
from streams.errors import DefinitionConflict

_STREAM_IN_USE = 10058


def stream_configs(settings: NatsSettings) -> list[api.StreamConfig]:
    """The four streams of jetzero."""
    window = settings.duplicate_window_s
    common: dict[str, Any] = dict(
        storage=api.StorageType.FILE,
        num_replicas=settings.replicas,
        allow_direct=True,
        duplicate_window=window,
    )
    return [
        api.StreamConfig(
            name=names.EVENTS,
            description="jetzero control log: every fact but raw game records; kept forever",
            subjects=names.stream_subjects(names.EVENTS),
            retention=api.RetentionPolicy.LIMITS,
            deny_delete=True,
            deny_purge=True,
            **common,
        ),
        api.StreamConfig(
            name=names.GAMES,
            description="jetzero selfplay game records; retention bounds the training window",
            subjects=names.stream_subjects(names.GAMES),
            retention=api.RetentionPolicy.LIMITS,
            max_bytes=settings.games_max_bytes,
            max_age=settings.games_max_age_s or None,
            **common,
        ),
        api.StreamConfig(
            name=names.COMMANDS,
            description="jetzero commands from the CLI, answered by the controller",
            subjects=names.stream_subjects(names.COMMANDS),
            retention=api.RetentionPolicy.LIMITS,
            **common,
        ),
        api.StreamConfig(
            name=names.WORK,
            description="jetzero units of work; each taken by one worker",
            subjects=names.stream_subjects(names.WORK),
            retention=api.RetentionPolicy.WORK_QUEUE,
            **common,
        ),
    ]


def kv_configs(settings: NatsSettings) -> list[api.KeyValueConfig]:
    r = settings.replicas
    return [
        api.KeyValueConfig(
            bucket=names.KV_HEARTBEATS, history=1, ttl=settings.heartbeat_ttl_s, replicas=r,
            direct=True,
        ),
        api.KeyValueConfig(
            bucket=names.KV_LOCKS, history=1, ttl=settings.lock_ttl_s, replicas=r, direct=True
        ),
        api.KeyValueConfig(bucket=names.KV_SNAPSHOTS, history=1, replicas=r, direct=True),
        api.KeyValueConfig(bucket=names.KV_POSITIONS, history=1, replicas=r, direct=True),
        api.KeyValueConfig(
            bucket=names.KV_NODES, history=1, ttl=settings.heartbeat_ttl_s, replicas=r, direct=True
        ),
    ]


OBJECT_BUCKETS = (names.OBJ_MODELS, names.OBJ_POOL)


async def ensure_streams(js, settings: NatsSettings) -> None:
    for config in stream_configs(settings):
        try:
            await js.add_stream(config)
        except APIError as exc:
            if exc.err_code != _STREAM_IN_USE:
                raise DefinitionConflict(f"stream {config.name}: {exc.description}") from None
            try:
                await js.update_stream(config)
            except APIError as upd:
                raise DefinitionConflict(
                    f"stream {config.name} exists with a definition the server will not change "
                    f"to jetzero's: {upd.description}"
                ) from None


async def ensure_buckets(js, settings: NatsSettings) -> None:
    for config in kv_configs(settings):
        try:
            await js.key_value(config.bucket)
        except (BucketNotFoundError, NotFoundError):
            try:
                await js.create_key_value(config)
            except APIError as exc:
                raise DefinitionConflict(f"bucket {config.bucket}: {exc.description}") from None
    for bucket in OBJECT_BUCKETS:
        try:
            await js.object_store(bucket)
        except (BucketNotFoundError, NotFoundError):
            try:
                await js.create_object_store(
                    bucket, config=api.ObjectStoreConfig(replicas=settings.replicas)
                )
            except APIError as exc:
                raise DefinitionConflict(f"object store {bucket}: {exc.description}") from None


async def ensure_all(js, settings: NatsSettings) -> None:
    await ensure_streams(js, settings)
    await ensure_buckets(js, settings)

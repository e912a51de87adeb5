"""Encoding and decoding of every event, with upcasting of old schema versions.

The union of all events is written out by hand below; one typed msgpack decoder is the
validation point. A payload whose ``v`` is older than its type's current version is decoded
to a dict, passed through the pure ``dict -> dict`` upgraders registered in ``UPGRADERS``,
then converted. A well-formed event of a type this build does not know decodes to
``UnknownEvent`` (projections skip it); anything else raises ``DecodeError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from streams import names
from streams.cluster_events import ClusterEvent
from streams.commands import AnyCommand
from streams.envelope import Event, tag_of
from streams.errors import DecodeError
from streams.events import ControlEvent
from streams.games import (
    GameFinished,
    upgrade_game_finished_v1,
    upgrade_game_finished_v2,
    upgrade_game_finished_v3,
    upgrade_game_finished_v4,
)
from streams.matchmaking_events import MatchmakingEvent
from streams.pipeline_events import PipelineEvent
from streams.work import WorkItem

AnyEvent = (ControlEvent | GameFinished | AnyCommand | WorkItem | ClusterEvent | MatchmakingEvent
            | PipelineEvent)

EVENT_TYPES: tuple[type[Event], ...] = tuple(
    t for t in AnyEvent.__args__  # type: ignore[attr-defined]
)
BY_TAG: dict[str, type[Event]] = {tag_of(t): t for t in EVENT_TYPES}

# (tag, version) -> function upgrading a payload of that version by one step.
UPGRADERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("game.finished", 1): upgrade_game_finished_v1,
    ("game.finished", 2): upgrade_game_finished_v2,
    ("game.finished", 3): upgrade_game_finished_v3,
    ("game.finished", 4): upgrade_game_finished_v4,
}


class UnknownEvent(msgspec.Struct, frozen=True):
    """A well-formed event of a type this build does not know (written by a newer build)."""

    type: str
    id: str = ""
    run: str = ""


def _current_version(cls: type[Event]) -> int:
    fields = cls.__struct_fields__
    defaults = cls.__struct_defaults__
    offset = len(fields) - len(defaults)
    return int(defaults[fields.index("v") - offset])


CURRENT_VERSION: dict[type[Event], int] = {t: _current_version(t) for t in EVENT_TYPES}

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def subject_of(event: Event) -> str:
    return names.subject(event.STREAM, event.run, event.aggregate(), event.tag)


def decode(data: bytes) -> Event | UnknownEvent:
    """Decode one payload; old versions are upgraded, unknown types become ``UnknownEvent``."""
    try:
        event = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _decode_slow(data, exc)
    if event.v != CURRENT_VERSION[type(event)]:
        return _decode_slow(data, None)
    return event


def _decode_slow(data: bytes, first_error: Exception | None) -> Event | UnknownEvent:
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not msgpack: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise DecodeError("not an event: a map with a string 'type' was expected")
    cls = BY_TAG.get(raw["type"])
    if cls is None:
        try:
            return msgspec.convert(raw, UnknownEvent)
        except msgspec.ValidationError as exc:
            raise DecodeError(f"malformed event of unknown type {raw['type']!r}: {exc}") from exc
    return upcast(raw, cls, first_error)


def upcast(raw: dict[str, Any], cls: type[Event], first_error: Exception | None = None) -> Event:
    """Upgrade a decoded payload step by step to ``cls``'s current version and convert it."""
    tag = tag_of(cls)
    version = raw.get("v", 1)
    target = CURRENT_VERSION[cls]
    if not isinstance(version, int) or version > target:
        raise DecodeError(f"{tag}: schema version {version!r} is not known (current {target})")
    while version < target:
        step = UPGRADERS.get((tag, version))
        if step is None:
            raise DecodeError(f"{tag}: no upgrade from schema version {version}")
        try:
            raw = step(raw)
        except (KeyError, ValueError, TypeError) as exc:
            raise DecodeError(f"{tag}: upgrade from v{version} failed: {exc}") from exc
        version = raw["v"]
    try:
        return msgspec.convert(raw, cls)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"{tag}: {exc}") from (first_error or exc)

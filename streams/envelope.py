"""The envelope every event carries, and how ids are made.

``Event`` is the tagged msgspec base class (tag field ``type``): id, time, run, schema
version ``v``, causation and correlation ids. Each concrete event sets an explicit dotted
tag, the stream it lives on (``STREAM``) and the aggregate it belongs to (``aggregate()``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar, TypeVar

import msgspec

E = TypeVar("E", bound="Event")

_ID_NAMESPACE = uuid.UUID("6f1c9a52-0b7e-4d55-9b55-5d3c1c8a2e10")


def new_id() -> str:
    return uuid.uuid4().hex


def derived_id(cause_id: str, handler: str, index: int = 0) -> str:
    """A deterministic id for the ``index``-th event a handler emits because of ``cause_id``.

    Redoing the same work after a crash yields the same ids, which the server deduplicates.
    """
    return uuid.uuid5(_ID_NAMESPACE, f"{cause_id}/{handler}/{index}").hex


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event: the envelope."""

    id: str
    time: float
    run: str
    v: int = 1
    causation_id: str = ""
    correlation_id: str = ""

    STREAM: ClassVar[str] = "EVENTS"

    def aggregate(self) -> str:
        """The aggregate this event belongs to (third subject token)."""
        raise NotImplementedError

    @property
    def tag(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]

    @classmethod
    def new(
        cls: type[E],
        run: str,
        *,
        cause: Event | None = None,
        id: str | None = None,
        correlation_id: str | None = None,
        **fields: Any,
    ) -> E:
        """A fresh event; ``cause`` fills causation and correlation ids."""
        corr = correlation_id
        if corr is None:
            corr = (cause.correlation_id or cause.id) if cause is not None else ""
        return cls(
            id=id or new_id(),
            time=time.time(),
            run=run,
            causation_id=cause.id if cause is not None else "",
            correlation_id=corr,
            **fields,
        )


def tag_of(cls: type[Event]) -> str:
    return cls.__struct_config__.tag  # type: ignore[return-value]

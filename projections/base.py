"""What a projection is: ``initial()`` plus a pure ``apply(state, event) -> state``.

State is immutable (frozen msgspec Structs) so that a snapshot is the state itself and
"as of" a point is folding fewer events. ``fold`` is the whole law in one function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from streams import codec, names
from streams.envelope import Event

S = TypeVar("S")


class Projection(Protocol[S]):
    """A pure fold of one stream's events of one run into a read model."""

    name: str
    stream: str
    state_type: Any  # the type of the state, for decoding snapshots
    @property
    def version(self) -> int | str:
        """The fold's version, part of its snapshot key (``streams.names.snapshot_key``): bumped
        whenever the state's layout or the fold's rules change, so that a snapshot written by
        older code is never read as current state (the state is rebuilt from the log instead)."""
        ...

    def initial(self) -> S: ...

    def apply(self, state: S, event: Event) -> S:
        """The state after ``event``; must ignore event types it does not know."""
        ...


# A projection may also define ``apply_at(state, event, seq) -> state`` when it records the
# stream sequence of events (a promotion's sequence, for rollback); the runner then calls it.


class BaseProjection(Generic[S]):
    """Convenience base: ``apply`` dispatches on the event's wire tag to its ``on_*`` handler.

    A handler is named after the tag it folds, dots as underscores: ``on_candidate_promoted``
    folds ``candidate.promoted``. The table tag -> handler is built when the class is defined, and a handler
    that names no event type is a ``TypeError`` there: a misspelt handler cannot sit unused.
    A handler takes ``(state, event)``, or ``(state, event, seq)`` in a projection whose own
    ``apply_at`` looks it up with ``handler(event)`` and passes the sequence.
    """

    name = "base"
    stream = names.EVENTS
    state_type: Any = None
    version: int | str = 1
    handlers: ClassVar[dict[str, str]] = {}  # tag -> name of the method folding it

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = handler_table(cls)

    def initial(self) -> S:
        raise NotImplementedError

    def handler(self, event: Event) -> Callable[..., S] | None:
        """The bound ``on_*`` method folding ``event``'s tag, or None."""
        method = self.handlers.get(getattr(event, "tag", ""))
        return None if method is None else getattr(self, method)

    def apply(self, state: S, event: Event) -> S:
        method = self.handler(event)
        return state if method is None else method(state, event)


def handler_tag(method_name: str) -> str | None:
    """The wire tag an ``on_*`` method name folds, or None if it names no event type."""
    if not method_name.startswith("on_"):
        return None
    rest = method_name[3:]
    return _BY_METHOD_NAME.get(rest)


def handler_table(cls: type) -> dict[str, str]:
    """``tag -> method name`` for every ``on_*`` method of ``cls``; TypeError for a stray one."""
    table: dict[str, str] = {}
    for attr in dir(cls):
        if not attr.startswith("on_") or not callable(getattr(cls, attr)):
            continue
        tag = handler_tag(attr)
        if tag is None:
            raise TypeError(f"{cls.__name__}.{attr} names no event type (a handler is on_<tag>, "
                            f"dots as underscores, e.g. on_candidate_promoted)")
        table[tag] = attr
    return table


_BY_METHOD_NAME: dict[str, str] = {tag.replace(".", "_"): tag for tag in codec.BY_TAG}


def fold(projection: Projection[S], events: Iterable[Event], state: S | None = None) -> S:
    """Fold ``events`` into ``state`` (or the initial state)."""
    current = projection.initial() if state is None else state
    for event in events:
        current = projection.apply(current, event)
    return current

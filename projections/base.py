"""What a projection is: ``initial()`` plus a pure ``apply(state, event) -> state``.

State is immutable (frozen msgspec Structs) so that a snapshot is the state itself and
"as of" a point is folding fewer events. ``fold`` is the whole law in one function.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from streams import names
from streams.envelope import Event

S = TypeVar("S")


class Projection(Protocol[S]):
    """A pure fold of one stream's events of one run into a read model."""

    name: str
    stream: str
    state_type: Any  # the type of the state, for decoding snapshots

    def initial(self) -> S: ...

    def apply(self, state: S, event: Event) -> S:
        """The state after ``event``; must ignore event types it does not know."""
        ...


# A projection may also define ``apply_at(state, event, seq) -> state`` when it records the
# stream sequence of events (a promotion's sequence, for rollback); the runner then calls it.


class BaseProjection(Generic[S]):
    """Convenience base: ``apply`` dispatches on the event's class to ``on_<ClassName>``."""

    name = "base"
    stream = names.EVENTS
    state_type: Any = None

    def initial(self) -> S:
        raise NotImplementedError

    def apply(self, state: S, event: Event) -> S:
        method = getattr(self, "on_" + type(event).__name__, None)
        return state if method is None else method(state, event)


def fold(projection: Projection[S], events: Iterable[Event], state: S | None = None) -> S:
    """Fold ``events`` into ``state`` (or the initial state)."""
    current = projection.initial() if state is None else state
    for event in events:
        current = projection.apply(current, event)
    return current

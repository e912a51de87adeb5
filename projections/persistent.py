"""Persistent maps, sequences and sorted sets for projection state: immutable, shared between
versions, plain data.

A projection's state is frozen, so adding to a ``dict`` or ``tuple`` field means copying it,
and a fold that copies a collection of everything seen so far at each event is quadratic in
the events. Each structure here is a tuple of levels, oldest first, never changed once built
(the logarithmic method): adding starts a level of one entry and merges it into the levels
before it while they are no larger, so an addition copies O(log n) entries on average, a
lookup reads at most log₂ n + 1 levels, and every earlier version stays valid. Levels are
plain tuples of dicts or tuples, so a state that holds them encodes and decodes as it is
(snapshots).

- a map (``put``, ``get``, ``contains``, ``merged``, and ``View``, a read-only ``Mapping``
  over one version): iteration is in first-put order, as a dict updated in place would be;
  a later put of the same key replaces the value in place;
- a sequence (``append``, ``items``, ``last``): items in the order appended;
- a sorted set (``add_sorted``, ``sorted_items``, ``levels_sorted``): each level sorted.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator, Mapping
from functools import cached_property
from itertools import chain
from typing import Any, Generic, TypeVar

__all__ = [
    "Levels",
    "Seq",
    "View",
    "add_sorted",
    "append",
    "contains",
    "get",
    "items",
    "last",
    "merged",
    "put",
    "sorted_items",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")
T = TypeVar("T")

Levels = tuple[dict[K, V], ...]
Seq = tuple[tuple[T, ...], ...]

# -- maps ----------------------------------------------------------------------------------------


def get(levels: tuple[dict[K, V], ...], key: K, default: D = None) -> V | D:  # type: ignore[assignment]
    """The newest value put for ``key``, or ``default``."""
    for level in reversed(levels):
        if key in level:
            return level[key]
    return default


def contains(levels: tuple[dict[K, V], ...], key: K) -> bool:
    return any(key in level for level in levels)


def put(levels: tuple[dict[K, V], ...], key: K, value: V) -> tuple[dict[K, V], ...]:
    """``levels`` with ``key`` set to ``value`` (``levels`` itself is not changed)."""
    top: dict[K, V] = {key: value}
    rest = len(levels)
    while rest and len(levels[rest - 1]) <= len(top):
        top = {**levels[rest - 1], **top}
        rest -= 1
    return (*levels[:rest], top)


def merged(levels: tuple[dict[K, V], ...]) -> dict[K, V]:
    """One dict of every key's newest value, in first-put order."""
    out: dict[K, V] = {}
    for level in levels:
        out.update(level)
    return out


_MISSING: Any = object()


class View(Mapping[K, V], Generic[K, V]):
    """A read-only mapping over one version of a persistent map.

    A lookup reads the levels (no copy); iterating, ``len`` or comparing builds the merged
    dict once per view. A state keeps its view (``cached_property``), so reading a large map
    by key after every event costs no copy.
    """

    def __init__(self, levels: tuple[dict[K, V], ...]):
        self.levels = levels

    @cached_property
    def as_dict(self) -> dict[K, V]:
        return merged(self.levels)

    def __getitem__(self, key: K) -> V:
        value = get(self.levels, key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: K, default: Any = None) -> Any:
        return get(self.levels, key, default)

    def __contains__(self, key: object) -> bool:
        return any(key in level for level in self.levels)

    def __iter__(self) -> Iterator[K]:
        return iter(self.as_dict)

    def __len__(self) -> int:
        return len(self.as_dict)

    def keys(self):  # type: ignore[override]
        return self.as_dict.keys()

    def values(self):  # type: ignore[override]
        return self.as_dict.values()

    def items(self):  # type: ignore[override]
        return self.as_dict.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, View):
            other = other.as_dict
        return self.as_dict == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"View({self.as_dict!r})"


# -- sequences -----------------------------------------------------------------------------------


def append(levels: tuple[tuple[T, ...], ...], item: T) -> tuple[tuple[T, ...], ...]:
    """``levels`` with ``item`` appended (``levels`` itself is not changed)."""
    top: tuple[T, ...] = (item,)
    rest = len(levels)
    while rest and len(levels[rest - 1]) <= len(top):
        top = levels[rest - 1] + top
        rest -= 1
    return (*levels[:rest], top)


def items(levels: tuple[tuple[T, ...], ...]) -> tuple[T, ...]:
    """Every item, in the order appended."""
    return tuple(chain.from_iterable(levels))


def last(levels: tuple[tuple[T, ...], ...], default: D = None) -> T | D:  # type: ignore[assignment]
    """The last item appended, or ``default``."""
    return levels[-1][-1] if levels else default


# -- sorted sets ---------------------------------------------------------------------------------


def add_sorted(levels: tuple[tuple[T, ...], ...], item: T) -> tuple[tuple[T, ...], ...]:
    """``levels`` with ``item`` added (each level stays sorted; the caller keeps items distinct)."""
    top: tuple[T, ...] = (item,)
    rest = len(levels)
    while rest and len(levels[rest - 1]) <= len(top):
        top = tuple(heapq.merge(levels[rest - 1], top))  # type: ignore[type-var]
        rest -= 1
    return (*levels[:rest], top)


def sorted_items(levels: tuple[tuple[T, ...], ...]) -> tuple[T, ...]:
    """Every item, sorted."""
    return tuple(heapq.merge(*levels))  # type: ignore[type-var]

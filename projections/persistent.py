"""Persistent maps for projection state: immutable, shared between versions, plain data.

A projection's state is frozen, so adding to a ``dict`` field means copying it, and a fold
that copies a map of everything seen so far at each event is quadratic in the events. A
persistent map here is a tuple of ``dict`` levels, oldest first, never changed once built
(the logarithmic method): ``put`` starts a level of one entry and merges it into the levels
before it while they are no larger, so a put copies O(log n) entries on average, a lookup
reads at most log₂ n + 1 levels, and every earlier version stays valid. Levels are plain
tuples of dicts, so a state that holds them encodes and decodes as it is (snapshots).

Iteration (``merged``) is in first-put order, as a dict updated in place would be; a later
put of the same key replaces the value in place.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

__all__ = ["Levels", "contains", "get", "merged", "put"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

Levels = tuple[dict[K, V], ...]


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

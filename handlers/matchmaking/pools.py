"""The human-vs-human pool, pure: seeks paired by rating within ranges that widen with waiting.

Lichess-style waves: a seek's range is ``initial_range`` at first and grows by ``step`` every
``every_s`` seconds it waits, up to ``max_range``. Two seeks of the same game pair when each
lies within the other's range; the longest-waiting seek pairs first, with the nearest rating.
A seek that has waited ``offer_ai_after_s`` is offered the nearest AI level, once. Time is
whatever clock the caller passes in (``now``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from handlers.matchmaking.config import PoolSettings

__all__ = ["Pairing", "Pool", "Seek", "Tick", "add", "nearest_level", "rating_range", "remove", "tick"]


class Seek(msgspec.Struct, frozen=True, kw_only=True):
    seek_id: str
    player: str
    game: str
    rating: float
    since: float
    seat: int | None = None
    offered: bool = False  # the AI was offered already


class Pool(msgspec.Struct, frozen=True, kw_only=True):
    seeks: tuple[Seek, ...] = ()

    def find(self, seek_id: str) -> Seek | None:
        return next((s for s in self.seeks if s.seek_id == seek_id), None)

    def of_player(self, player: str) -> list[Seek]:
        return [s for s in self.seeks if s.player == player]


class Pairing(msgspec.Struct, frozen=True, kw_only=True):
    first: Seek  # the longer waiting
    second: Seek


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    pool: Pool
    pairings: list[Pairing] = []
    offers: list[Seek] = []  # seeks to offer the AI now


def rating_range(seek: Seek, now: float, settings: PoolSettings) -> float:
    waves = max(0.0, now - seek.since) // settings.every_s
    return min(settings.initial_range + settings.step * waves, settings.max_range)


def add(pool: Pool, seek: Seek) -> Pool:
    """``pool`` with ``seek``, replacing the same player's earlier seek of the same game."""
    kept = tuple(s for s in pool.seeks if not (s.player == seek.player and s.game == seek.game))
    return Pool(seeks=(*kept, seek))


def remove(pool: Pool, seek_ids: set[str]) -> Pool:
    return Pool(seeks=tuple(s for s in pool.seeks if s.seek_id not in seek_ids))


def _compatible(a: Seek, b: Seek) -> bool:
    seats_clash = a.seat is not None and a.seat == b.seat
    return a.game == b.game and a.player != b.player and not seats_clash


def tick(pool: Pool, now: float, settings: PoolSettings) -> Tick:
    """Pair what can be paired now, and name the seeks due an AI offer."""
    waiting = sorted(pool.seeks, key=lambda s: (s.since, s.seek_id))
    taken: set[str] = set()
    pairings: list[Pairing] = []
    for seek in waiting:
        if seek.seek_id in taken:
            continue
        mine = rating_range(seek, now, settings)
        best: Seek | None = None
        for other in waiting:
            if other.seek_id in taken or other.seek_id == seek.seek_id or not _compatible(seek, other):
                continue
            gap = abs(seek.rating - other.rating)
            if gap <= mine and gap <= rating_range(other, now, settings):
                if best is None or gap < abs(seek.rating - best.rating):
                    best = other
        if best is not None:
            taken |= {seek.seek_id, best.seek_id}
            pairings.append(Pairing(first=seek, second=best))
    offers = [s for s in waiting if s.seek_id not in taken and not s.offered
              and now - s.since >= settings.offer_ai_after_s]
    offered = {s.seek_id for s in offers}
    left = tuple(msgspec.structs.replace(s, offered=True) if s.seek_id in offered else s
                 for s in pool.seeks if s.seek_id not in taken)
    return Tick(pool=Pool(seeks=left), pairings=pairings, offers=offers)


def nearest_level(rating: float, level_ratings: Mapping[int, float]) -> int:
    """The AI level whose rating is nearest ``rating`` (the lower level on a tie)."""
    return min(sorted(level_ratings), key=lambda level: abs(level_ratings[level] - rating))

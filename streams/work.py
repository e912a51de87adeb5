"""Units of work on the ``WORK`` stream (work-queue retention: each is taken once).

A match unit is a few game pairs of one match: the same opening played twice, colours swapped.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from streams import names
from streams.envelope import Event
from streams.events import PlayerSpec


class PairSpec(msgspec.Struct, frozen=True, kw_only=True):
    pair_index: int
    opening: list[int]
    seed: int = 0


class MatchUnit(Event, frozen=True, kw_only=True, tag="work.match_unit"):
    match_id: str
    unit_id: str
    game: str
    candidate: PlayerSpec
    opponent: PlayerSpec
    pairs: list[PairSpec]

    STREAM: ClassVar[str] = names.WORK

    def aggregate(self) -> str:
        return "match"


WorkItem = MatchUnit

"""The ids of ``match.pair_played`` events, the same for every match player.

A pair's event id derives from its match and its index, so a pair played twice (by a second
worker after a crash, or by an eval worker and the promotion manager's in-process one) is
stored once inside the server's duplicate window; past it the matches projection counts a
pair index once anyway.
"""

from __future__ import annotations

from streams.envelope import derived_id

__all__ = ["pair_event_id"]


def pair_event_id(match_id: str, pair_index: int) -> str:
    return derived_id(f"{match_id}/{pair_index}", "match-pair")

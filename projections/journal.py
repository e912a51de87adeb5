"""Recent notable events (rejections, rollbacks, health failures, poison), newest last, for
``--status`` and the health checks.

Poison (``event.rejected``: messages no reader could use, decisions refused for naming what
does not exist) is counted once per stored message, however many readers recorded it.
"""

from __future__ import annotations

import msgspec

from projections.base import BaseProjection
from streams import events as ev
from streams.rejections import rejection_key

KEEP = 10


class Note(msgspec.Struct, frozen=True):
    time: float
    kind: str
    text: str


class Journal(msgspec.Struct, frozen=True, kw_only=True):
    rejections: tuple[Note, ...] = ()
    rollbacks: tuple[Note, ...] = ()
    health_failures: tuple[Note, ...] = ()
    poison: tuple[Note, ...] = ()
    rejected_candidates: int = 0
    poison_count: int = 0
    health_failure_count: int = 0
    poison_keys: frozenset[str] = frozenset()  # ``STREAM:seq`` of each message counted in poison


def _push(notes: tuple[Note, ...], note: Note) -> tuple[Note, ...]:
    return (notes + (note,))[-KEEP:]


class JournalProjection(BaseProjection[Journal]):
    name = "journal"
    version = 2  # v2: poison counted once per stored message (poison_keys)
    state_type = Journal

    def initial(self) -> Journal:
        return Journal()

    def on_candidate_rejected(self, s: Journal, e: ev.CandidateRejected) -> Journal:
        note = Note(e.time, "candidate.rejected", f"{e.model_id}: {e.reason}")
        return msgspec.structs.replace(s, rejections=_push(s.rejections, note),
                                       rejected_candidates=s.rejected_candidates + 1)

    def on_champion_rolled_back(self, s: Journal, e: ev.ChampionRolledBack) -> Journal:
        how = "automatic" if e.automatic else "manual"
        note = Note(e.time, "champion.rolled_back",
                    f"to #{e.to_promotion_seq} ({e.model_id}), {how}: {e.reason}")
        return msgspec.structs.replace(s, rollbacks=_push(s.rollbacks, note))

    def on_health_check_failed(self, s: Journal, e: ev.HealthCheckFailed) -> Journal:
        note = Note(e.time, f"health.{e.severity}", f"{e.check}: {e.detail}")
        return msgspec.structs.replace(s, health_failures=_push(s.health_failures, note),
                                       health_failure_count=s.health_failure_count + 1)

    def on_event_rejected(self, s: Journal, e: ev.EventRejected) -> Journal:
        key = rejection_key(e.stream, e.seq)
        if key in s.poison_keys:  # another reader's record of the same message
            return s
        note = Note(e.time, "event.rejected", f"{e.subject} #{e.seq}: {e.reason}")
        return msgspec.structs.replace(s, poison=_push(s.poison, note),
                                       poison_count=s.poison_count + 1,
                                       poison_keys=s.poison_keys | {key})

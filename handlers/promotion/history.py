"""The promotion history and the ratings ladder of a run, read from the log.

``history_entries`` lists every promotion (the initial model included), rejection and
rollback with the figures its decision recorded, oldest first; ``promotion_history`` adds the
registry, ``ratings_ladder`` is the Elo ladder of every model and reference player.
"""

from __future__ import annotations

import msgspec

from handlers.promotion.models import fold
from projections.models import ModelRegistry, ModelRegistryProjection
from projections.ratings import Ratings, RatingsProjection
from streams import events as ev
from streams.errors import EventNotFound
from streams.store import EventStore

__all__ = ["HistoryEntry", "history_entries", "promotion_history", "ratings_ladder"]


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time: float
    kind: str  # initial | promoted | rejected | rolled_back
    model_id: str
    detail: str = ""
    figures: dict[str, float] = {}
    effective: bool = True  # promotions: on the champion's line now
    to_seq: int = 0  # rollbacks: the promotion rolled back to
    reverted: list[str] = []
    automatic: bool = False




def _gate_figures(gates: list[ev.GateResult]) -> dict[str, float]:
    sprt = next((g for g in gates if g.gate == "sprt"), None)
    return dict(sprt.figures) if sprt is not None else {}


async def _decision_event(store: EventStore, seq: int):
    try:
        return (await store.get(seq)).event
    except EventNotFound:
        return None


async def history_entries(
    store: EventStore, registry: ModelRegistry, since_seq: int = 0
) -> list[HistoryEntry]:
    """Promotions, rejections and rollbacks after ``since_seq``, oldest first."""
    out: list[HistoryEntry] = []
    for p in registry.promotions:
        if p.seq <= since_seq:
            continue
        if p.initial:
            out.append(HistoryEntry(seq=p.seq, time=p.time, kind="initial", model_id=p.model_id,
                                    detail="the first model", effective=not p.reverted))
            continue
        event = await _decision_event(store, p.seq)
        gates = event.gates if isinstance(event, ev.CandidatePromoted) else []
        detail = "; ".join(f"{g.gate}: {g.detail}" for g in gates)
        out.append(HistoryEntry(seq=p.seq, time=p.time, kind="promoted", model_id=p.model_id,
                                detail=detail, figures=_gate_figures(gates), effective=not p.reverted))
    for r in registry.rejections:
        if r.seq > since_seq:
            event = await _decision_event(store, r.seq)
            gates = event.gates if isinstance(event, ev.CandidateRejected) else []
            out.append(HistoryEntry(seq=r.seq, time=r.time, kind="rejected", model_id=r.model_id,
                                    detail=r.reason, figures=_gate_figures(gates)))
    for b in registry.rollbacks:
        if b.seq > since_seq:
            out.append(HistoryEntry(seq=b.seq, time=b.time, kind="rolled_back", model_id=b.model_id,
                                    detail=b.reason, figures=dict(b.evidence), to_seq=b.to_promotion_seq,
                                    reverted=list(b.reverted_models), automatic=b.automatic))
    return sorted(out, key=lambda e: e.seq)


async def promotion_history(store: EventStore, run: str) -> tuple[ModelRegistry, list[HistoryEntry]]:
    """The registry and every promotion, rejection and rollback of ``run``, oldest first."""
    registry = await fold(store, ModelRegistryProjection(), run)
    return registry, await history_entries(store, registry)


async def ratings_ladder(store: EventStore, run: str) -> Ratings:
    return await fold(store, RatingsProjection(), run)

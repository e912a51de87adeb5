"""Fencing tokens refused where a decision follows them (real nats-server, one node).

A holder's lease expires (the locks bucket's TTL set to 1 s here) and another takes the role;
what the first still writes is refused: by the store for its own appends (``FencedStore``,
including one carrying its own expected sequence), and by the decision that reads it for an
event that slipped into the log (the promoter for ``match.completed``, the evaluator for
``checkpoint.saved``), each recorded as ``role.fence_refused``. What a holder wrote before the
takeover is not refused, however late it is read.
"""

from __future__ import annotations

import dataclasses

import pytest

from handlers.cluster.leases import FencedStore, take_role
from handlers.promotion.config import PromotionConfig
from handlers.promotion.evaluator_service import Evaluator
from handlers.promotion.promoter_service import build_promoter
from streams import events as ev
from streams import names
from streams.cluster_events import FenceRefused
from streams.errors import FenceLost, LockHeld
from streams.kv import get_value
from streams.store import EventStore
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "fz"
TTL = 1.0


async def _expire_after(store: EventStore, role: str) -> None:
    """Wait until the role's lease has expired (nobody renews it)."""
    key = names.lock_key(RUN, names.role_aggregate(role))

    async def gone() -> bool:
        return await get_value(store.log, names.KV_LOCKS, key) is None

    await until(gone, 10, f"the {role} lease expires")


@pytest.fixture
async def short_ttl(store):
    info = await store.js.stream_info(f"KV_{names.KV_LOCKS}")
    await store.js.update_stream(dataclasses.replace(info.config, max_age=TTL, duplicate_window=TTL))
    return store


async def _refusals(store: EventStore) -> list[FenceRefused]:
    everything = names.run_filter(names.EVENTS, RUN)
    return [s.event async for s in store.read(names.EVENTS, subject_filter=everything)
            if isinstance(s.event, FenceRefused)]


def _completed(match_id: str, fence: int = 0) -> ev.MatchCompleted:
    return ev.MatchCompleted.new(RUN, match_id=match_id, verdict="accept", pairs=2,
                                 pentanomial=[0, 0, 0, 0, 2], elo=100.0, elo_ci95=50.0, llr=3.0,
                                 lower=-2.9, upper=2.9, fence=fence)


async def test_stale_evaluator_is_refused_by_the_store_and_by_the_promoter(short_ttl):
    store = short_ttl
    a = await take_role(store, RUN, "evaluator", "a/evaluator/1", node="a")
    with pytest.raises(LockHeld):
        await take_role(store, RUN, "evaluator", "b/evaluator/1", node="b")
    early = await a.append(_completed("m-early"))  # written while a held the role
    await _expire_after(store, "evaluator")  # a paused: its lease ran out
    b = await take_role(store, RUN, "evaluator", "b/evaluator/1", node="b")
    assert b.fence > a.fence

    # a's own appends are refused by the store: plain (atomic) and with its own expectation
    with pytest.raises(FenceLost):
        await a.append(_completed("m-stale-1"))
    with pytest.raises(FenceLost):
        await FencedStore(a).append(ev.CandidatePromoted.new(RUN, model_id="x"), expected_last_seq=0)
    champion = names.aggregate_filter(names.EVENTS, RUN, names.AGG_CHAMPION)
    assert await store.last(names.EVENTS, champion) is None
    # one that slipped past a's check (written under a's fence after b took the role)
    slipped = _completed("m-stale-2", fence=a.fence)
    slipped_seq = await store.append(slipped)
    late_b = await b.append(_completed("m-b"))

    shell, _ = build_promoter(store, RUN, PromotionConfig())
    await shell.open()
    await shell.drain()
    refused = await _refusals(store)
    by_promoter = [r for r in refused if r.by == "promoter"]
    assert [(r.refused_id, r.fence, r.current_fence) for r in by_promoter] == [(slipped.id, a.fence, b.fence)]
    assert by_promoter[0].causation_id == slipped.id and by_promoter[0].role == "evaluator"
    by_a = {r.refused_tag for r in refused if r.owner == a.owner}
    assert by_a == {"match.completed", "candidate.promoted"}
    refused_ids = {r.refused_id for r in refused}
    early_event = (await store.get(early)).event
    assert early_event.id not in refused_ids and (await store.get(late_b)).event.id not in refused_ids
    assert slipped_seq > b.taken_seq > early


async def test_evaluator_refuses_a_stale_trainers_checkpoint(short_ttl):
    store = short_ttl
    a = await take_role(store, RUN, "trainer", "a/trainer/1", node="a")
    saved_early = ev.CheckpointSaved.new(RUN, model_id="m1", object_name="o1", digest="d1")
    early_seq = await a.append(saved_early)
    await _expire_after(store, "trainer")
    b = await take_role(store, RUN, "trainer", "b/trainer/1", node="b")
    stale = ev.CheckpointSaved.new(RUN, model_id="m2", object_name="o2", digest="d2", fence=a.fence)
    stale_seq = await store.append(stale)
    evaluator = Evaluator(store, RUN, PromotionConfig(), "tictactoe", [])
    out = await evaluator.react(stale, stale_seq)
    assert len(out) == 1 and isinstance(out[0], FenceRefused)
    assert (out[0].role, out[0].fence, out[0].current_fence, out[0].refused_id) == (
        "trainer", a.fence, b.fence, stale.id)
    early = (await store.get(early_seq)).event
    assert early.fence == a.fence
    assert not any(isinstance(e, FenceRefused) for e in await evaluator.react(early, early_seq))

import asyncio, pytest
from streams.events import LoopHalted, CandidatePromoted
from streams import names
from streams.errors import ConcurrencyConflict
async def test_smoke(store):
    e = LoopHalted.new("r1", by="me", reason="x")
    s1 = await store.append(e); s2 = await store.append(e)
    assert s1 == s2 == 1
    p = CandidatePromoted.new("r1", model_id="m1")
    assert await store.append(p, expected_last_seq=0) == 2
    assert await store.append(p, expected_last_seq=0) == 2  # retry, not a conflict
    with pytest.raises(ConcurrencyConflict):
        await store.append(CandidatePromoted.new("r1", model_id="m2"), expected_last_seq=0)
    last = await store.last(names.EVENTS, names.aggregate_filter(names.EVENTS, "r1", "champion"))
    assert last.seq == 2
    seqs = await store.append_many([LoopHalted.new("r1", reason=str(i)) for i in range(5000)])
    assert seqs == list(range(3, 5003))
    got = []
    n = await store.replay(names.EVENTS, lambda seq, subj, ts, data: got.append(seq))
    assert got == list(range(1, 5003)) and n == 5002
    items = [s async for s in store.read(start_seq=4990)]
    assert [s.seq for s in items] == list(range(4990, 5003))
    g = await store.get(2); assert g.event.model_id == "m1"
    items = [s async for s in store.read(subject_filter=names.aggregate_filter(names.EVENTS,"r1","champion"))]
    assert [s.seq for s in items] == [2]
    items = [s async for s in store.read(subject_filter=names.aggregate_filter(names.EVENTS,"r2","champion"))]
    assert items == []

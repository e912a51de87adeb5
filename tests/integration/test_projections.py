"""The projection runner against a real server: snapshots, restart, as-of replay, fold errors."""

from __future__ import annotations

import msgspec
import pytest

from projections.base import BaseProjection
from projections.loop_status import LoopStatusProjection
from projections.runner import ProjectionRunner, state_as_of
from streams import events as ev
from streams import names
from streams.errors import ProjectionError
from streams.matchmaking_events import P2pMovePlayed

pytestmark = pytest.mark.integration


def _script(n: int) -> list:
    kinds = [ev.LoopStarted, ev.LoopHalted, ev.LoopResumed, ev.ProcessRestarted]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        extra = {"process": "sync"} if kind is ev.ProcessRestarted else {}
        out.append(kind.new("r1", by=f"u{i}", **extra))
    return out


async def test_restart_from_snapshot_equals_full_replay(store):
    await store.append_many(_script(250))
    first = ProjectionRunner(store, LoopStatusProjection(), "r1", snapshot_every=100)
    await first.catch_up()
    assert first.position == 250
    await store.append_many(_script(37))
    restarted = ProjectionRunner(store, LoopStatusProjection(), "r1", snapshot_every=100)
    assert await restarted.load_snapshot() and restarted.position == 250
    await restarted.catch_up()
    full = ProjectionRunner(store, LoopStatusProjection(), "r1", use_snapshots=False)
    await full.catch_up()
    assert restarted.state == full.state and restarted.position == full.position == 287


async def test_state_as_of_sequence_and_time(store):
    seqs = await store.append_many(_script(20))
    state, pos = await state_as_of(store, LoopStatusProjection(), "r1", seq=seqs[1])
    assert pos == seqs[1] and state.halted and state.halted_by == "u1"
    t = (await store.get(seqs[2])).time
    state, pos = await state_as_of(store, LoopStatusProjection(), "r1", time=t)
    assert pos >= seqs[2] and state.starts >= 1


async def test_other_runs_and_undecodable_events_advance_nothing_but_position(store, log):
    await store.append(ev.LoopHalted.new("other"))
    await log.js.publish(names.subject(names.EVENTS, "r1", "loop", "loop.halted"), b"\xffjunk")
    await store.append(ev.LoopHalted.new("r1", by="me"))
    runner = ProjectionRunner(store, LoopStatusProjection(), "r1")
    await runner.catch_up()
    assert runner.state.halted_by == "me" and runner.state.halts == 1
    assert runner.position == 3 and runner.skipped == 1


async def test_following_applies_live_events(store):
    runner = ProjectionRunner(store, LoopStatusProjection(), "r1")
    await runner.follow()
    try:
        await store.append(ev.LoopHalted.new("r1", reason="live"))
        state = await runner.wait_for(lambda s: s.halted, timeout=10)
        assert state.halt_reason == "live"
    finally:
        await runner.stop()


async def test_a_folded_only_follower_is_sent_only_the_types_it_folds(store):
    runner = ProjectionRunner(store, LoopStatusProjection(), "r1", folded_only=True)
    await runner.follow()
    try:
        moves = [P2pMovePlayed.new("r1", game_id=f"g{i}", ply=0, move=3, seat=0) for i in range(50)]
        await store.append_many(moves)
        halted = await store.append(ev.LoopHalted.new("r1", reason="busy log"))
        state = await runner.wait_for(lambda s: s.halted, timeout=10)
        assert state.halt_reason == "busy log" and runner.position == halted
        info = await runner._follow_sub.consumer_info()
        assert info.delivered.consumer_seq == 1  # the halt alone came over the wire, not the moves
        assert sorted(info.config.filter_subjects) == runner.follow_filter
        full = ProjectionRunner(store, LoopStatusProjection(), "r1", use_snapshots=False)
        assert (await full.catch_up()) == state
    finally:
        await runner.stop()


class _Exploding(BaseProjection[int]):
    name = "exploding"
    state_type = int

    def initial(self) -> int:
        return 0

    def on_loop_halted(self, s: int, e: ev.LoopHalted) -> int:
        raise RuntimeError("boom")


async def test_a_fold_error_names_the_sequence(store):
    await store.append(ev.LoopResumed.new("r1"))
    await store.append(ev.LoopHalted.new("r1"))
    with pytest.raises(ProjectionError, match="sequence 2"):
        await ProjectionRunner(store, _Exploding(), "r1").catch_up()


async def test_an_unreadable_snapshot_is_rebuilt_from_the_log(store, log):
    from streams.kv import put_value

    await store.append(ev.LoopHalted.new("r1"))
    runner = ProjectionRunner(store, LoopStatusProjection(), "r1")
    await put_value(log, names.KV_SNAPSHOTS, runner.snapshot_key, msgspec.msgpack.encode([1]))
    await runner.catch_up()
    assert runner.state.halted and runner.position == 1

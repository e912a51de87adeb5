"""Snapshots against a real server: a snapshot of another fold version is never read (the state
is rebuilt from the log), the long-running followers write them, and ``--status`` from those
snapshots plus the events since reads the same as a fold of the whole log."""

from __future__ import annotations

import zlib

import msgspec
import pytest

from bench.projection_replay import SyntheticRun
from handlers.loop.config import LoopConfig
from handlers.loop.metrics import follow_projections
from handlers.loop.status import STATUS_PROJECTIONS, collect_status
from projections import build_projection, persistent
from projections.models import ModelRecord, ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.kv import get_value, put_value

pytestmark = pytest.mark.integration

RUN = "snap"


def _checkpoint(model: str, generation: int) -> ev.CheckpointSaved:
    return ev.CheckpointSaved.new(RUN, model_id=model, object_name=names.model_object(model), digest="d",
                                  generation=generation)


class _OldRegistry(ModelRegistryProjection):
    """Older code's registry (fold version 1), which took a promotion of any model."""

    version = 1

    def on_candidate_promoted(self, s, e, seq):  # noqa: ANN001, ANN201
        if s.model(e.model_id) is None:
            record = ModelRecord(model_id=e.model_id)
            s = msgspec.structs.replace(s, model_records=persistent.put(s.model_records, e.model_id, record))
        return super().on_candidate_promoted(s, e, seq)


async def test_a_snapshot_written_under_an_older_version_is_ignored_and_the_state_rebuilt(store, log):
    await store.append(_checkpoint("m0", 0))
    forged = ev.CandidatePromoted.new(RUN, model_id="ghost", previous_champion="m0")  # no checkpoint
    await store.append(forged)
    # older code (v1) folded the forged promotion: its snapshot crowns a model that does not exist
    old = ProjectionRunner(store, _OldRegistry(), RUN, snapshot_every=1)
    await old.catch_up()
    assert old.state.champion.model_id == "ghost"
    old_key = old.snapshot_key
    assert await get_value(log, names.KV_SNAPSHOTS, old_key)
    # ... and the unversioned key of the code before versions held the same state
    legacy_key = f"{RUN}.{ModelRegistryProjection.name}"
    await put_value(log, names.KV_SNAPSHOTS, legacy_key, msgspec.msgpack.encode({"seq": 2, "state": {}}))

    current = ProjectionRunner(store, ModelRegistryProjection(), RUN, snapshot_every=1)
    assert current.snapshot_key not in (old_key, legacy_key)
    assert not await current.load_snapshot()
    state = await current.catch_up()  # rebuilt from the log, and its own snapshot written
    assert state.champion.model_id == "m0" and current.refused == 1 and current.position == 2

    again = ProjectionRunner(store, ModelRegistryProjection(), RUN)
    assert await again.load_snapshot() and again.position == 2 and again.state == state
    # the old version's snapshot is still its own: older code reading it is not disturbed
    assert (await ProjectionRunner(store, _OldRegistry(), RUN).catch_up()).champion.model_id == "ghost"


async def test_a_snapshot_of_other_curriculum_stages_is_not_read(store):
    from handlers.loop.config import CurriculumStage

    await store.append_many([_checkpoint("m0", 0), _checkpoint("m1", 1),
                             ev.CandidatePromoted.new(RUN, model_id="m1", previous_champion="m0")])
    two = [CurriculumStage(name="early", until_generation=1), CurriculumStage(name="late")]
    one = [CurriculumStage(name="only")]
    first = ProjectionRunner(store, build_projection("curriculum", LoopConfig(run=RUN, curriculum=two)), RUN,
                             snapshot_every=1)
    assert (await first.catch_up()).stage == "late"
    other = ProjectionRunner(store, build_projection("curriculum", LoopConfig(run=RUN, curriculum=one)), RUN)
    assert other.snapshot_key != first.snapshot_key and not await other.load_snapshot()
    assert (await other.catch_up()).stage == "only"


async def test_status_from_the_followers_snapshots_and_the_tail_equals_a_full_fold(store, log, nats_settings):
    config = LoopConfig(run=SyntheticRun().run, nats=nats_settings)
    synthetic = SyntheticRun(config.run, seed=5)
    await store.append_many(synthetic.take(10_000))  # over 1,000 records in each stream
    # the health service's followers (the metrics' projections) write their snapshots as they go
    runners = await follow_projections(store, config)
    try:
        for runner in runners.values():
            assert runner.snapshot_bytes > 0, f"{runner.projection.name} wrote no snapshot"
    finally:
        for runner in runners.values():
            await runner.stop()
    # the service shell follows the loop status; the curriculum's is written by a status read
    await ProjectionRunner(store, build_projection("loop_status", config), config.run).catch_up()
    await collect_status(store, config)
    snapshot_seqs = {}
    for key in STATUS_PROJECTIONS:
        runner = ProjectionRunner(store, build_projection(key, config), config.run)
        data = await get_value(log, names.KV_SNAPSHOTS, runner.snapshot_key)
        assert data, f"no snapshot of {key}"
        snapshot_seqs[key] = msgspec.msgpack.decode(zlib.decompress(data))["seq"]

    await store.append_many(synthetic.take(700))  # the tail since the snapshots
    from_snapshots = await collect_status(store, config)
    full = await collect_status(store, config, use_snapshots=False)
    for report in (from_snapshots, full):
        report.pop("now")
    assert from_snapshots == full
    assert from_snapshots["champion"] is not None and from_snapshots["models"] > 3
    for key, seq in snapshot_seqs.items():  # each read started from its snapshot, not from 0
        runner = ProjectionRunner(store, build_projection(key, config), config.run)
        assert await runner.load_snapshot() and runner.position == seq > 0

    # and --status does read them: a snapshot altered by hand shows in the report
    runner = ProjectionRunner(store, build_projection("loop_status", config), config.run)
    assert await runner.load_snapshot()
    runner.state = msgspec.structs.replace(runner.state, restarts=12_345)
    await runner.save_snapshot()
    assert (await collect_status(store, config))["loop"]["restarts"] >= 12_345
    assert (await collect_status(store, config, use_snapshots=False))["loop"]["restarts"] < 12_345


async def test_the_interval_between_snapshots_grows_with_their_size(store, log):
    from projections.matches import MatchesProjection
    from projections.runner import SNAPSHOT_BYTES_PER_EVENT

    def scheduled(i: int) -> ev.MatchScheduled:
        candidate = ev.PlayerSpec(kind="model", model_id=f"c{i}")
        return ev.MatchScheduled.new(RUN, match_id=f"m{i}", candidate=candidate,
                                     opponent=ev.PlayerSpec(kind="random"))

    async def snapshot_seq() -> int:
        data = await get_value(log, names.KV_SNAPSHOTS, runner.snapshot_key)
        return msgspec.msgpack.decode(zlib.decompress(data))["seq"]

    await store.append_many([scheduled(i) for i in range(400)])
    runner = ProjectionRunner(store, MatchesProjection(), RUN, snapshot_every=1)
    await runner.catch_up()
    assert await snapshot_seq() == 400
    due = runner.snapshot_bytes // SNAPSHOT_BYTES_PER_EVENT
    assert due > 10  # a snapshot every event would rewrite the whole state at each one
    await store.append_many([scheduled(400 + i) for i in range(due - 1)])
    await runner.catch_up()
    assert await snapshot_seq() == 400 and runner.position == 400 + due - 1
    await store.append(scheduled(10_000))
    await runner.catch_up()
    assert await snapshot_seq() == 400 + due

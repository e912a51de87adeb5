"""Training pool (no server): the fold and its laws, the window, and the sync / trainer decisions."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.games import get_game
from engine.mcts import SearchSettings, UniformEvaluator
from engine.samples import samples_from_record
from engine.selfplay import GameRecord, InvalidGameRecord, SelfplaySettings, check_record, play_games
from engine.train import TrainConfig
from handlers.loop.config import TrainingSection
from handlers.loop.sync import interrupted_batch, plan_shards, record_of, shard_id_for
from handlers.loop.training_plan import choose_parent, plan_training, steps_for
from projections.models import ModelRegistryProjection, fold_numbered
from projections.pool import Pool, PoolProjection, training_window, window_size
from streams import codec
from streams import events as ev
from streams.games import GameFinished, pack_policies

FIXTURES = Path(__file__).parent.parent / "fixtures"

RUN = "r"
P = PoolProjection()


def batch(
    i: int, first: int, last: int, positions: int = 10, model: str = "m0", shard_id: str | None = None
) -> ev.PoolBatchSynced:
    return ev.PoolBatchSynced(
        id=f"b{i}",
        time=float(i),
        run=RUN,
        shard_id=shard_id or f"s{first}-{last}-{model}",
        object_name=f"o{i}",
        digest="d",
        games=2,
        positions=positions,
        games_first_seq=first,
        games_last_seq=last,
        models=[model],
    )


def started(i: int, parent: str = "m0") -> ev.TrainingStarted:
    return ev.TrainingStarted(
        id=f"t{i}",
        time=float(i),
        run=RUN,
        trainer="x",
        parent_model=parent,
        shards=[],
        window_positions=0,
        samples_planned=0,
    )


def saved(i: int, training: str, model: str = "m1", generation: int = 1) -> ev.CheckpointSaved:
    return ev.CheckpointSaved(
        id=f"c{i}",
        time=float(i),
        run=RUN,
        causation_id=training,
        model_id=model,
        object_name="o",
        digest="d",
        generation=generation,
    )


def fold_seq(events, state: Pool | None = None, start: int = 1) -> Pool:
    current = P.initial() if state is None else state
    for seq, event in enumerate(events, start):
        current = P.apply_at(current, event, seq)
    return current


# -- the fold -------------------------------------------------------------------------------


@st.composite
def pool_events(draw):
    out, next_seq, trainings = [], 1, []
    for i in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["batch", "batch", "redo", "multi", "train", "saved", "nan"]))
        if kind == "batch" or (kind in ("redo", "multi") and not out):
            size = draw(st.integers(1, 5))
            overlap = draw(st.integers(0, 2))
            first = max(1, next_seq - overlap)
            out.append(
                batch(i, first, first + size, draw(st.integers(1, 30)), draw(st.sampled_from(["m0", "m1"])))
            )
            next_seq = first + size + 1
        elif kind in ("redo", "multi"):
            prior = draw(
                st.sampled_from([e for e in out if isinstance(e, ev.PoolBatchSynced)] or [batch(i, 1, 2)])
            )
            model = prior.models[0] if kind == "redo" else "m9"
            out.append(batch(i, prior.games_first_seq, prior.games_last_seq, prior.positions, model))
        elif kind == "train":
            out.append(started(i))
            trainings.append(f"t{i}")
        elif trainings:
            target = draw(st.sampled_from(trainings))
            if kind == "saved":
                out.append(saved(i, target))
            else:
                out.append(
                    ev.HealthCheckFailed(
                        id=f"h{i}",
                        time=float(i),
                        run=RUN,
                        check="nan_loss",
                        severity="critical",
                        detail="",
                        causation_id=target,
                    )
                )
    return out


@settings(max_examples=100)
@given(pool_events(), st.data())
def test_snapshot_plus_tail_equals_full_replay(events, data):
    cut = data.draw(st.integers(0, len(events)))
    snapshot = fold_seq(events[:cut])
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(snapshot), type=Pool)
    assert fold_seq(events[cut:], restored, cut + 1) == fold_seq(events)


@settings(max_examples=100)
@given(pool_events())
def test_totals_are_the_sum_of_held_shards_and_ranges_stay_disjoint(events):
    pool = fold_seq(events)
    assert pool.positions == sum(s.positions for s in pool.shards)
    assert pool.games == sum(s.games for s in pool.shards)
    ranges = sorted({(s.games_first_seq, s.games_last_seq) for s in pool.shards})
    assert list(pool.ranges) == ranges
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    keys = [(s.games_first_seq, s.games_last_seq, s.models) for s in pool.shards]
    assert len(keys) == len(set(keys))


def test_a_redone_batch_counts_once_and_an_overlapping_one_is_ignored():
    pool = fold_seq(
        [
            batch(1, 1, 10, 50, "m0"),
            batch(2, 1, 10, 40, "m1"),  # the same batch's shard of another model: kept
            batch(3, 1, 10, 50, "m0", shard_id="other-id"),  # redone after a crash: ignored
            batch(4, 5, 12, 70, "m0"),  # overlaps 1..10: ignored
            batch(5, 11, 20, 30, "m0"),
        ]
    )
    assert [s.positions for s in pool.shards] == [50, 40, 30]
    assert pool.positions == pool.positions_since_training == 120
    assert pool.ignored_batches == 2
    assert pool.ranges == ((1, 10), (11, 20))


def test_other_events_change_nothing():
    pool = fold_seq([batch(1, 1, 4)])
    assert P.apply(pool, ev.NodeJoined(id="n", time=0.0, run=RUN, node="x")) is pool


def test_training_resets_positions_and_stays_open_until_its_checkpoint():
    pool = fold_seq([batch(1, 1, 4, 30), batch(2, 5, 9, 20), started(3)])
    assert pool.positions_since_training == 0 and pool.positions == 50
    assert pool.open_training is not None and pool.open_training.new_positions == 50
    pool = fold_seq([saved(4, "elsewhere"), batch(5, 10, 12, 7)], pool, 4)
    assert pool.open_training is not None and pool.positions_since_training == 7
    pool = fold_seq([saved(6, "t3", "m1")], pool, 6)
    assert pool.open_training is None
    assert pool.trainings[-1].outcome == "checkpoint" and pool.trainings[-1].model_id == "m1"


def test_a_diverged_training_ends_and_a_newer_one_supersedes_an_open_one():
    nan = ev.HealthCheckFailed(
        id="h", time=0.0, run=RUN, check="nan_loss", severity="critical", detail="", causation_id="t1"
    )
    warning = ev.HealthCheckFailed(
        id="w", time=0.0, run=RUN, check="pool_shard", severity="warning", detail="", causation_id="t3"
    )
    pool = fold_seq([started(1), nan, started(3), warning, started(5), started(5)])
    assert [t.outcome for t in pool.trainings] == ["diverged", "superseded", ""]


# -- the window -----------------------------------------------------------------------------


def pool_of(positions: list[int], models: list[str] | None = None) -> Pool:
    models = models or ["m0"] * len(positions)
    return fold_seq(
        [
            batch(i, 10 * i + 1, 10 * i + 9, n, m)
            for i, (n, m) in enumerate(zip(positions, models, strict=True))
        ]
    )


def test_window_size_fixed_and_power_law():
    fixed = TrainingSection(window="fixed", window_positions=100)
    power = TrainingSection(window="power", window_positions=100, window_exponent=0.5)
    assert window_size(50, fixed) == 50  # never above the total
    assert window_size(10_000, fixed) == 100
    assert window_size(50, power) == 50
    assert window_size(100, power) == 100
    assert window_size(10_000, power) == 1000  # 100 * (10000 / 100) ** 0.5
    assert window_size(0, power) == 0
    sizes = [window_size(n, power) for n in range(100, 5000, 97)]
    assert sizes == sorted(sizes) and all(
        100 <= s <= n for s, n in zip(sizes, range(100, 5000, 97), strict=True)
    )


def test_window_is_newest_shards_first_up_to_its_size():
    pool = pool_of([40, 40, 40, 40, 40])
    window = training_window(pool, (), TrainingSection(window="fixed", window_positions=100))
    assert [s.games_first_seq for s in window] == [41, 31, 21]  # 120 >= 100: the last whole shard
    grown = training_window(
        pool, (), TrainingSection(window="power", window_positions=40, window_exponent=1.0)
    )
    assert len(grown) == 5


def test_window_leaves_out_shards_of_reverted_models():
    pool = pool_of([10, 10, 10, 10], ["m0", "m1", "m2", "m2"])
    config = TrainingSection(window="fixed", window_positions=1000)
    assert [s.model_id for s in training_window(pool, ["m2"], config)] == ["m1", "m0"]
    registry = registry_with_rollback()
    assert registry.reverted_models == frozenset({"m2"})
    assert [s.model_id for s in training_window(pool, registry, config)] == ["m1", "m0"]


def checkpoint(seq: int, model: str, generation: int, parent: str = "") -> ev.CheckpointSaved:
    return ev.CheckpointSaved(
        id=f"c{seq}",
        time=float(seq),
        run=RUN,
        model_id=model,
        object_name=f"models/{model}.pt",
        digest="d",
        generation=generation,
        parent_model=parent,
    )


def registry_with_rollback(rolled_back: bool = True):
    events = [
        (1, checkpoint(1, "m0", 0)),
        (2, checkpoint(2, "m1", 1, "m0")),
        (3, ev.CandidatePromoted(id="p3", time=3.0, run=RUN, model_id="m1", generation=1)),
        (4, checkpoint(4, "m2", 2, "m1")),
        (5, ev.CandidatePromoted(id="p5", time=5.0, run=RUN, model_id="m2", generation=2)),
        (6, checkpoint(6, "m3", 3, "m2")),  # trained from m2, never promoted
    ]
    if rolled_back:
        events.append(
            (
                7,
                ev.ChampionRolledBack(
                    id="rb", time=7.0, run=RUN, to_promotion_seq=3, model_id="m1", reverted_models=["m2"]
                ),
            )
        )
    return fold_numbered(ModelRegistryProjection(), events)


# -- trainer decisions ----------------------------------------------------------------------


def test_parent_is_the_newest_checkpoint_then_the_champion_after_a_rollback():
    assert choose_parent(registry_with_rollback(False)).model_id == "m3"
    registry = registry_with_rollback(True)
    assert choose_parent(registry).model_id == "m1"  # m3 descends from the reverted m2
    later = ModelRegistryProjection().apply_at(registry, checkpoint(8, "m4", 2, "m1"), 8)
    assert choose_parent(later).model_id == "m4"
    assert choose_parent(ModelRegistryProjection().initial()) is None


def test_steps_keep_samples_per_new_position_and_the_configured_cap():
    config = TrainingSection(max_samples_per_position=2.0, train=TrainConfig(steps=50, batch_size=32))
    assert steps_for(160, 10_000, config) == (10, 32)  # 2 * 160 / 32
    assert steps_for(100_000, 10_000, config) == (50, 32)  # capped by train.steps
    assert steps_for(5, 10_000, config) == (1, 32)  # at least one step
    assert steps_for(160, 20, config) == (16, 20)  # a batch no larger than the window


def test_a_training_is_planned_once_the_threshold_is_crossed():
    config = TrainingSection(threshold_positions=25, window="fixed", window_positions=1000)
    registry = registry_with_rollback(True)
    pool = pool_of([10, 10], ["m1", "m2"])
    assert plan_training(pool, registry, config, run=RUN, trainer="x") is None
    pool = fold_seq([batch(9, 100, 101, 10, "m1")], pool, 3)
    plan = plan_training(pool, registry, config, run=RUN, trainer="x")
    assert plan is not None and plan.parent_model == "m1"
    assert plan.shards == [pool.shards[2].shard_id, pool.shards[0].shard_id]  # m2's left out
    assert plan.window_positions == 20
    again = plan_training(pool, registry, config, run=RUN, trainer="y")
    assert again is not None and again.id == plan.id  # derived from the pool's last shard
    after = P.apply_at(pool, plan, 4)
    assert plan_training(after, registry, config, run=RUN, trainer="x") is None
    forced = plan_training(after, registry, config, run=RUN, trainer="x", force_positions=30)
    assert forced is not None and forced.id != plan.id


# -- from games to shards -------------------------------------------------------------------


def tictactoe_games(n: int, seed: int = 0, opening: int = 0):
    game = get_game("tictactoe")
    settings_ = SelfplaySettings(
        search=SearchSettings(simulations=8), games_in_flight=4, random_opening_moves=opening
    )
    return game, list(play_games(game, UniformEvaluator(), settings_, n, np.random.default_rng(seed)))


def finished(record, i: int, model: str = "m0") -> GameFinished:
    return GameFinished(
        id=f"g{i}",
        time=0.0,
        run=RUN,
        game_id=f"g{i}",
        game="tictactoe",
        moves=list(record.moves),
        **pack_policies(record.policies),
        root_values=list(record.root_values),
        full_search=list(record.full_search),
        outcome=record.outcome,
        model_id=model,
    )


def test_a_finished_game_becomes_the_same_samples_as_its_engine_record():
    game, records = tictactoe_games(3, opening=2)
    for i, record in enumerate(records):
        back = record_of(finished(record, i))
        assert back == record and back.opening_plies == 2
        assert len(back.root_values) == len(back.policies) == back.plies - 2
        a, b = samples_from_record(game, back), samples_from_record(game, record)
        assert np.array_equal(a.planes, b.planes) and np.array_equal(a.values, b.values)
        assert np.array_equal(a.searched, np.asarray(record.root_values, np.float32))


def test_a_stored_v4_game_and_its_v5_upcast_give_the_same_samples():
    data = (FIXTURES / "game_finished_v4.msgpack").read_bytes()
    raw = msgspec.msgpack.decode(data)  # read as version 4 readers did: policies as float lists
    v4 = GameRecord(moves=tuple(raw["moves"]), policies=tuple(tuple(p) for p in raw["policies"]),
                    outcome=raw["outcome"], plies=len(raw["moves"]),
                    opening_plies=len(raw["moves"]) - len(raw["policies"]),
                    root_values=tuple(raw["root_values"]), full_search=tuple(raw["full_search"]))
    event = codec.decode(data)
    assert isinstance(event, GameFinished) and event.v == 5 and event.policies == []
    v5 = record_of(event)
    game = get_game("tictactoe")
    check_record(game, v4)
    check_record(game, v5)
    assert v5.opening_plies == v4.opening_plies == 1 and v5.full_search == v4.full_search
    a, b = samples_from_record(game, v4), samples_from_record(game, v5)
    assert len(a) == len(b) == sum(v4.full_search) > 0
    for name in ("planes", "policies", "values", "searched"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_a_game_with_malformed_packed_policies_is_an_invalid_record():
    _, records = tictactoe_games(1)
    good = finished(records[0], 0)
    for bad in (msgspec.structs.replace(good, policy_f32=good.policy_f32[:-4]),
                msgspec.structs.replace(good, policy_width=3),
                msgspec.structs.replace(good, policies=[[1.0]])):
        with pytest.raises(InvalidGameRecord):
            check_record(get_game("tictactoe"), record_of(bad))


def test_a_capped_game_gives_samples_of_its_fully_searched_moves_only():
    game = get_game("tictactoe")
    settings_ = SelfplaySettings(
        search=SearchSettings(simulations=8), games_in_flight=4, full_search_fraction=0.5, fast_simulations=2
    )
    records = list(play_games(game, UniformEvaluator(), settings_, 4, np.random.default_rng(1)))
    for i, record in enumerate(records):
        back = record_of(finished(record, i))
        assert back == record and back.full_search and len(back.full_search) == len(back.policies)
        assert len(samples_from_record(game, back)) == sum(back.full_search) < len(back.policies)


def test_a_batch_gives_one_shard_per_model_over_the_batch_range():
    _, records = tictactoe_games(5)
    games = [(10 + i, finished(r, i, "mB" if i % 2 else "mA")) for i, r in enumerate(records)]
    plans = plan_shards(10, 14, list(reversed(games)))
    assert [(p.model_id, [g.id for g in p.games]) for p in plans] == [
        ("mA", ["g0", "g2", "g4"]),
        ("mB", ["g1", "g3"]),
    ]
    assert {p.shard_id for p in plans} == {shard_id_for(10, 14, "mA"), shard_id_for(10, 14, "mB")}


def test_an_interrupted_batch_is_found_past_the_position():
    pool = fold_seq([batch(1, 1, 10), batch(2, 11, 20, model="m0"), batch(3, 11, 20, model="m1")])
    assert interrupted_batch(pool, 20) is None
    assert interrupted_batch(pool, 10) == (11, 20)
    assert interrupted_batch(pool, 0) == (1, 10)  # the oldest first

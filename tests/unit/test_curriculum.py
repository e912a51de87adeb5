"""Curriculum (no server): stage from the effective champion's generation, rollbacks, settings."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.loop.config import CurriculumStage, GameSpec, LoopConfig, SelfplaySection
from projections.curriculum import (
    CurriculumProjection,
    CurriculumState,
    selfplay_settings_for,
    stage_index_for,
)
from projections.models import ModelRegistryProjection, fold_numbered
from streams import events as ev

RUN = "r"
STAGES = [
    CurriculumStage(name="warmup", until_generation=2, simulations=16, random_opening_moves=2),
    CurriculumStage(
        name="middle", until_generation=4, simulations=64, full_search_fraction=0.25, fast_simulations=16
    ),
    CurriculumStage(name="full", simulations=128, use_openings=True),
]


def checkpoint(seq: int, model: str, generation: int) -> ev.CheckpointSaved:
    return ev.CheckpointSaved(
        id=f"c{seq}",
        time=float(seq),
        run=RUN,
        model_id=model,
        object_name=f"models/{model}.pt",
        digest="d",
        generation=generation,
    )


def promoted(seq: int, model: str) -> ev.CandidatePromoted:
    return ev.CandidatePromoted(id=f"p{seq}", time=float(seq), run=RUN, model_id=model)


def rolled_back(seq: int, to_seq: int, model: str) -> ev.ChampionRolledBack:
    return ev.ChampionRolledBack(
        id=f"r{seq}", time=float(seq), run=RUN, to_promotion_seq=to_seq, model_id=model
    )


def fold(events, projection=None, state=None) -> CurriculumState:
    projection = projection or CurriculumProjection(STAGES)
    current = projection.initial() if state is None else state
    for seq, event in events:
        current = projection.apply_at(current, event, seq)
    return current


def test_stage_index_follows_until_generation():
    assert [stage_index_for(STAGES, g) for g in range(7)] == [0, 0, 1, 1, 2, 2, 2]


def test_stages_advance_with_promotions_and_go_back_after_a_rollback():
    log = [(1, checkpoint(1, "m0", 0))]
    state = fold(log)
    assert (state.stage, state.champion, state.generation) == ("warmup", "m0", 0)
    log += [
        (2, checkpoint(2, "m1", 1)),
        (3, promoted(3, "m1")),
        (4, checkpoint(4, "m2", 2)),
        (5, promoted(5, "m2")),
    ]
    assert fold(log).stage == "middle"
    log += [(6, checkpoint(6, "m3", 3)), (7, checkpoint(7, "m4", 4)), (8, promoted(8, "m4"))]
    state = fold(log)
    assert (state.stage, state.generation) == ("full", 4)
    log += [(9, rolled_back(9, 3, "m1"))]  # back to the promotion at seq 3 (m1, generation 1)
    state = fold(log)
    assert (state.stage, state.champion, state.generation) == ("warmup", "m1", 1)
    assert [(c.to_stage, c.cause) for c in state.changes] == [
        ("warmup", "initial"),
        ("middle", "promotion"),
        ("full", "promotion"),
        ("warmup", "rollback"),
    ]
    log += [(10, rolled_back(10, 1, "m0"))]  # to the initial champion's checkpoint
    assert fold(log).champion == "m0"


def test_a_trained_checkpoint_alone_does_not_change_the_stage():
    state = fold([(1, checkpoint(1, "m0", 0)), (2, checkpoint(2, "m1", 5))])
    assert (state.stage, state.champion) == ("warmup", "m0")


def test_without_stages_there_is_one_stage_forever():
    projection = CurriculumProjection()
    state = fold(
        [(1, checkpoint(1, "m0", 0)), (2, checkpoint(2, "m9", 9)), (3, promoted(3, "m9"))], projection
    )
    assert (state.stage, state.generation) == ("main", 9)


@st.composite
def champion_histories(draw):
    events, promotions, models = [], [], []
    seq = 0
    for _ in range(draw(st.integers(0, 25))):
        seq += 1
        kind = draw(st.sampled_from(["checkpoint", "promote", "rollback"]))
        if kind == "checkpoint" or not models:
            model = f"m{len(models)}"
            events.append((seq, checkpoint(seq, model, len(models) and draw(st.integers(1, 6)))))
            models.append(model)
            if len(models) == 1:
                promotions.append((seq, model))
        elif kind == "promote":
            model = draw(st.sampled_from(models))
            events.append((seq, promoted(seq, model)))
            promotions.append((seq, model))
        elif promotions:
            to_seq, model = draw(st.sampled_from(promotions))
            events.append((seq, rolled_back(seq, to_seq, model)))
    return events


@settings(max_examples=100)
@given(champion_histories(), st.data())
def test_generation_is_the_registry_champions_and_snapshots_fold_on(events, data):
    state = fold(events)
    registry = fold_numbered(ModelRegistryProjection(), events)
    if registry.champion is not None:
        assert state.champion == registry.champion.model_id
        assert state.generation == registry.models[state.champion].generation
    assert state.stage == STAGES[stage_index_for(STAGES, state.generation)].name
    cut = data.draw(st.integers(0, len(events)))
    snapshot = msgspec.msgpack.decode(msgspec.msgpack.encode(fold(events[:cut])), type=CurriculumState)
    assert fold(events[cut:], state=snapshot) == state


def test_selfplay_settings_come_from_the_stage():
    config = LoopConfig(
        game=GameSpec(name="connect4"), curriculum=STAGES, selfplay=SelfplaySection(games_in_flight=32)
    )
    warmup = selfplay_settings_for(STAGES[0], config)
    assert warmup.search.simulations == 16 and warmup.random_opening_moves == 2
    assert warmup.games_in_flight == 32 and warmup.openings == ()
    assert warmup.search.dirichlet_fraction == STAGES[0].dirichlet_fraction
    assert warmup.search.temperature_moves == STAGES[0].temperature_moves
    assert not warmup.capped and warmup.full_search_fraction == 1.0
    middle = selfplay_settings_for(STAGES[1], config)
    assert middle.capped and (middle.full_search_fraction, middle.fast_simulations) == (0.25, 16)
    full = selfplay_settings_for(STAGES[2], config)
    assert full.search.simulations == 128 and len(full.openings) > 10
    assert all(len(o) > 0 for o in full.openings)
    tictactoe = LoopConfig(game=GameSpec(name="tictactoe"), curriculum=STAGES)
    assert selfplay_settings_for(STAGES[2], tictactoe).openings == ()  # no opening set

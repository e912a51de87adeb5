"""The selfplay worker plays the stage the curriculum projection gives under the configured
stages: a promotion past ``until_generation`` moves it on, a rollback brings the stage back."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from engine.checkpoint import make_meta, save_checkpoint
from engine.games import get_game
from engine.network import build_network
from handlers.loop.selfplay import play
from handlers.runtime.service import run_service
from projections.models import ModelRegistryProjection
from projections.runner import state_as_of
from streams import events as ev
from streams import names
from streams.objects import put_object
from tests.integration.test_selfplay_worker import _until
from tests.loop_configs import write_tiny_loop

pytestmark = pytest.mark.integration
STAGES = [
    {"name": "warm", "until_generation": 1, "simulations": 8, "temperature_moves": 3},
    {"name": "deep", "until_generation": None, "simulations": 16, "temperature_moves": 3},
]


async def test_selfplay_follows_the_curriculum_through_a_promotion_and_a_rollback(
    store, nats_settings, tmp_path
):
    _, cfg = write_tiny_loop(nats_settings, tmp_path, selfplay={"games_in_flight": 4}, curriculum=STAGES)
    game = get_game("tictactoe")
    stop = asyncio.Event()

    async def body(ctx):
        await play(ctx, cfg)

    task = asyncio.create_task(run_service("selfplay", cfg.nats, cfg.run, body,
                                           install_signals=False, stop=stop))
    try:
        games = await _until(store, lambda gs: len(gs) >= 4)
        assert {(g.stage, g.search["simulations"]) for g in games} == {("warm", 8)}
        net = build_network(game, cfg.network, seed=7)
        data = save_checkpoint(net, make_meta(net, game=game, model_id="t1-gen1", generation=1))
        digest = await put_object(store.log, names.OBJ_MODELS, names.model_object("t1-gen1"), data)
        await store.append(ev.CheckpointSaved.new(
            "t1", model_id="t1-gen1", object_name=names.model_object("t1-gen1"), digest=digest,
            generation=1, parent_model="t1-gen0", game="tictactoe",
            architecture=msgspec.to_builtins(cfg.network)))
        await store.append(ev.CandidatePromoted.new("t1", model_id="t1-gen1", generation=1))
        games = await _until(store, lambda gs: any(g.model_id == "t1-gen1" for g in gs))
        assert {(g.stage, g.search["simulations"]) for g in games if g.model_id == "t1-gen1"} == {
            ("deep", 16)}

        registry, _ = await state_as_of(store, ModelRegistryProjection(), "t1")
        initial = registry.promotions[0]
        seen = len(games)
        await store.append(ev.ChampionRolledBack.new("t1", to_promotion_seq=initial.seq,
                                                     model_id=initial.model_id,
                                                     reverted_models=["t1-gen1"], reason="test"))
        games = await _until(store, lambda gs: any(g.model_id == "t1-gen0" for g in gs[seen:]))
        back = [g for g in games[seen:] if g.model_id == "t1-gen0"]
        assert {(g.stage, g.search["simulations"]) for g in back} == {("warm", 8)}
    finally:
        stop.set()
        await task

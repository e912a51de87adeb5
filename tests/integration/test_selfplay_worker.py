"""The selfplay worker against a real server: well-formed games, champion pickup, halt."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from engine.checkpoint import make_meta, save_checkpoint
from engine.games import get_game
from engine.network import build_network
from engine.selfplay import check_record
from handlers.loop.selfplay import play
from handlers.loop.sync import record_of
from handlers.runtime.service import run_service
from streams import events as ev
from streams import names
from streams.objects import put_object
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration


async def _games(store):
    return [s.event async for s in store.read(names.GAMES)]


async def test_published_games_replay_into_legal_games_with_their_outcome(store, nats_settings, tmp_path):
    _, cfg = write_tiny_loop(nats_settings, tmp_path)
    result = {}

    async def body(ctx):
        result["totals"] = await play(ctx, cfg, max_games=24)

    await run_service("selfplay", cfg.nats, cfg.run, body, install_signals=False)
    games = await _games(store)
    assert len(games) == result["totals"].games >= 24
    game = get_game("tictactoe")
    for g in games:
        assert g.v == 5 and g.policies == [] and g.policy_width == game.num_actions
        final = check_record(game, record_of(g))
        assert final.outcome() == g.outcome
        assert g.model_id == "t1-gen0" and g.stage == "main" and g.search["simulations"] == 16
    assert len({g.game_id for g in games}) == len(games)


async def test_a_new_champion_is_picked_up_between_games(store, nats_settings, tmp_path):
    _, cfg = write_tiny_loop(nats_settings, tmp_path,
                             selfplay={"games_in_flight": 4})
    game = get_game("tictactoe")
    stop = asyncio.Event()

    async def body(ctx):
        await play(ctx, cfg)

    task = asyncio.create_task(run_service("selfplay", cfg.nats, cfg.run, body,
                                           install_signals=False, stop=stop))
    try:
        await _until(store, lambda gs: len(gs) >= 4)
        net = build_network(game, cfg.network, seed=99)
        meta = make_meta(net, game=game, model_id="t1-gen1", generation=1, parent_id="t1-gen0")
        data = save_checkpoint(net, meta)
        digest = await put_object(store.log, names.OBJ_MODELS, names.model_object("t1-gen1"), data)
        await store.append(ev.CheckpointSaved.new(
            "t1", model_id="t1-gen1", object_name=names.model_object("t1-gen1"), digest=digest,
            generation=1, parent_model="t1-gen0", game="tictactoe",
            architecture=msgspec.to_builtins(cfg.network)))
        await store.append(ev.CandidatePromoted.new("t1", model_id="t1-gen1", generation=1))
        games = await _until(store, lambda gs: any(g.model_id == "t1-gen1" for g in gs))
        firsts = [i for i, g in enumerate(games) if g.model_id == "t1-gen1"]
        # after the switch no game of the old champion starts: only the ones in flight finish
        later_old = [g for g in games[firsts[0]:] if g.model_id == "t1-gen0"]
        assert len(later_old) < cfg.selfplay.games_in_flight
        assert all(g.generation == 1 for g in games if g.model_id == "t1-gen1")
    finally:
        stop.set()
        await task


async def _until(store, predicate, timeout: float = 60.0):
    """The games once ``predicate(games)`` holds."""

    async def games_if():
        games = await _games(store)
        return games if predicate(games) else None

    return await until(games_if, timeout, "the selfplay games")

"""The selfplay worker: plays the champion against itself, many games at once, and publishes
every finished game to ``GAMES`` as ``game.finished``.

It follows the model registry (the champion) and the curriculum (the stage's search
settings); when either changes it lets the games in flight finish and starts the next games
with the new champion (verified against its recorded digest). On a halt or a stop the games
in flight are abandoned (no partial game is ever published) and no new game starts until
resumed. With no model in the registry yet it creates generation 0 itself, so it can run
standalone (``jetzero selfplay --games N``) before the rest of the loop exists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass

import msgspec
import numpy as np

from engine.checkpoint import load_checkpoint
from engine.devices import batches_in_flight_for, games_in_flight_for, resolve_device
from engine.games import get_game
from engine.network import NetworkEvaluator, set_torch_threads
from engine.overlapped_selfplay import selfplay_driver
from engine.selfplay import GameRecord
from handlers.loop.checkpoints import create_initial_model
from handlers.loop.config import LoopConfig
from projections import build_projection
from projections.curriculum import selfplay_settings_for
from projections.loop_status import LoopStatus
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import names
from streams.games import GameFinished, pack_policies
from streams.kv import Heartbeat, beat
from streams.objects import get_object

log = logging.getLogger(__name__)
BEAT_WAIT_S = 1.0  # a heartbeat's wait for the server before it is skipped


@dataclass
class Totals:
    games: int = 0
    positions: int = 0
    evaluations: int = 0
    started: float = 0.0

    def rates(self) -> dict[str, float]:
        span = max(time.monotonic() - self.started, 1e-9)
        return {
            "games": float(self.games), "positions": float(self.positions),
            "evaluations": float(self.evaluations), "evals_per_s": self.evaluations / span,
            "games_per_minute": 60.0 * self.games / span,
        }


def to_event(run: str, record: GameRecord, *, game: str, model_id: str, generation: int,
             stage: str, search: dict, worker: str) -> GameFinished:
    return GameFinished.new(
        run, game_id=os.urandom(8).hex(), game=game, moves=list(record.moves),
        **pack_policies(record.policies), root_values=list(record.root_values),
        full_search=list(record.full_search),
        outcome=record.outcome, model_id=model_id,
        generation=generation, stage=stage, search=search, worker=worker,
    )


def game_rng(seed: int, index: int, status: LoopStatus) -> np.random.Generator:
    """Worker ``index``'s randomness: ``selfplay.seed``, the index, the run's start number and
    its process restarts so far (no clock): two runs with one seed play the same games, and a
    restarted worker does not replay the games it played before."""
    return np.random.default_rng([seed, index, status.starts, status.restarts])


async def play(ctx, config: LoopConfig, *, max_games: int | None = None) -> Totals:
    """Play until stopped (or ``max_games`` published); returns the totals."""
    set_torch_threads(config.selfplay.torch_threads)
    device = resolve_device(config.selfplay.device)
    game = get_game(config.game.name, **config.game.params)
    index = int(ctx.extra.get("index", 0))
    worker = ctx.extra.get("node") or f"{socket.gethostname()}-selfplay-{index}"
    in_flight = games_in_flight_for(device, config.selfplay.games_in_flight,
                                    config.selfplay.gpu_games_in_flight)
    batches = batches_in_flight_for(device, config.selfplay.batches_in_flight)
    log.info("selfplay %s: device %s%s, %d games in flight in %d batch(es), %d torch thread(s)",
             worker, device, " (float16)" if config.selfplay.half_precision and device != "cpu" else "",
             in_flight, batches, config.selfplay.torch_threads)
    registry = ProjectionRunner(ctx.store, ModelRegistryProjection(), ctx.run)
    # no snapshot: one taken under other stages would hold another stage index
    curriculum = ProjectionRunner(ctx.store, build_projection("curriculum", config), ctx.run,
                                  use_snapshots=False)
    await registry.follow()
    await curriculum.follow()
    rng = game_rng(config.selfplay.seed, index, ctx.status.state)
    # a node agent names the model to play (one it verified): handlers.cluster.agent
    chosen = ctx.extra.get("champion") or (lambda: registry.state.champion)
    totals = Totals(started=time.monotonic())
    last_beat = 0.0
    try:
        if not registry.state.models:
            await create_initial_model(ctx.store, ctx.run, config, registry)
        await registry.wait_for(lambda s: s.champion is not None, timeout=60)
        while not ctx.stop.is_set() and (max_games is None or totals.games < max_games):
            champion = chosen()
            assert champion is not None  # waited for above; a rollback never removes it
            if ctx.halted:  # paused: say so at every health interval, start nothing
                await _beat(ctx, worker, champion.model_id, totals, paused=True)
                if await ctx.sleep(config.health.interval_s):
                    break
                continue
            record = registry.state.models.get(champion.model_id)
            if record is None:  # the registry refuses such a champion; an older snapshot may not
                log.error("selfplay %s: champion %s has no checkpoint; waiting for a valid one",
                          worker, champion.model_id)
                if await ctx.sleep(config.health.interval_s):
                    break
                continue
            data = await get_object(ctx.store.log, names.OBJ_MODELS, record.object_name,
                                    record.digest or None)
            net, _ = await asyncio.to_thread(load_checkpoint, data, game, config.network)
            # the curriculum projection's stage, once it has read as far as the registry has
            await curriculum.wait_for(lambda s: curriculum.position >= registry.position, timeout=30)
            stage_index = curriculum.state.stage_index
            stage = config.curriculum[stage_index]
            settings = msgspec.structs.replace(selfplay_settings_for(stage, config),
                                               games_in_flight=in_flight)
            search = msgspec.to_builtins(settings.search)
            if settings.capped:  # the playout cap is part of how the game was searched
                search.update(full_search_fraction=settings.full_search_fraction,
                              fast_simulations=settings.fast_simulations)
            budget = None if max_games is None else max_games - totals.games
            evaluator = NetworkEvaluator(net, device=device, half=config.selfplay.half_precision)
            driver = selfplay_driver(game, evaluator, settings, rng, n_games=budget, batches=batches)
            log.info("selfplay %s: champion %s (generation %d), stage %s",
                     worker, champion.model_id, champion.generation, stage.name)
            draining = False
            evals_before = totals.evaluations
            while not driver.finished:
                records = await asyncio.to_thread(driver.step)
                if records:
                    events = [to_event(ctx.run, r, game=game.name, model_id=champion.model_id,
                                       generation=champion.generation, stage=stage.name,
                                       search=search, worker=worker) for r in records]
                    await ctx.store.append_many(events)
                    totals.games += len(records)
                    totals.positions += sum(len(r.policies) for r in records)
                totals.evaluations = evals_before + driver.stats.evaluations
                if time.monotonic() - last_beat >= config.health.interval_s:
                    await _beat(ctx, worker, champion.model_id, totals)
                    last_beat = time.monotonic()
                if ctx.halted or ctx.stop.is_set():
                    break  # abandon the games in flight: no partial game is ever published
                changed = (chosen() != champion
                           or curriculum.state.stage_index != stage_index)
                if changed and not draining:
                    # finish the games in flight with this champion, start no new one
                    driver.stop_starting()
                    draining = True
    finally:
        await registry.stop()
        await curriculum.stop()
    return totals


async def _beat(ctx, worker: str, model_id: str, totals: Totals, *, paused: bool = False) -> None:
    """The worker's heartbeat; skipped while the connection is lost, and when no server takes
    it within ``BEAT_WAIT_S`` (the next says the same), so the games go on meanwhile."""
    if not ctx.log.nc.is_connected:
        return
    detail = totals.rates()
    detail["paused"] = 1.0 if paused else 0.0
    heartbeat = Heartbeat(node=worker, host=socket.gethostname(), roles=["selfplay"],
                          model_id=model_id, detail=detail)
    try:
        await asyncio.wait_for(beat(ctx.log, ctx.run, heartbeat), BEAT_WAIT_S)
    except Exception as exc:  # noqa: BLE001 - a lost beat is retried at the next interval
        log.debug("selfplay %s: heartbeat skipped (%s)", worker, exc.__class__.__name__)


async def serve(ctx, config: LoopConfig) -> None:
    """The selfplay worker service, at ``selfplay.nice`` (it soaks up the CPU the trainer and
    the match players leave, and yields to them when they run)."""
    if config.selfplay.nice:
        os.nice(config.selfplay.nice)
    await play(ctx, config)

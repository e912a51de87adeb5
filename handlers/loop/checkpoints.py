"""Publishing a checkpoint, and creating generation 0: the one way a model enters a run.

``publish_checkpoint`` stores the bytes in ``OBJ_MODELS`` first and only then appends
``checkpoint.saved`` naming them with their digest, so the log never names bytes that are not
stored. The trainer (each trained checkpoint, and generation 0), the selfplay worker
(generation 0 when it runs alone) and the models import (``handlers.promotion.models``) all
publish through it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from engine.checkpoint import make_meta, save_checkpoint
from engine.games import get_game
from engine.network import build_network
from handlers.loop.config import LoopConfig
from handlers.loop.training_plan import HANDLER, initial_model_id
from streams import events as ev
from streams import names
from streams.envelope import derived_id
from streams.objects import put_object
from streams.store import EventStore

__all__ = ["Published", "create_initial_model", "publish_checkpoint"]

log = logging.getLogger(__name__)


class Published(msgspec.Struct, frozen=True, kw_only=True):
    event: ev.CheckpointSaved
    seq: int


async def publish_checkpoint(
    store: EventStore,
    run: str,
    data: bytes,
    *,
    event_id: str,
    model_id: str,
    abandoned: Callable[[], bool] = lambda: False,
    **fields: Any,
) -> Published | None:
    """Store ``data`` as ``model_id``'s checkpoint, then append its ``checkpoint.saved``.

    ``fields`` are the event's other fields (generation, parent_model, step, game, architecture,
    losses, source, causation). When ``abandoned()`` turns true once the bytes are stored, no
    event is appended and None is returned (stored bytes that nothing names are harmless).
    """
    object_name = names.model_object(model_id)
    digest = await put_object(store.log, names.OBJ_MODELS, object_name, data)
    if abandoned():
        return None
    event = ev.CheckpointSaved(id=event_id, time=time.time(), run=run, model_id=model_id,
                               object_name=object_name, digest=digest, **fields)
    return Published(event=event, seq=await store.append(event))


async def create_initial_model(store: EventStore, run: str, config: LoopConfig, registry) -> str:
    """Generation 0: a fresh network seeded from the config (the same bytes whoever makes it),
    published with an id derived from the run, so two creators record it once. ``registry``
    is a following registry runner."""
    game = get_game(config.game.name, **config.game.params)
    model_id = initial_model_id(run)
    seed = config.training.seed
    net = await asyncio.to_thread(build_network, game, config.network, seed=seed)
    meta = make_meta(
        net, game=game, model_id=model_id, game_params=config.game.params, generation=0,
        created=0.0, extra={"source": "initial", "seed": seed},
    )
    data = await asyncio.to_thread(save_checkpoint, net, meta)
    await publish_checkpoint(
        store, run, data, event_id=derived_id(f"run:{run}", HANDLER, 0), model_id=model_id,
        generation=0, step=0, game=game.name, architecture=msgspec.to_builtins(net.config),
        source="initial",
    )
    await registry.wait_for(lambda s: model_id in s.models, timeout=30)
    log.info("created %s (generation 0)", model_id)
    return model_id

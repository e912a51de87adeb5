"""The AI worker processes' shared pieces: nets by source, the raw-policy lane's batches.

A net is named by ``NetSource``: a checkpoint file the parent process fetched from the
object store and verified against the registry's digest (``load_checkpoint`` checks it again
against its own meta and the game), or, with no file, the untrained initial network of the
game (engine defaults, seed 0). ``evaluator`` keeps the loaded nets per process, the most
recent few. ``initialise`` is every worker's start (torch threads, niceness, ``SCHED_IDLE``). ``answer``
answers one batch of the raw-policy lane (``levels.choose_moves``) inside the
``ProcessPoolExecutor`` (spawned, so no torch or asyncio state is forked) that
``handlers.matchmaking.ai`` owns; the search levels run in ``search_worker`` processes.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

import msgspec

from engine.checkpoint import load_checkpoint_file
from engine.games import get_game
from engine.network import NetworkEvaluator, set_torch_threads
from handlers.matchmaking.levels import Batch, MoveRequest, choose_moves, initial_network

log = logging.getLogger(__name__)

__all__ = ["BatchJob", "NetSource", "answer", "evaluator", "initialise"]

_KEEP = 4
_evaluators: OrderedDict[tuple[str, str], NetworkEvaluator] = OrderedDict()


class NetSource(msgspec.Struct, frozen=True, kw_only=True):
    """Which net plays: ``path`` a verified checkpoint file; empty: the initial network."""

    game: str
    model_id: str
    path: str = ""


class BatchJob(msgspec.Struct, frozen=True, kw_only=True):
    net: NetSource
    requests: list[MoveRequest]
    max_think_ms: int


def initialise(threads: int, nice: int = 0, idle: bool = False) -> None:
    """The worker's entry point: torch's thread count, and its priority below the server's
    (searches are throughput work; the server's event loop is latency work). ``idle``: the
    process runs only on CPU time nothing else wants (Linux ``SCHED_IDLE``: any other task
    that wakes takes the CPU from it at once; a niceness alone still lets it finish its time
    slice first, which is where the server's moves waited). Where there is no such policy,
    ``nice`` alone."""
    set_torch_threads(threads)
    if nice:
        os.nice(nice)
    if idle and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:  # a container that refuses it: the niceness stands
            log.warning("AI worker: SCHED_IDLE refused (%s); running at niceness %d", exc, nice)


def evaluator(source: NetSource) -> NetworkEvaluator:
    """The evaluator of ``source``'s net, loaded once per process (the last few kept)."""
    key = (source.game, source.model_id)
    known = _evaluators.get(key)
    if known is not None:
        _evaluators.move_to_end(key)
        return known
    game = get_game(source.game)
    if source.path:
        net, _ = load_checkpoint_file(source.path, game)
    else:
        net = initial_network(game)
    loaded = _evaluators[key] = NetworkEvaluator(net)
    while len(_evaluators) > _KEEP:
        _evaluators.popitem(last=False)
    return loaded


def answer(job: bytes) -> bytes:
    """One batch (msgspec bytes of a ``BatchJob``) → msgspec bytes of its ``Batch``."""
    batch_job = msgspec.msgpack.decode(job, type=BatchJob)
    game = get_game(batch_job.net.game)
    batch: Batch = choose_moves(game, evaluator(batch_job.net), batch_job.requests,
                                max_think_ms=batch_job.max_think_ms)
    return msgspec.msgpack.encode(batch)

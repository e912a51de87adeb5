"""The trainer: one per run (a lease), trains a new checkpoint whenever enough positions arrived.

Under the ``trainer`` lease (waited for when held, renewed while working, its loss aborting
the training without a checkpoint) the trainer:

1. creates generation 0 if the registry has no model: a fresh net seeded from
   ``training.seed``, published by ``handlers.loop.checkpoints`` (source ``initial``, id
   derived from the run);
2. follows the pool and the registry; when ``positions_since_training`` reaches the threshold
   and the loop is not halted, appends ``training.started`` (id derived from the pool's last
   shard) naming the window's shards, the parent and the samples planned;
3. runs the open training: loads the shards (digests verified) and the parent, trains in a
   thread in chunks of steps (halt, stop or a lost lease between chunks abandons it), and
   publishes the checkpoint (``handlers.loop.checkpoints.publish_checkpoint``: the bytes
   first, then ``checkpoint.saved`` caused by the training). A NaN loss appends
   ``health.check_failed`` (``nan_loss``, critical) instead.

A ``training.started`` that has neither outcome is the open training: it is run again after
a restart or a resume, with the same ids, so nothing is emitted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import time
from collections.abc import Callable

import msgspec
import numpy as np

from engine.checkpoint import CheckpointMeta, load_checkpoint, make_meta, save_checkpoint
from engine.devices import resolve_device
from engine.errors import CheckpointError, TrainingDiverged
from engine.games import get_game
from engine.games.base import Game
from engine.network import PolicyValueNet, set_process_device, set_torch_threads
from engine.samples import InvalidSamples, Samples
from engine.train import TrainReport, TrainSession
from handlers.loop.checkpoints import create_initial_model, publish_checkpoint
from handlers.loop.config import LoopConfig
from handlers.loop.training_plan import HANDLER, combined, model_id_for, plan_training
from projections.models import ModelRecord, ModelRegistryProjection
from projections.pool import Pool, PoolProjection, Shard, Training
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.envelope import derived_id
from streams.errors import EventNotFound, LockHeld, StoreError
from streams.kv import Heartbeat, Lease, acquire_lease, beat
from streams.objects import get_object
from streams.store import EventStore

__all__ = ["HANDLER", "LEASE", "Trainer", "serve"]

LEASE = "trainer"
log = logging.getLogger(__name__)


class _Abandoned(Exception):
    pass


def _ended(training_id: str) -> Callable[[Pool], bool]:
    def ended(pool: Pool) -> bool:
        training = pool.training(training_id)
        return training is None or not training.open

    return ended


# -- the service --------------------------------------------------------------------------


class Trainer:
    """One trainer process: waits for the lease, then creates gen 0 and trains on thresholds."""

    def __init__(
        self,
        store: EventStore,
        run: str,
        config: LoopConfig,
        *,
        stop: asyncio.Event,
        halted: Callable[[], bool] = lambda: False,
        node: str = "",
        retry_s: float = 1.0,
        poll_s: float = 0.5,
    ):
        self.store = store
        self.run = run
        self.config = config
        self.training = config.training
        self.stop = stop
        self.halted = halted
        self.node = node or f"{socket.gethostname()}-{HANDLER}"
        self.owner = f"{self.node}#{os.getpid()}-{id(self):x}"  # this process, this trainer
        self.retry_s = retry_s
        self.poll_s = poll_s
        self.game: Game = get_game(config.game.name, **config.game.params)
        self.pool = ProjectionRunner(store, PoolProjection(), run)
        self.registry = ProjectionRunner(store, ModelRegistryProjection(), run)
        self.lost = asyncio.Event()
        self.leased = False  # holding the lease now
        self.detail: dict[str, float] = {
            "training_steps": 0.0,
            "policy_loss": 0.0,
            "value_loss": 0.0,
            "samples_per_s": 0.0,
        }
        self.trained: list[str] = []  # model ids this trainer saved

    # -- lease ----------------------------------------------------------------------------

    async def run_until_stopped(self) -> None:
        await self.pool.follow()
        await self.registry.follow()
        try:
            while not self.stop.is_set():
                lease = await self._acquire()
                if lease is None:
                    return
                self.lost.clear()
                self.leased = True
                renewer = asyncio.create_task(self._renew(lease))
                try:
                    await self.work()
                finally:
                    self.leased = False
                    renewer.cancel()
                    await asyncio.gather(renewer, return_exceptions=True)
                    await lease.release()
                if self.lost.is_set():
                    log.warning("trainer %s lost its lease; waiting to take it again", self.node)
        finally:
            await self.pool.stop()
            await self.registry.stop()

    async def _acquire(self) -> Lease | None:
        while not self.stop.is_set():
            try:
                return await acquire_lease(self.store.log, self.run, LEASE, self.owner)
            except LockHeld:
                await self.heartbeat(waiting=True)
                if await self._sleep(self.retry_s):
                    return None
        return None

    async def _renew(self, lease: Lease) -> None:
        every = max(0.2, self.config.nats.lock_ttl_s / 3)
        while True:
            await asyncio.sleep(every)  # a timer, not synchronisation
            try:
                await lease.renew()
            except LockHeld:
                self.lost.set()
                return

    async def _sleep(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    @property
    def _stopping(self) -> bool:
        return self.stop.is_set() or self.lost.is_set()

    # -- work under the lease ---------------------------------------------------------------

    async def work(self) -> None:
        """Create gen 0 if needed, then train whenever due, until stopped or the lease is lost."""
        await self.ensure_initial_model()
        last_beat = 0.0
        while not self._stopping:
            if time.monotonic() - last_beat >= self.config.health.interval_s:
                await self.heartbeat()
                last_beat = time.monotonic()
            if self.halted():
                await self._sleep(self.poll_s)
                continue
            training = await self.next_training()
            if training is None:
                await self._sleep(self.poll_s)
                continue
            await self.execute(training)

    async def ensure_initial_model(self) -> None:
        if self.registry.state.models or self._stopping:
            return
        await create_initial_model(self.store, self.run, self.config, self.registry)

    async def next_training(self) -> Training | None:
        """The open training (appending ``training.started`` first if one is due), or None."""
        pool, registry = self.pool.state, self.registry.state
        current = pool.open_training
        if current is not None and current.parent_model not in registry.reverted_models:
            return current
        force = current.new_positions if current is not None else None
        started = plan_training(
            pool, registry, self.training, run=self.run, trainer=self.node, force_positions=force
        )
        if started is None:
            return None
        await self.store.append(started)
        state = await self.pool.wait_for(lambda s: s.training(started.id) is not None, timeout=30)
        return state.training(started.id)

    async def execute(self, training: Training) -> str | None:
        """Run ``training``; the model id saved, or None (abandoned, diverged or no data)."""
        parent = self.registry.state.models.get(training.parent_model)
        if parent is None:
            await self._fail(
                training, "parent_checkpoint", f"parent {training.parent_model} is not in the registry"
            )
            return None
        samples = await self._load_window(training)
        if samples is None or len(samples) == 0:
            await self._fail(training, "training_data", "no readable shard in the window")
            return None
        try:
            net, meta = await self._load_parent(parent)
        except (CheckpointError, StoreError) as exc:
            await self._fail(training, "parent_checkpoint", f"parent {parent.model_id}: {exc}")
            return None
        batch = max(1, min(self.training.train.batch_size, len(samples)))
        steps = max(1, math.ceil(training.samples_planned / batch))
        try:
            report = await self._train(net, samples, training, steps)
        except _Abandoned:
            log.info("trainer: %s abandoned (halt, stop or lost lease)", training.training_id)
            return None
        except TrainingDiverged as exc:
            await self._fail(training, "nan_loss", str(exc))
            return None
        return await self._save(training, parent, meta.step, net, report)

    async def _load_window(self, training: Training) -> Samples | None:
        parts = []
        for shard_id in training.shards:
            shard = self.pool.state.shard(shard_id)
            if shard is None:
                continue
            try:
                data = await get_object(self.store.log, names.OBJ_POOL, shard.object_name, shard.digest)
                parts.append(await asyncio.to_thread(Samples.from_bytes, data))
            except (StoreError, InvalidSamples) as exc:
                await self._warn(training, shard, str(exc))
        return await asyncio.to_thread(Samples.concat, parts) if parts else None

    async def _load_parent(self, parent: ModelRecord) -> tuple[PolicyValueNet, CheckpointMeta]:
        try:
            data = await get_object(
                self.store.log, names.OBJ_MODELS, parent.object_name, parent.digest or None
            )
        except EventNotFound as exc:
            raise StoreError(str(exc)) from None
        return await asyncio.to_thread(load_checkpoint, data, self.game)

    async def _train(self, net, samples: Samples, training: Training, steps: int) -> TrainReport:
        cfg = msgspec.structs.replace(self.training.train, steps=steps)
        seed = [
            self.training.seed,
            int.from_bytes(hashlib.sha256(training.training_id.encode()).digest()[:8]),
        ]
        rng = np.random.default_rng(seed)
        chunk = max(1, self.training.check_every_steps)
        reports: list[TrainReport] = []
        started = time.monotonic()
        # one run of `steps` steps, in chunks: optimizer state and LR schedule carry over
        session = TrainSession(net, samples, cfg, rng, game=self.game)
        for start in range(0, steps, chunk):
            if self._stopping or self.halted():
                raise _Abandoned()
            report = await asyncio.to_thread(session.run, min(chunk, steps - start))
            reports.append(report)
            done = sum(r.steps for r in reports)
            self.detail = {
                "training_steps": float(done),
                "policy_loss": report.final_policy_loss,
                "value_loss": report.final_value_loss,
                "samples_per_s": sum(r.samples_seen for r in reports) / max(1e-9, time.monotonic() - started),
            }
            await self.heartbeat()
        if self._stopping:
            raise _Abandoned()
        return combined(reports)

    async def _save(
        self,
        training: Training,
        parent: ModelRecord,
        parent_step: int,
        net: PolicyValueNet,
        report: TrainReport,
    ) -> str | None:
        generation = parent.generation + 1
        model_id = model_id_for(self.run, generation, training.training_id)
        meta = await asyncio.to_thread(
            make_meta,
            net,
            game=self.game,
            model_id=model_id,
            game_params=self.config.game.params,
            parent_id=parent.model_id,
            step=parent_step + report.steps,
            generation=generation,
            extra={
                "training_id": training.training_id,
                "samples_trained": report.samples_seen,
                "train": msgspec.to_builtins(self.training.train),
            },
        )
        data = await asyncio.to_thread(save_checkpoint, net, meta)
        if self._stopping:
            return None
        published = await publish_checkpoint(
            self.store,
            self.run,
            data,
            event_id=derived_id(training.training_id, HANDLER),
            model_id=model_id,
            abandoned=lambda: self._stopping,
            causation_id=training.training_id,
            correlation_id=training.training_id,
            parent_model=parent.model_id,
            generation=generation,
            step=meta.step,
            game=self.game.name,
            architecture=msgspec.to_builtins(net.config),
            policy_loss=report.policy_loss,
            value_loss=report.value_loss,
            policy_entropy=report.policy_entropy,
            samples_trained=report.samples_seen,
        )
        if published is None:
            return None
        await self.pool.wait_for(_ended(training.training_id), timeout=30)
        await self.registry.wait_for(lambda s: model_id in s.models, timeout=30)
        self.trained.append(model_id)
        await self.heartbeat()
        log.info(
            "trainer: saved %s (generation %d, %d steps, policy loss %.3f, value loss %.3f)",
            model_id,
            generation,
            report.steps,
            report.policy_loss,
            report.value_loss,
        )
        return model_id

    async def _fail(self, training: Training, check: str, detail: str) -> None:
        """A critical ``health.check_failed`` caused by the training: it ends the training."""
        log.error("trainer: %s failed (%s): %s", training.training_id, check, detail)
        await self.store.append(
            ev.HealthCheckFailed(
                id=derived_id(training.training_id, HANDLER, 1),
                time=time.time(),
                run=self.run,
                causation_id=training.training_id,
                correlation_id=training.training_id,
                check=check,
                severity="critical",
                detail=detail[:500],
                node=self.node,
            )
        )
        await self.pool.wait_for(_ended(training.training_id), timeout=30)

    async def _warn(self, training: Training, shard: Shard, detail: str) -> None:
        log.warning("trainer: shard %s left out: %s", shard.shard_id, detail)
        await self.store.append(
            ev.HealthCheckFailed(
                id=derived_id(f"{training.training_id}/{shard.shard_id}", HANDLER),
                time=time.time(),
                run=self.run,
                causation_id=training.training_id,
                correlation_id=training.training_id,
                check="pool_shard",
                severity="warning",
                detail=f"shard {shard.shard_id}: {detail}"[:500],
                node=self.node,
            )
        )

    async def heartbeat(self, *, waiting: bool = False) -> None:
        latest = self.trained[-1] if self.trained else ""
        await beat(
            self.store.log,
            self.run,
            Heartbeat(
                node=self.node,
                host="",
                roles=[HANDLER if not waiting else f"{HANDLER}-standby"],
                model_id=latest,
                detail=dict(self.detail),
            ),
        )


async def serve(ctx, config: LoopConfig) -> None:
    """The trainer service: one active per run (lease); paused while the loop is halted."""
    set_torch_threads(config.training.torch_threads)
    device = resolve_device(config.training.device)
    set_process_device(device)  # TrainSession trains there
    log.info("trainer: device %s, %d torch thread(s)", device, config.training.torch_threads)
    trainer = Trainer(
        ctx.store, ctx.run, config, stop=ctx.stop, halted=lambda: ctx.halted, node=ctx.extra.get("node", "")
    )
    await trainer.run_until_stopped()

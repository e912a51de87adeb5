"""In-process match play: take match units from WORK and play their pairs here (engine.arena).

``LocalMatchPlayer`` is what the promotion manager runs when no eval workers are around. It
takes units through the consumer every match player shares (``match_work_consumer``), loads
model players from OBJ_MODELS (digest verified), plays each pair in a thread and appends one
``match.pair_played`` per pair, with an id derived from the match and the pair index (a pair
played twice lands once). Pairs already counted are skipped; a unit whose match is complete is
acknowledged without play; a unit that does not decode is recorded as ``event.rejected``.

A pair with no opening starts from ``random_plies`` uniformly drawn moves, seeded by the pair,
so that deterministic players do not replay one game.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from engine.arena import play_pair
from engine.checkpoint import load_checkpoint
from engine.games.base import Game, Player
from engine.network import PolicyValueNet
from engine.players import NetworkMCTSPlayer, PureMCTSPlayer, RandomPlayer
from handlers.evaluator_service import match_work_consumer
from projections.matches import MatchesProjection
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams import codec, names
from streams import events as ev
from streams.consumer import Delivery
from streams.envelope import derived_id
from streams.errors import DecodeError
from streams.objects import get_object
from streams.store import EventStore
from streams.work import MatchUnit, PairSpec

__all__ = ["LocalMatchPlayer", "UnplayableUnit", "pair_event_id"]

log = logging.getLogger(__name__)
_OPPONENT_SEED_SALT = 0x5BD1E995


class UnplayableUnit(ValueError):
    """A unit naming a player kind or a model this process cannot build."""


def pair_event_id(match_id: str, pair_index: int) -> str:
    return derived_id(f"{match_id}/{pair_index}", "match-pair")


class LocalMatchPlayer:
    def __init__(self, store: EventStore, run: str, game: Game, *, node: str, random_plies: int = 2):
        self.store = store
        self.run = run
        self.game = game
        self.node = node
        self.random_plies = random_plies
        self.consumer = match_work_consumer(store.log, run)
        self.registry = ProjectionRunner(store, ModelRegistryProjection(), run)
        self.matches = ProjectionRunner(store, MatchesProjection(), run)
        self._nets: dict[str, PolicyValueNet] = {}
        self.pairs_played = 0

    async def run_until(self, stop: asyncio.Event, paused: Callable[[], bool] = lambda: False) -> None:
        await self.consumer.open(ack_wait=120.0)
        try:
            while not stop.is_set():
                if paused():
                    try:
                        await asyncio.wait_for(stop.wait(), 0.5)
                    except TimeoutError:
                        pass
                    continue
                for delivery in await self.consumer.fetch(1, timeout=0.5):
                    await self.take(delivery, stop)
        finally:
            await self.consumer.close()

    async def take(self, delivery: Delivery, stop: asyncio.Event) -> None:
        """Play what is left of one unit; ack it when done, nak it if stopped midway."""
        try:
            unit = codec.decode(delivery.data)
            if not isinstance(unit, MatchUnit):
                raise DecodeError(f"not a match unit: {type(unit).__name__}")
        except DecodeError as exc:
            await self._reject(delivery, str(exc))
            return
        for pair in unit.pairs:
            if stop.is_set():
                await delivery.nak()
                return
            match = (await self.matches.catch_up()).get(unit.match_id)
            if match is None or match.completed:
                break
            if pair.pair_index in match.pairs_counted:
                continue
            try:
                event = await self.play(unit, pair)
            except UnplayableUnit as exc:
                await self._reject(delivery, str(exc))
                return
            await self.store.append(event)
            self.pairs_played += 1
            await delivery.in_progress()
        await delivery.ack()

    async def play(self, unit: MatchUnit, pair: PairSpec) -> ev.MatchPairPlayed:
        candidate = await self._player(unit.candidate, pair.seed)
        opponent = await self._player(unit.opponent, pair.seed ^ _OPPONENT_SEED_SALT)
        rng = np.random.default_rng(pair.seed)
        plies = 0 if pair.opening else self.random_plies
        result = await asyncio.to_thread(
            play_pair, self.game, candidate, opponent, tuple(pair.opening), rng, plies
        )
        first = result.games[0]
        return ev.MatchPairPlayed(
            id=pair_event_id(unit.match_id, pair.pair_index), time=time.time(), run=self.run,
            causation_id=unit.id, correlation_id=unit.correlation_id or unit.id,
            match_id=unit.match_id, unit_id=unit.unit_id, pair_index=pair.pair_index,
            opening=list(first.moves[: first.opening_plies]), pentanomial=result.pentanomial_index,
            games=[list(g.moves) for g in result.games], outcomes=[g.outcome for g in result.games],
            worker=self.node,
        )

    async def _player(self, spec: ev.PlayerSpec, seed: int) -> Player:
        match spec.kind:
            case "random":
                return RandomPlayer(seed=seed)
            case "pure_mcts":
                return PureMCTSPlayer(iterations=max(1, spec.simulations), seed=seed)
            case "model":
                net = await self._net(spec.model_id)
                return NetworkMCTSPlayer(net, simulations=max(1, spec.simulations), seed=seed,
                                         name=spec.model_id)
        raise UnplayableUnit(f"unknown player kind {spec.kind!r}")

    async def _net(self, model_id: str) -> PolicyValueNet:
        if model_id not in self._nets:
            record = (await self.registry.catch_up()).models.get(model_id)
            if record is None or not record.object_name:
                raise UnplayableUnit(f"model {model_id} is not in the registry")
            data = await get_object(self.store.log, names.OBJ_MODELS, record.object_name,
                                    record.digest or None)
            net, _ = await asyncio.to_thread(load_checkpoint, data, self.game)
            self._nets[model_id] = net
        return self._nets[model_id]

    async def _reject(self, delivery: Delivery, reason: str) -> None:
        log.warning("match unit #%d rejected: %s", delivery.seq, reason)
        await self.store.append(ev.EventRejected(
            id=derived_id(f"{names.WORK}:{delivery.seq}", self.node), time=time.time(), run=self.run,
            stream=names.WORK, subject=delivery.subject, seq=delivery.seq, reason=reason[:500],
            handler=self.node, payload_prefix=delivery.data[:64].hex(),
        ))
        await delivery.term()

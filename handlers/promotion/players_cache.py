"""Match players built from ``PlayerSpec``s: reference players on the spot, model players from
checkpoints in the object store.

``build_player`` is the pure part: a fresh, seeded player for a spec (``random``,
``pure_mcts`` with its rollouts, or ``model`` around an already loaded net). ``PlayersCache``
adds the I/O: a model's checkpoint is fetched from OBJ_MODELS by the object name the model
registry recorded, refused when its bytes differ from the recorded digest (and, by
``load_checkpoint``, when its weights differ from its own meta or it is for another game),
loaded in a thread, and kept by model id for the next pairs (the last ``capacity`` models).
``PlayerUnavailable`` says why a spec cannot be played and whether trying later may help.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from engine.checkpoint import load_checkpoint
from engine.errors import CheckpointError
from engine.games.base import Game, Player
from engine.network import NetworkEvaluator, PolicyValueNet
from engine.players import NetworkMCTSPlayer, PureMCTSPlayer, RandomPlayer
from projections.models import ModelRegistry
from projections.runner import ProjectionRunner
from streams import names
from streams.connection import Log
from streams.errors import JetzeroError, StoreError
from streams.events import PlayerSpec
from streams.objects import get_object

__all__ = ["PlayerUnavailable", "PlayersCache", "build_player"]


class PlayerUnavailable(JetzeroError):
    """A player spec that cannot be played: an unknown kind, bad settings, or a model whose
    checkpoint is unknown, missing, corrupt or for another game. ``retry`` is True only when
    waiting may help (the model is not in the registry yet)."""

    def __init__(self, message: str, *, retry: bool = False):
        super().__init__(message)
        self.retry = retry


def build_player(
    spec: PlayerSpec,
    seed: int,
    *,
    net: PolicyValueNet | None = None,
    default_simulations: int = 64,
    evaluator: NetworkEvaluator | None = None,
) -> Player:
    """A fresh player for ``spec`` seeded with ``seed``.

    A ``model`` spec needs its loaded ``net`` and searches ``spec.simulations`` per move
    (``default_simulations`` when the spec leaves it at 0), through ``evaluator`` when given
    (one inference copy of ``net`` shared by its players); ``pure_mcts`` runs
    ``spec.simulations`` random-rollout iterations per move.
    """
    match spec.kind:
        case "random":
            return RandomPlayer(seed=seed, name=spec.label)
        case "pure_mcts":
            if spec.simulations < 1:
                raise PlayerUnavailable(f"player {spec.label}: pure_mcts needs simulations >= 1")
            return PureMCTSPlayer(iterations=spec.simulations, seed=seed, name=spec.label)
        case "model":
            if net is None:
                raise PlayerUnavailable(f"model {spec.model_id!r}: no network loaded", retry=True)
            simulations = spec.simulations or default_simulations
            if simulations < 1:
                raise PlayerUnavailable(f"model {spec.model_id!r}: simulations must be >= 1")
            return NetworkMCTSPlayer(
                net, simulations=simulations, seed=seed, name=spec.model_id, evaluator=evaluator
            )
    raise PlayerUnavailable(f"unknown player kind {spec.kind!r} (known: model, random, pure_mcts)")


class PlayersCache:
    """Players for one game; model nets fetched, verified and kept by model id.

    ``registry`` is a runner of the model registry (following the log): a model named by a
    spec is looked up there, waiting up to ``registry_wait_s`` for one not folded yet.
    """

    def __init__(
        self,
        log: Log,
        game: Game,
        registry: ProjectionRunner[ModelRegistry],
        *,
        default_simulations: int = 64,
        capacity: int = 8,
        registry_wait_s: float = 5.0,
    ):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.log = log
        self.game = game
        self.registry = registry
        self.default_simulations = default_simulations
        self.capacity = capacity
        self.registry_wait_s = registry_wait_s
        self.fetches = 0  # checkpoints fetched from the object store (a miss each)
        self._nets: OrderedDict[str, PolicyValueNet] = OrderedDict()
        self._evaluators: dict[str, NetworkEvaluator] = {}  # one inference copy per cached net

    @property
    def cached(self) -> list[str]:
        """Model ids whose nets are held, least recently used first."""
        return list(self._nets)

    async def player(self, spec: PlayerSpec, seed: int) -> Player:
        """A fresh player for ``spec`` (its model's net loaded first if needed).

        Players of one model share one evaluator, so a batched match searches them together.
        """
        net = evaluator = None
        if spec.kind == "model":
            net = await self.net(spec.model_id)
            evaluator = self._evaluators.get(spec.model_id)
            if evaluator is None:
                evaluator = self._evaluators[spec.model_id] = NetworkEvaluator(net)
        return build_player(
            spec, seed, net=net, default_simulations=self.default_simulations, evaluator=evaluator
        )

    async def net(self, model_id: str) -> PolicyValueNet:
        """The net of ``model_id``: from the cache, or fetched and verified."""
        net = self._nets.get(model_id)
        if net is not None:
            self._nets.move_to_end(model_id)
            return net
        net = await self._load(model_id)
        self._nets[model_id] = net
        while len(self._nets) > self.capacity:
            evicted, _ = self._nets.popitem(last=False)
            self._evaluators.pop(evicted, None)
        return net

    async def _load(self, model_id: str) -> PolicyValueNet:
        if not model_id:
            raise PlayerUnavailable("a model player without a model id")
        record = self.registry.state.models.get(model_id)
        if record is None:
            try:
                state = await self.registry.wait_for(
                    lambda s: model_id in s.models, timeout=self.registry_wait_s
                )
            except TimeoutError:
                raise PlayerUnavailable(
                    f"model {model_id!r} is not in the model registry (yet)", retry=True
                ) from None
            record = state.models[model_id]
        if not record.object_name or not record.digest:
            raise PlayerUnavailable(f"model {model_id!r}: no checkpoint object or digest recorded")
        try:
            data = await get_object(self.log, names.OBJ_MODELS, record.object_name, record.digest)
        except StoreError as exc:  # missing (EventNotFound) or failing its digest
            raise PlayerUnavailable(f"model {model_id!r}: {exc}") from None
        self.fetches += 1
        try:
            net, _ = await asyncio.to_thread(load_checkpoint, data, self.game)
        except CheckpointError as exc:
            raise PlayerUnavailable(f"model {model_id!r}: {exc}") from None
        return net

"""The models of a run, in and out: list them, export one to a file, import one from a file.

- ``list_models``: every checkpoint of the run with its generation, parent, status
  (``model_status``), Elo on the ratings ladder and digest.
- ``export_model``: the stored bytes of a model (``champion`` or an id), read with their
  recorded digest verified, written to a file atomically and verified again as written.
- ``import_model``: a checkpoint file validated (weights-only load, same game and architecture
  as the run's champion; else the run's config) and published like any checkpoint (source
  ``import``, ``handlers.loop.checkpoints.publish_checkpoint``). ``jetzero models import``,
  ``jetzero promotion candidate`` and ``model_promotion_manager.py --candidate`` all import
  through it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from engine.checkpoint import load_checkpoint, read_meta, write_atomically
from engine.errors import CheckpointError
from engine.games import get_game
from engine.games.base import Game
from engine.network import NetworkConfig
from handlers.loop.checkpoints import publish_checkpoint
from handlers.loop.config import LoopConfig
from projections.models import ModelRecord, ModelRegistry, ModelRegistryProjection
from projections.ratings import Ratings, RatingsProjection
from projections.runner import ProjectionRunner
from streams import names
from streams.envelope import derived_id
from streams.errors import EventNotFound, PromotionError, StoreError
from streams.objects import get_object, sha256
from streams.store import EventStore

__all__ = [
    "CHAMPION",
    "IMPORTER",
    "Exported",
    "Imported",
    "ModelEntry",
    "export_model",
    "fold",
    "import_model",
    "list_models",
    "model_entries",
    "model_status",
    "resolve_model",
    "stored_bytes",
    "write_model",
]

IMPORTER = "promotion-manager"  # the handler name imports are recorded under
CHAMPION = "champion"  # the model reference that names the run's champion


class ModelEntry(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    generation: int
    parent: str
    status: str  # champion | promoted | reverted | rejected | evaluating | new
    elo: float | None
    elo_ci95: float | None
    digest: str
    source: str
    step: int
    saved_seq: int
    saved_at: float


class Exported(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    digest: str
    path: str
    size: int


class Imported(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    digest: str
    seq: int
    game: str
    already_known: bool = False


async def fold(store: EventStore, projection, run: str):
    """The projection's state as of now, folded from the start of the run's log."""
    return await ProjectionRunner(store, projection, run, use_snapshots=False).catch_up()


# -- list -------------------------------------------------------------------------------------


def model_status(registry: ModelRegistry, model_id: str) -> str:
    """Where ``model_id`` stands: the champion, promoted (on the champion's line, the initial
    model included), reverted (taken back by a rollback), rejected, evaluating, or new."""
    if registry.champion is not None and registry.champion.model_id == model_id:
        return "champion"
    if model_id in registry.reverted_models:
        return "reverted"
    if any(p.model_id == model_id and not p.reverted for p in registry.promotions):
        return "promoted"
    if any(r.model_id == model_id for r in registry.rejections):
        return "rejected"
    if model_id in registry.evaluations:
        return "evaluating"
    return "new"


def model_entries(registry: ModelRegistry, ratings: Ratings) -> list[ModelEntry]:
    """Every model of the registry with its status and rating, oldest first (pure)."""
    out = []
    for record in sorted(registry.models.values(), key=lambda m: m.saved_seq):
        rating = ratings.ladder.get(record.model_id)
        out.append(ModelEntry(
            model_id=record.model_id, generation=record.generation, parent=record.parent,
            status=model_status(registry, record.model_id),
            elo=rating.elo if rating else None, elo_ci95=rating.ci95 if rating else None,
            digest=record.digest, source=record.source, step=record.step,
            saved_seq=record.saved_seq, saved_at=record.saved_at,
        ))
    return out


async def list_models(store: EventStore, run: str) -> list[ModelEntry]:
    """Every model of ``run``, oldest first."""
    registry = await fold(store, ModelRegistryProjection(), run)
    return model_entries(registry, await fold(store, RatingsProjection(), run))


# -- export -----------------------------------------------------------------------------------


def resolve_model(registry: ModelRegistry, ref: str) -> ModelRecord:
    """The record ``ref`` names: ``champion``, or a model id (PromotionError if none)."""
    if ref == CHAMPION:
        if registry.champion is None:
            raise PromotionError("the run has no champion yet")
        ref = registry.champion.model_id
    record = registry.models.get(ref)
    if record is None:
        raise PromotionError(f"no model {ref} in the run (see jetzero models list)")
    return record


async def stored_bytes(store: EventStore, record: ModelRecord) -> bytes:
    """The checkpoint bytes of ``record`` from the object store, verified by its recorded digest."""
    if not record.object_name or not record.digest:
        raise PromotionError(f"model {record.model_id} has no stored checkpoint with a digest")
    try:
        return await get_object(store.log, names.OBJ_MODELS, record.object_name, record.digest)
    except EventNotFound:
        raise PromotionError(f"model {record.model_id}: its checkpoint {record.object_name} "
                             f"is missing from the object store") from None
    except StoreError as exc:
        raise PromotionError(f"model {record.model_id}: {exc}") from None


async def export_model(store: EventStore, run: str, ref: str, path: Path) -> Exported:
    """Write the checkpoint ``ref`` names (``champion`` or an id) to ``path``, digest verified
    on the way out of the store and again as written."""
    record = resolve_model(await fold(store, ModelRegistryProjection(), run), ref)
    return await write_model(store, record, path)


async def write_model(store: EventStore, record: ModelRecord, path: Path) -> Exported:
    """Write ``record``'s checkpoint to ``path`` (atomically), digest verified on the way out of
    the store and again as written."""
    data = await stored_bytes(store, record)
    try:
        await asyncio.to_thread(write_atomically, path, data)
        written = await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        raise PromotionError(f"cannot write {path}: {exc.strerror or exc}") from None
    if sha256(written) != record.digest:
        raise PromotionError(f"{path} does not hold the bytes of {record.model_id} after writing")
    return Exported(model_id=record.model_id, digest=record.digest, path=str(path), size=len(data))


# -- import -----------------------------------------------------------------------------------


async def _expected(
    store: EventStore, registry: ModelRegistry, config: LoopConfig
) -> tuple[Game, NetworkConfig, str]:
    """The game and architecture an imported model must have: the champion's, else the config's."""
    champion = registry.champion
    record = registry.models.get(champion.model_id) if champion else None
    if record is not None and record.object_name:
        try:
            data = await get_object(store.log, names.OBJ_MODELS, record.object_name, record.digest or None)
            meta = await asyncio.to_thread(read_meta, data)
            game = get_game(meta.game, **meta.game_params)
            return game, meta.architecture, f"the champion {record.model_id}"
        except (StoreError, CheckpointError):
            pass  # an unreadable champion: fall back to the run's config
    game = get_game(config.game.name, **config.game.params)
    return game, config.network, f"the config of run {config.run}"


async def import_model(store: EventStore, config: LoopConfig, path: Path) -> Imported:
    """Validate ``path`` and publish it as ``checkpoint.saved`` (source ``import``), one
    generation above the champion.

    Refused with ``PromotionError`` (and nothing stored or recorded): an unreadable or corrupt
    file, another game, another architecture, a run with no champion, or a model id the run
    already has with other weights. The same file imported again is recognised, not repeated.
    """
    registry = await fold(store, ModelRegistryProjection(), config.run)
    if registry.champion is None:
        raise PromotionError(f"run {config.run} has no champion yet: nothing to check {path} against")
    try:
        data = await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        raise PromotionError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    game, arch, source = await _expected(store, registry, config)
    try:
        _, meta = await asyncio.to_thread(load_checkpoint, data, game, arch)
    except CheckpointError as exc:
        raise PromotionError(f"{path} refused: {exc} (checked against {source}, {game.name})") from None
    digest = sha256(data)
    known = registry.models.get(meta.model_id)
    if known is not None:
        if known.digest != digest:
            raise PromotionError(
                f"{path} refused: run {config.run} already has a different model "
                f"named {meta.model_id} (digest {known.digest[:12]}, this file {digest[:12]})"
            )
        return Imported(model_id=meta.model_id, digest=digest, seq=known.saved_seq, game=game.name,
                        already_known=True)
    published = await publish_checkpoint(
        store, config.run, data, event_id=derived_id(f"import:{digest}", IMPORTER),
        model_id=meta.model_id, parent_model=meta.parent_id or "",
        generation=registry.champion.generation + 1, step=meta.step, game=game.name,
        architecture=msgspec.to_builtins(meta.architecture), source="import",
    )
    assert published is not None  # nothing abandons an import
    return Imported(model_id=meta.model_id, digest=digest, seq=published.seq, game=game.name)

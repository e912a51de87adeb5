"""Checkpoints: a network's weights plus ``CheckpointMeta``, as bytes or as a file.

The bytes are a torch file holding only tensors and plain types (a format tag, the meta
as JSON text, the state dict), read back with ``torch.load(weights_only=True)`` so that
no arbitrary object is ever unpickled. ``digest`` is the sha256 of the weights (names in
sorted order, dtype, shape, little-endian bytes) and is verified on every load. Anything
that cannot be trusted — corrupt or truncated bytes, a digest mismatch, another game, another
architecture — raises ``CheckpointError`` saying which.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import torch

from engine.errors import CheckpointError
from engine.games.base import Game
from engine.network import NetworkConfig, PolicyValueNet

FORMAT = "jetzero-checkpoint/1"


class CheckpointMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What a checkpoint is: identity, game, architecture, lineage, and weight digest."""

    model_id: str
    game: str
    architecture: NetworkConfig
    plane_shape: tuple[int, int, int]
    num_actions: int
    game_params: dict[str, int] = {}
    parent_id: str | None = None
    step: int = 0  # training steps since the first model of the lineage
    generation: int = 0  # promotions / training runs since the first model
    digest: str = ""  # sha256 hex of the weights; filled in by save_checkpoint
    created: float = 0.0  # unix time
    extra: dict[str, Any] = {}  # plain data recorded with the model (e.g. training config)


def weights_digest(weights: PolicyValueNet | Mapping[str, torch.Tensor]) -> str:
    """sha256 hex over the state dict: sorted names, dtype, shape, little-endian bytes."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    h = hashlib.sha256()
    for name in sorted(state):
        arr = state[name].detach().cpu().contiguous().numpy()
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}|{arr.dtype.str}|{list(arr.shape)}|".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def make_meta(
    net: PolicyValueNet,
    *,
    game: Game | str,
    model_id: str | None = None,
    game_params: Mapping[str, int] | None = None,
    parent_id: str | None = None,
    step: int = 0,
    generation: int = 0,
    created: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> CheckpointMeta:
    """Meta for ``net`` with its digest; ``model_id`` defaults to ``<game>-<digest[:12]>``."""
    digest = weights_digest(net)
    game_name = game if isinstance(game, str) else game.name
    return CheckpointMeta(
        model_id=model_id or f"{game_name}-{digest[:12]}",
        game=game_name,
        game_params=dict(game_params or {}),
        architecture=net.config,
        plane_shape=net.plane_shape,
        num_actions=net.num_actions,
        parent_id=parent_id,
        step=step,
        generation=generation,
        digest=digest,
        created=time.time() if created is None else created,
        extra=dict(extra or {}),
    )


def save_checkpoint(net: PolicyValueNet, meta: CheckpointMeta) -> bytes:
    """The checkpoint bytes of ``net`` with ``meta`` (its digest is filled in if empty)."""
    state = {name: t.detach().cpu().clone() for name, t in net.state_dict().items()}
    digest = weights_digest(state)
    if meta.digest and meta.digest != digest:
        raise CheckpointError(
            f"checkpoint {meta.model_id}: meta digest {meta.digest[:12]} does not match "
            f"the weights ({digest[:12]})"
        )
    if (meta.architecture, tuple(meta.plane_shape), meta.num_actions) != (
        net.config,
        net.plane_shape,
        net.num_actions,
    ):
        raise CheckpointError(f"checkpoint {meta.model_id}: meta does not describe this net")
    meta = msgspec.structs.replace(meta, digest=digest)
    payload = {"format": FORMAT, "meta": msgspec.json.encode(meta).decode(), "weights": state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _read(data: bytes) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on garbage: all mean "corrupt"
        raise CheckpointError(
            f"checkpoint is corrupt or not a checkpoint ({type(exc).__name__}: {exc})"[:500]
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"not a {FORMAT} checkpoint")
    weights, meta_text = payload.get("weights"), payload.get("meta")
    if not isinstance(weights, dict) or not isinstance(meta_text, str):
        raise CheckpointError("checkpoint lacks its weights or its meta")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CheckpointError("checkpoint weights are not a mapping of names to tensors")
    try:
        meta = msgspec.json.decode(meta_text, type=CheckpointMeta)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise CheckpointError(f"checkpoint meta is invalid: {exc}") from exc
    digest = weights_digest(weights)
    if digest != meta.digest:
        raise CheckpointError(
            f"checkpoint {meta.model_id}: weights digest {digest[:12]} does not match the "
            f"recorded {meta.digest[:12] or '(none)'}: the weights were altered or damaged"
        )
    return meta, weights


def read_meta(data: bytes) -> CheckpointMeta:
    """The verified meta of checkpoint bytes, without building the net."""
    return _read(data)[0]


def load_checkpoint(
    data: bytes,
    expect_game: Game | str | None = None,
    expect_arch: NetworkConfig | None = None,
) -> tuple[PolicyValueNet, CheckpointMeta]:
    """The net (eval mode, CPU) and meta of checkpoint bytes, checked against the expected
    game (a name, or a ``Game`` whose name, planes and actions must match) and architecture."""
    meta, weights = _read(data)
    if expect_game is not None:
        name = expect_game if isinstance(expect_game, str) else expect_game.name
        if meta.game != name:
            raise CheckpointError(f"checkpoint {meta.model_id} is for {meta.game}, not {name}")
        if not isinstance(expect_game, str) and (
            tuple(expect_game.plane_shape) != tuple(meta.plane_shape)
            or expect_game.num_actions != meta.num_actions
        ):
            raise CheckpointError(
                f"checkpoint {meta.model_id} has planes {meta.plane_shape} and "
                f"{meta.num_actions} actions; the game has {expect_game.plane_shape} and "
                f"{expect_game.num_actions}"
            )
    if expect_arch is not None and meta.architecture != expect_arch:
        raise CheckpointError(
            f"checkpoint {meta.model_id} has architecture {meta.architecture}, expected {expect_arch}"
        )
    try:
        net = PolicyValueNet(meta.architecture, meta.plane_shape, meta.num_actions)
        net.load_state_dict(weights, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {meta.model_id}: weights do not fit its architecture: {exc}"[:500]
        ) from exc
    return net.eval(), meta


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint_file(path: str | Path, net: PolicyValueNet, meta: CheckpointMeta) -> bytes:
    """Save ``net`` to ``path`` atomically; returns the bytes written."""
    data = save_checkpoint(net, meta)
    write_atomically(path, data)
    return data


def load_checkpoint_file(
    path: str | Path,
    expect_game: Game | str | None = None,
    expect_arch: NetworkConfig | None = None,
) -> tuple[PolicyValueNet, CheckpointMeta]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return load_checkpoint(data, expect_game=expect_game, expect_arch=expect_arch)

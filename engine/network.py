"""The residual policy-value network (torch) and the evaluator that puts it behind the search.

``NetworkConfig`` fixes the architecture (blocks × channels, head sizes); the net is built
from it plus the game's ``plane_shape`` and ``num_actions``. ``NetworkEvaluator`` is the
search's evaluator: numpy planes in, masked-softmax priors and tanh values out, under
``torch.inference_mode()``. CUDA is used when present, never required. Torch's thread count
is the process's business: entry points call ``set_torch_threads`` (nothing here sets it).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from engine.games.base import Game, State

# The torch-free home of these settings is engine.settings; re-exported here.
from engine.settings import (  # noqa: F401
    DEFAULT_CONNECT4_NETWORK,
    DEFAULT_TICTACTOE_NETWORK,
    NetworkConfig,
    default_network_config,
)


def set_torch_threads(threads: int | str) -> None:
    """Set torch's intra-op thread count (call once, from a process's entry point). A loaded
    loop config's ``"auto"`` is already a number; a string that got here is refused."""
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"torch threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before any parallel work; harmless if too late
        pass


_process_device: torch.device | None = None
_process_half = False


def set_process_device(device: str | torch.device | None, *, half: bool = False) -> None:
    """The device (and float16 inference on CUDA) that nets and evaluators of this process
    use when none is named; None: back to CUDA when available, else the CPU."""
    global _process_device, _process_half
    _process_device = torch.device(device) if device is not None else None
    _process_half = half


def default_device() -> torch.device:
    if _process_device is not None:
        return _process_device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(x + y)


class PolicyValueNet(nn.Module):
    """AlphaZero-style tower: conv stem, residual blocks, a policy head and a value head.

    ``forward(planes [N,C,H,W]) -> (policy logits [N,A], values [N] in [-1, 1])``.
    """

    def __init__(self, config: NetworkConfig, plane_shape: Sequence[int], num_actions: int):
        super().__init__()
        c_in, height, width = (int(v) for v in plane_shape)
        self.config = config
        self.plane_shape = (c_in, height, width)
        self.num_actions = int(num_actions)
        ch, cells = config.channels, height * width
        self.stem = nn.Sequential(
            nn.Conv2d(c_in, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()
        )
        self.tower = nn.Sequential(*(_ResidualBlock(ch) for _ in range(config.blocks)))
        self.policy_head = nn.Sequential(
            nn.Conv2d(ch, config.policy_channels, 1, bias=False),
            nn.BatchNorm2d(config.policy_channels),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(config.policy_channels * cells, self.num_actions),
        )
        self.value_head = nn.Sequential(
            nn.Conv2d(ch, config.value_channels, 1, bias=False),
            nn.BatchNorm2d(config.value_channels),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(config.value_channels * cells, config.value_hidden),
            nn.ReLU(),
            nn.Linear(config.value_hidden, 1),
            nn.Tanh(),
        )

    @classmethod
    def for_game(cls, game: Game, config: NetworkConfig) -> PolicyValueNet:
        return cls(config, game.plane_shape, game.num_actions)

    def forward(self, planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tower(self.stem(planes))
        return self.policy_head(x), self.value_head(x).squeeze(-1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def build_network(game: Game, config: NetworkConfig, *, seed: int | None = None) -> PolicyValueNet:
    """A freshly initialised net for ``game`` (seeded initialisation when ``seed`` is given)."""
    if seed is None:
        return PolicyValueNet.for_game(game, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PolicyValueNet.for_game(game, config)


def inference_copy(net: PolicyValueNet) -> PolicyValueNet:
    """A copy of ``net`` for inference: eval mode, every batch norm folded into its conv.

    Same outputs (to float rounding), ~10-30% faster on small CPU batches; not trainable.
    """
    fused = copy.deepcopy(net).eval()
    fold: Any = fuse_conv_bn_eval
    for seq in (fused.stem, fused.policy_head, fused.value_head):
        seq[0], seq[1] = fold(seq[0], seq[1]), nn.Identity()
    for block in fused.tower:
        block.conv1, block.bn1 = fold(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fold(block.conv2, block.bn2), nn.Identity()
    for param in fused.parameters():
        param.requires_grad_(False)
    return fused


def masked_softmax(logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """Softmax over the legal entries of each row (illegal → 0); rows with no legal move → 0."""
    z = np.where(legal, logits, -np.inf)
    peak = z.max(axis=1, keepdims=True)
    peak[~np.isfinite(peak)] = 0.0
    e = np.exp(z - peak)
    total = e.sum(axis=1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def stack_planes(states: Sequence[State]) -> np.ndarray:
    """Planes of ``states`` as one float32 [N, C, H, W] array; uses the sequence's own
    ``planes_batch()`` (the search's nodes: from their bitboards) or the game's vectorised
    ``planes_batch(states)`` when there is one (same values, several times faster)."""
    own = getattr(states, "planes_batch", None)
    if own is not None:
        return own()
    batch = getattr(states[0].game, "planes_batch", None) if states else None
    if batch is not None:
        return batch(states)
    return np.stack([s.planes() for s in states])


class NetworkEvaluator:
    """The search's evaluator backed by a snapshot of a ``PolicyValueNet``.

    The weights are copied (batch norm folded, see ``inference_copy``) when the evaluator
    is built: later training of ``net`` does not change it. ``evaluate_planes(planes
    [N,C,H,W], legal [N,A])`` is the raw numpy path; ``evaluate(states)`` stacks the
    states' planes and calls it. On CUDA the planes are copied through a pinned host buffer
    (one per calling thread, kept between its calls, so that threads stepping their own games
    never write into a buffer whose copy is still on its way) and, with ``half`` (default: the
    process's, see ``set_process_device``), the net runs in float16. On the CPU ``half`` is
    ignored unless ``half_on_cpu``: float16 there is only for measuring what it changes.
    """

    def __init__(
        self,
        net: PolicyValueNet,
        device: torch.device | str | None = None,
        *,
        half: bool | None = None,
        half_on_cpu: bool = False,
    ):
        self.device = torch.device(device) if device is not None else default_device()
        wanted = _process_half if half is None else half
        self.half = wanted and (self.device.type == "cuda" or half_on_cpu)
        self.net = inference_copy(net).to(self.device)
        if self.half:
            self.net.half()
        self._staging = threading.local()  # .pinned: this thread's pinned host buffer

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type != "cuda":
            return x.half() if self.half else x
        pinned = getattr(self._staging, "pinned", None)
        if pinned is None or pinned.shape[0] < x.shape[0] or pinned.shape[1:] != x.shape[1:]:
            pinned = torch.empty((max(x.shape[0], 256), *x.shape[1:]), pin_memory=True)
            self._staging.pinned = pinned
        staged = pinned[: x.shape[0]]
        staged.copy_(x)  # this thread's previous copy is done: its results were read back
        x = staged.to(self.device, non_blocking=True)
        return x.half() if self.half else x

    def evaluate_planes(self, planes: np.ndarray, legal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))
            logits, values = self.net(self._to_device(x))
            logits_np = logits.float().cpu().numpy()
            values_np = values.float().cpu().numpy()
        return masked_softmax(logits_np, legal), values_np.astype(np.float64)

    def evaluate(
        self, states: Sequence[State], legal: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        planes = stack_planes(states)
        if legal is None:
            legal = np.stack([s.legal_mask() for s in states])
        return self.evaluate_planes(planes, legal)

    def evaluate_one(self, state: State) -> tuple[np.ndarray, float]:
        priors, values = self.evaluate([state])
        return priors[0], float(values[0])

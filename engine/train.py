"""Training steps for the policy-value net on selfplay samples.

``train_steps`` runs ``TrainConfig.steps`` minibatch steps: policy cross-entropy against
the search policy plus value MSE (against the outcome, or a blend of outcome and search
value: ``TrainConfig.search_value_weight``), weight decay in the optimizer, a
learning-rate schedule (constant, step or cosine, with optional warm-up), and random
symmetry augmentation via ``game.symmetries``. ``TrainSession`` is the same run in
resumable chunks (optimizer state, schedule position and sample order carried over), for
callers that check for a stop between chunks. A non-finite loss raises ``TrainingDiverged``
before the step is applied, so the caller never saves a diverged net. ``evaluate_losses``
measures without training.
"""

from __future__ import annotations

import msgspec
import numpy as np
import torch
from torch.nn import functional as F

from engine.errors import TrainingDiverged
from engine.games.base import Game
from engine.network import PolicyValueNet, default_device
from engine.samples import Samples

# The torch-free home of these settings is engine.settings; re-exported here.
from engine.settings import DEFAULT_CONNECT4_TRAIN, DEFAULT_TICTACTOE_TRAIN, TrainConfig  # noqa: F401


class TrainReport(msgspec.Struct, frozen=True, kw_only=True):
    """Means over all steps of a run, and the last step's values."""

    steps: int
    samples_seen: int
    policy_loss: float
    value_loss: float
    policy_entropy: float  # entropy of the net's policy on the training batches
    final_policy_loss: float
    final_value_loss: float
    final_lr: float


class LossReport(msgspec.Struct, frozen=True, kw_only=True):
    policy_loss: float
    value_loss: float
    policy_entropy: float


def _losses(net, planes, policies, values):
    logits, predicted = net(planes)
    log_p = F.log_softmax(logits, dim=1)
    policy_loss = -(policies * log_p).sum(dim=1).mean()
    value_loss = F.mse_loss(predicted, values)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    return policy_loss, value_loss, entropy


def _batch(
    samples: Samples,
    index: np.ndarray,
    game: Game | None,
    rng: np.random.Generator,
    search_value_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    planes, policies = samples.planes[index], samples.policies[index]
    if game is not None:
        copies = game.symmetries(planes, policies)
        if len(copies) > 1:
            pick = rng.integers(len(copies), size=len(index))
            rows = np.arange(len(index))
            planes = np.stack([c[0] for c in copies])[pick, rows]
            policies = np.stack([c[1] for c in copies])[pick, rows]
    return planes, policies, samples.value_targets(search_value_weight, index)


def _optimizer(net: PolicyValueNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class TrainSession:
    """One training run of ``cfg.steps`` steps that can be run in chunks.

    The session holds the net, the optimizer (momentum / Adam moments), the position in
    the learning-rate schedule and the shuffled epoch order, so ``run(k)`` called N times
    trains exactly like one ``run(N * k)`` (same weights for the same ``rng`` stream). Each
    ``run`` reports its own steps; the net is left in eval mode between runs. A non-finite
    loss raises ``TrainingDiverged`` before its step is applied.
    """

    def __init__(
        self,
        net: PolicyValueNet,
        samples: Samples,
        cfg: TrainConfig,
        rng: np.random.Generator,
        *,
        game: Game | None = None,
        augment: bool = True,
        device: torch.device | str | None = None,
    ):
        if len(samples) == 0:
            raise ValueError("no samples to train on")
        if augment and game is None:
            raise ValueError("augmentation needs the game (pass game=..., or augment=False)")
        self.device = torch.device(device) if device is not None else default_device()
        self.net = net.to(self.device)
        self.samples = samples
        self.cfg = cfg
        self.rng = rng
        self.game = game if augment else None
        self.optimizer = _optimizer(net, cfg)
        self.step = 0  # steps done: the next step's position in the schedule
        self.batch = min(cfg.batch_size, len(samples))
        self._order, self._cursor = rng.permutation(len(samples)), 0

    @property
    def remaining(self) -> int:
        return self.cfg.steps - self.step

    def _next_index(self) -> np.ndarray:
        if self._cursor + self.batch > len(self._order):
            self._order, self._cursor = self.rng.permutation(len(self.samples)), 0
        index = self._order[self._cursor : self._cursor + self.batch]
        self._cursor += self.batch
        return index

    def run(self, steps: int | None = None) -> TrainReport:
        """Train the next ``steps`` steps (default: every remaining one) of the schedule."""
        steps = self.remaining if steps is None else steps
        if not 1 <= steps <= self.remaining:
            raise ValueError(f"cannot run {steps} steps: {self.remaining} of {self.cfg.steps} remain")
        net, dev, cfg, optimizer = self.net, self.device, self.cfg, self.optimizer
        net.train()
        totals = np.zeros(3)
        last = (0.0, 0.0, 0.0)
        lr = cfg.lr
        try:
            for _ in range(steps):
                planes, policies, values = _batch(
                    self.samples, self._next_index(), self.game, self.rng, cfg.search_value_weight
                )
                lr = cfg.lr_at(self.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                policy_loss, value_loss, entropy = _losses(
                    net,
                    torch.from_numpy(np.ascontiguousarray(planes)).to(dev),
                    torch.from_numpy(np.ascontiguousarray(policies)).to(dev),
                    torch.from_numpy(np.ascontiguousarray(values)).to(dev),
                )
                loss = policy_loss + cfg.value_loss_weight * value_loss
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training step {self.step}: loss is {loss.item()} (policy "
                        f"{policy_loss.item()}, value {value_loss.item()}); nothing was saved"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.step += 1
                last = (policy_loss.item(), value_loss.item(), entropy.item())
                totals += last
        finally:
            net.eval()
        means = totals / steps
        return TrainReport(
            steps=steps,
            samples_seen=steps * self.batch,
            policy_loss=float(means[0]),
            value_loss=float(means[1]),
            policy_entropy=float(means[2]),
            final_policy_loss=float(last[0]),
            final_value_loss=float(last[1]),
            final_lr=lr,
        )


def train_steps(
    net: PolicyValueNet,
    samples: Samples,
    cfg: TrainConfig,
    rng: np.random.Generator,
    *,
    game: Game | None = None,
    augment: bool = True,
    device: torch.device | str | None = None,
) -> TrainReport:
    """Train ``net`` in place for ``cfg.steps`` steps on ``samples`` (shuffled epochs drawn
    from ``rng``) in one go; ``TrainSession`` runs the same training in chunks. ``augment``
    draws a random symmetry of ``game`` per sample (``game`` is then required). Leaves
    ``net`` in eval mode; raises ``TrainingDiverged`` on NaN/inf."""
    session = TrainSession(net, samples, cfg, rng, game=game, augment=augment, device=device)
    return session.run()


def evaluate_losses(net: PolicyValueNet, samples: Samples, batch_size: int = 1024) -> LossReport:
    """Policy and value loss and policy entropy of ``net`` (eval mode) on ``samples``."""
    if len(samples) == 0:
        raise ValueError("no samples to evaluate on")
    net.eval()
    dev = net.device
    sums = np.zeros(3)
    with torch.inference_mode():
        for start in range(0, len(samples), batch_size):
            part = samples.subset(slice(start, start + batch_size))
            losses = _losses(
                net,
                torch.from_numpy(part.planes).to(dev),
                torch.from_numpy(part.policies).to(dev),
                torch.from_numpy(part.values).to(dev),
            )
            sums += [x.item() * len(part) for x in losses]
    means = sums / len(samples)
    return LossReport(policy_loss=float(means[0]), value_loss=float(means[1]), policy_entropy=float(means[2]))

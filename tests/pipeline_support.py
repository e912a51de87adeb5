"""Helpers of the pipeline tests: tiny Connect Four nets (a trained one, a fresh one), checkpoint
files, and a throw-away git repository holding this working tree (the "pull request" and its base).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from engine.bench_strength import PUBLIC_POSITIONS
from engine.checkpoint import make_meta, save_checkpoint_file
from engine.games import ConnectFour
from engine.network import NetworkConfig, PolicyValueNet, build_network, stack_planes
from engine.strength import load_positions

ROOT = Path(__file__).resolve().parents[1]
TINY = NetworkConfig(blocks=1, channels=16, policy_channels=2, value_channels=2, value_hidden=16)
C4 = ConnectFour()
GIT = ["git", "-c", "user.email=pipeline@test", "-c", "user.name=pipeline-test"]


def trained_net(steps: int = 80, seed: int = 0) -> PolicyValueNet:
    """A tiny net fitted to the shipped solved positions (optimal moves, solved outcomes): a
    baseline far above a fresh net on them, trained in a few seconds."""
    positions = load_positions(PUBLIC_POSITIONS, C4)
    planes = torch.from_numpy(stack_planes([p.state(C4) for p in positions]))
    target = np.zeros((len(positions), C4.num_actions), dtype=np.float32)
    for i, p in enumerate(positions):
        for column in p.outcome_optimal_moves:
            target[i, column - 1] = 1.0 / len(p.outcome_optimal_moves)
    policy = torch.from_numpy(target)
    value = torch.tensor([{"win": 1.0, "draw": 0.0, "loss": -1.0}[p.outcome] for p in positions])
    net = build_network(C4, TINY, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        batch = torch.randint(0, len(positions), (128,), generator=gen)
        logits, v = net(planes[batch])
        loss = -(policy[batch] * F.log_softmax(logits, dim=1)).sum(1).mean() + F.mse_loss(v, value[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def save(net: PolicyValueNet, path: Path, game=C4) -> Path:
    save_checkpoint_file(path, net, make_meta(net, game=game, created=0.0))
    return path


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(dest: Path, *, without: tuple[str, ...] = ()) -> Path:
    """This working tree (tracked and unignored files) as a fresh git repository with one commit
    on ``main``; ``without``: paths left out of that commit (added, uncommitted, afterwards)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    for name in without:
        git(dest, "rm", "-q", "--cached", name)
    git(dest, "commit", "-q", "-m", "base")
    return dest


def clone(seed: Path, dest: Path) -> Path:
    """A working copy of the seed repository (``main`` checked out) to patch as a pull request."""
    subprocess.run([*GIT, "clone", "-q", str(seed), str(dest)], check=True)
    return dest


def patch(repo: Path, relative: str, code: str) -> None:
    """Append ``code`` to a module of ``repo``'s working tree (the pull request's change)."""
    with open(repo / relative, "a") as f:
        f.write("\n" + code)


RANDOM_MOVE_PATCH = '''
def _random_visits(self, slot):  # the PR's "improvement": play a random legal move
    legal = self.root_state(slot).legal_mask().astype(np.int64)
    return (np.random.default_rng().random(legal.shape) * 1000).astype(np.int64) * legal + legal


BatchedSearch.visit_counts = _random_visits
'''

SLEEP_PATCH = '''
import time as _time

_evaluate_and_expand = BatchedSearch._evaluate_and_expand


def _slow_evaluate_and_expand(self, nodes):  # the PR's "refactor": a sleep in the search
    _time.sleep(0.004)
    return _evaluate_and_expand(self, nodes)


BatchedSearch._evaluate_and_expand = _slow_evaluate_and_expand
'''

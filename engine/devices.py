"""Which device a role runs on, and how many processes and threads the machine holds.

``resolve_device("auto" | "cpu" | "cuda" | "cuda:N")``: ``auto`` is CUDA when torch sees a
GPU, else the CPU; a CUDA device that is not there is a ``DeviceUnavailable`` (one line).
``plan_sizes(cores, gpus)`` sizes the loop for a machine: selfplay and evaluation workers,
their torch threads and the trainer's, leaving a core to the handlers and the trainer its
threads; on 2 cores it gives the sizes the shipped config was measured with (2 selfplay
workers, 1 evaluation worker, 1 thread each). ``machine()`` counts this machine's cores
(the ones this process may run on) and GPUs without importing torch, so a config can be
sized wherever it is read. ``games_in_flight_for`` picks the batch a device wants, and
``batches_in_flight_for`` how many such batches a selfplay process keeps going at once.
"""

from __future__ import annotations

import glob
import os
import re

import msgspec

from engine.errors import EngineError

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"


class DeviceUnavailable(EngineError, ValueError):
    """A device setting that this machine cannot honour (``cuda`` without a GPU, a bad name)."""


def resolve_device(spec: str, *, cuda_count: int | None = None) -> str:
    """``"cpu"`` or ``"cuda:N"`` for a setting; ``cuda_count`` (default: torch's count of
    visible GPUs) says how many GPUs there are."""
    if not re.match(DEVICE_PATTERN, spec):
        raise DeviceUnavailable(f"device {spec!r} is not one of auto, cpu, cuda, cuda:N")
    if spec == "cpu":
        return "cpu"
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec == "auto":
        return "cuda:0" if cuda_count > 0 else "cpu"
    index = int(spec.partition(":")[2] or 0)
    if index >= cuda_count:
        raise DeviceUnavailable(
            f"device {spec!r}: this machine has {cuda_count} CUDA device(s) visible to torch"
        )
    return f"cuda:{index}"


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def cpu_cores() -> int:
    """Cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def gpu_count() -> int:
    """NVIDIA GPUs visible here, without importing torch: ``CUDA_VISIBLE_DEVICES`` when it is
    set, else the ``/dev/nvidiaN`` device files."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip()]
        return 0 if not ids or ids[0].strip().startswith("-") else len(ids)
    return len([p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia[0-9]+", p)])


def machine() -> tuple[int, int]:
    """(cores, GPUs) of this machine."""
    return cpu_cores(), gpu_count()


class Sizes(msgspec.Struct, frozen=True, kw_only=True):
    """How the loop uses a machine of ``cores`` cores and ``gpus`` GPUs."""

    cores: int
    gpus: int
    selfplay_workers: int
    evaluation_workers: int
    selfplay_threads: int
    evaluation_threads: int
    training_threads: int


def plan_sizes(cores: int, gpus: int) -> Sizes:
    """Sizes for a machine. Up to 4 cores: 2 selfplay workers and 1 evaluation worker with one
    torch thread each (selfplay runs niced, so it takes what training and matches leave).
    Beyond: the trainer keeps its threads (1 when it trains on a GPU, else a quarter of the
    cores, at most 8), the handlers one core, and the rest is split 3 : 1 between selfplay
    and evaluation workers of one thread each (16 cores, no GPU: 9 + 2, training 4; with a
    GPU: 11 + 3, training 1)."""
    if cores < 1 or gpus < 0:
        raise ValueError(f"a machine needs >= 1 core and >= 0 GPUs, got {cores} and {gpus}")
    if cores <= 4:
        return Sizes(cores=cores, gpus=gpus, selfplay_workers=2, evaluation_workers=1,
                     selfplay_threads=1, evaluation_threads=1, training_threads=1)
    training = 1 if gpus else min(8, max(1, cores // 4))
    spare = max(2, cores - training - 1)
    evaluation = max(1, spare // 4)
    return Sizes(cores=cores, gpus=gpus, selfplay_workers=max(1, spare - evaluation),
                 evaluation_workers=evaluation, selfplay_threads=1, evaluation_threads=1,
                 training_threads=training)


def games_in_flight_for(device: str, cpu_games: int, gpu_games: int) -> int:
    """Games advanced together by one selfplay process on ``device`` (a resolved name)."""
    return gpu_games if is_cuda(device) else cpu_games


def batches_in_flight_for(device: str, setting: int | str) -> int:
    """Batches one selfplay process keeps in flight on ``device`` (a resolved name) for a
    ``batches_in_flight`` setting: ``auto`` is 2 on a GPU (one half of the games searches
    while the other half's batch is on the GPU, ``engine.overlapped_selfplay``) and 1 on the
    CPU, where the overlapped network call would take a core the sizes gave another worker."""
    if setting == "auto":
        return 2 if is_cuda(device) else 1
    if not isinstance(setting, int) or setting < 1:
        raise ValueError(f"batches_in_flight must be auto or an integer >= 1, got {setting!r}")
    return setting

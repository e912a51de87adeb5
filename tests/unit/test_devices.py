"""Devices per role and sizes that follow the machine (engine/devices.py, the loop config)."""

from __future__ import annotations

import pytest
import torch

from engine.devices import (
    DeviceUnavailable,
    batches_in_flight_for,
    machine,
    plan_sizes,
    resolve_device,
)
from handlers.loop.config import LoopConfig, load_loop_config, resolved_settings
from streams.config import convert_config
from streams.errors import ConfigError


def test_auto_is_cuda_only_when_there_is_a_gpu():
    assert resolve_device("auto", cuda_count=0) == "cpu"
    assert resolve_device("auto", cuda_count=2) == "cuda:0"
    assert resolve_device("cuda:1", cuda_count=2) == "cuda:1"
    assert resolve_device("cpu", cuda_count=2) == "cpu"
    with pytest.raises(DeviceUnavailable, match="0 CUDA device"):
        resolve_device("cuda", cuda_count=0)
    with pytest.raises(DeviceUnavailable, match="not one of"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_auto_resolves_to_the_cpu_here():
    assert resolve_device("auto") == "cpu"
    config = load_loop_config()
    resolved = resolved_settings(config)
    assert {resolved[f"{r}.device"] for r in ("selfplay", "evaluation", "training")} == {"cpu"}
    assert resolved["selfplay.batches_in_flight"] == 1


@pytest.mark.parametrize(
    ("cores", "gpus", "selfplay", "evaluation", "training"),
    [(1, 0, 2, 1, 1), (2, 0, 2, 1, 1), (4, 0, 2, 1, 1), (6, 0, 3, 1, 1), (8, 0, 4, 1, 2),
     (16, 0, 9, 2, 4), (16, 1, 11, 3, 1),
     (64, 0, 42, 13, 8)],
)
def test_sizes_follow_cores_and_gpus(cores, gpus, selfplay, evaluation, training):
    sizes = plan_sizes(cores, gpus)
    assert (sizes.selfplay_workers, sizes.evaluation_workers, sizes.training_threads) == (
        selfplay, evaluation, training)
    assert sizes.selfplay_threads == sizes.evaluation_threads == 1
    if cores > 4:  # room is left for the trainer's threads and a core for the handlers
        assert selfplay + evaluation + training + 1 <= cores


def test_the_shipped_config_is_sized_for_this_machine():
    """``auto`` becomes this machine's numbers; on 2 cores the sizes measured there (2/1/1)."""
    config = load_loop_config()
    sizes = plan_sizes(*machine())
    assert config.selfplay.workers == sizes.selfplay_workers
    assert config.evaluation.workers == sizes.evaluation_workers
    assert config.training.torch_threads == sizes.training_threads
    if machine()[0] == 2:
        shipped = (config.selfplay.workers, config.evaluation.workers, config.training.torch_threads)
        assert shipped == (2, 1, 1)
    resolved = resolved_settings(config)
    assert resolved["selfplay.workers"] == config.selfplay.workers and resolved["cores"] == machine()[0]


def test_numbers_are_kept_and_bad_devices_refused_with_the_field_path():
    config = convert_config({"selfplay": {"workers": 5, "torch_threads": 2}}, LoopConfig, "test")
    assert (config.selfplay.workers, config.selfplay.torch_threads) == (5, 2)
    with pytest.raises(ConfigError, match=r"selfplay.device"):
        convert_config({"selfplay": {"device": "gpu0"}}, LoopConfig, "test")
    with pytest.raises(ConfigError, match=r"evaluation.workers"):
        convert_config({"evaluation": {"workers": "many"}}, LoopConfig, "test")
    with pytest.raises(ConfigError, match="training.device"):
        config = convert_config({"training": {"device": "cuda:3"}}, LoopConfig, "test")
        resolved_settings(config, cuda_count=1)


def test_batches_in_flight_are_two_on_a_gpu_and_one_on_the_cpu_unless_set():
    assert batches_in_flight_for("cpu", "auto") == 1
    assert batches_in_flight_for("cuda:0", "auto") == 2
    assert batches_in_flight_for("cpu", 3) == batches_in_flight_for("cuda:1", 3) == 3
    with pytest.raises(ValueError, match="batches_in_flight"):
        batches_in_flight_for("cpu", 0)
    config = convert_config({"selfplay": {"device": "cuda", "batches_in_flight": "auto"}}, LoopConfig, "t")
    assert resolved_settings(config, cuda_count=1)["selfplay.batches_in_flight"] == 2
    config = convert_config({"selfplay": {"batches_in_flight": 1}}, LoopConfig, "t")
    assert resolved_settings(config, cuda_count=1)["selfplay.batches_in_flight"] == 1
    with pytest.raises(ConfigError, match="selfplay.batches_in_flight"):
        convert_config({"selfplay": {"batches_in_flight": 0}}, LoopConfig, "t")

"""The loop's typed config: the shipped file shows the defaults, and bad values are refused
with the path of the field."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from handlers.loop.config import LoopConfig, load_loop_config
from streams.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "unified_loop.yaml"


def test_the_shipped_config_is_the_defaults():
    assert load_loop_config(SHIPPED) == LoopConfig()


@pytest.mark.parametrize(
    ("dotted", "value", "path"),
    [
        ("selfplay.nice", 20, "$.selfplay.nice"),
        ("selfplay.nice", -1, "$.selfplay.nice"),
        ("evaluation.units_per_batch", 0, "$.evaluation.units_per_batch"),
        ("training.window", "huge", "$.training.window"),
        ("training.max_samples_per_position", "many", "$.training.max_samples_per_position"),
        ("training.train.search_value_weight", 1.5, "$.training.train"),
        ("selfplay.threads", 2, "$.selfplay"),  # an unknown key
    ],
)
def test_bad_values_are_refused_with_the_field_path(dotted, value, path):
    with pytest.raises(ConfigError) as info:
        load_loop_config(SHIPPED, {dotted: value})
    assert path in str(info.value) and str(SHIPPED) in str(info.value)


def test_a_curriculum_must_end_with_an_open_stage():
    stages = msgspec.to_builtins(LoopConfig().curriculum)
    stages[-1]["until_generation"] = 9
    with pytest.raises(ConfigError, match="until_generation: null"):
        load_loop_config(SHIPPED, {"curriculum": stages})


@pytest.mark.parametrize(("fraction", "fast"), [(1.2, 16), (0.25, 0), (0.25, 500)])
def test_a_bad_playout_cap_is_refused_with_the_stage_path(fraction, fast):
    stages = msgspec.to_builtins(LoopConfig().curriculum)
    stages[0].update(full_search_fraction=fraction, fast_simulations=fast)
    with pytest.raises(ConfigError) as info:
        load_loop_config(SHIPPED, {"curriculum": stages})
    assert "$.curriculum[0]" in str(info.value)
    assert "full_search_fraction" in str(info.value) or "fast_simulations" in str(info.value)

"""Bad config input is one ``ConfigError`` line naming the field (or the file), never a
traceback and never a silent default; keys that did nothing are gone; the config in force
survives its trip through ``loop.started``."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from handlers.loop.config import (
    DEFAULT_CONFIG_PATH,
    LoopConfig,
    SupervisorSection,
    load_in_force,
    load_loop_config,
    prepare_log_dir,
    recorded_in_force,
)
from handlers.promotion.config import PromotionConfig, load_promotion_config
from scripts.common import load_target
from streams import codec
from streams import events as ev
from streams.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / DEFAULT_CONFIG_PATH
SHIPPED_PROMOTION = REPO / "config" / "promotion.yaml"


def _write(tmp_path: Path, text: str | bytes, name: str = "loop.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("dotted", "value", "field"),
    [
        ("run", "a.b", "$.run"),
        ("run", "bad.run name", "$.run"),
        ("training.threshold_positions", -5, "$.training.threshold_positions"),
        ("training.threshold_positions", 0, "$.training.threshold_positions"),
        ("selfplay.workers", -1, "$.selfplay.workers"),
        ("evaluation.workers", -2, "$.evaluation.workers"),
        ("health.interval_s", -3.0, "$.health.interval_s"),
        ("health.interval_s", 0, "$.health.interval_s"),
        ("game.name", "chess", "$.game"),
        ("game.params", {"depth": 3}, "$.game"),
        ("selfplay.seed", -1, "$.selfplay.seed"),
        ("sync.games_per_shard", 0, "$.sync.games_per_shard"),
        ("metrics.port", 70000, "$.metrics.port"),
        ("curriculum", [{"name": "main", "simulations": 0}], "$.curriculum[0].simulations"),
        ("supervisor.restart_backoff_max_s", 0.1, "$.supervisor"),
        ("evaluation.simulations", 64, "$.evaluation"),  # one home: promotion's simulations
    ],
)
def test_a_value_out_of_range_is_one_line_with_its_field_path(dotted, value, field):
    with pytest.raises(ConfigError) as info:
        load_loop_config(SHIPPED, {dotted: value})
    message = _one_line(info)
    assert field in message and str(SHIPPED) in message


def test_a_run_name_with_a_dot_in_the_file_is_refused(tmp_path):
    path = _write(tmp_path, 'run: "bad.run name"\n')
    with pytest.raises(ConfigError, match=r"\$\.run"):
        load_loop_config(path)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("- run: a\n- run: b\n", "must be a mapping"),
        ("just a string\n", "must be a mapping"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a text file"),
        ("", "empty"),
        ("# only comments\n\n", "empty"),
        ("run: [unclosed\n", "not valid YAML"),
    ],
    ids=["list", "scalar", "binary", "empty", "comments-only", "bad-yaml"],
)
def test_a_file_that_is_not_a_mapping_of_keys_is_refused(tmp_path, content, says):
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_loop_config(path)
    message = _one_line(info)
    assert says in message and str(path) in message


def test_a_missing_or_unreadable_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_loop_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_loop_config(tmp_path)  # a directory


def test_an_empty_promotion_config_is_refused_too(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        load_promotion_config(_write(tmp_path, "", "promotion.yaml"))


def test_an_unwritable_log_dir_is_one_line_naming_the_field(tmp_path):
    blocker = _write(tmp_path, "a file, not a folder", "blocker")
    config = LoopConfig(supervisor=SupervisorSection(log_dir=str(blocker / "logs")))
    with pytest.raises(ConfigError) as info:
        prepare_log_dir(config)
    assert "supervisor.log_dir" in _one_line(info)
    ok = LoopConfig(supervisor=SupervisorSection(log_dir=str(tmp_path / "a" / "b")))
    assert prepare_log_dir(ok).is_dir()


def test_the_cli_target_reads_the_whole_file_and_checks_the_run(tmp_path):
    path = _write(tmp_path, "run: r1\nnats:\n  port: 4333\n")
    target = load_target(path)
    assert target.run == "r1" and target.nats.port == 4333
    assert load_target(path, "r2").run == "r2"
    with pytest.raises(ConfigError, match=r"\$\.run"):
        load_target(path, "a.b")
    with pytest.raises(ConfigError, match=r"\$\.training"):  # no more lenient second reader
        load_target(_write(tmp_path, "training: {threshold_positions: -1}\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="empty"):
        load_target(_write(tmp_path, "", "empty.yaml"))


def test_the_promotion_config_has_no_nats_section():
    """The loop's nats: is the one home of the server; promotion.yaml's was never read."""
    assert "nats" not in msgspec.structs.fields(PromotionConfig).__repr__()
    assert "nats" not in yaml.safe_load(SHIPPED_PROMOTION.read_text())
    with pytest.raises(ConfigError, match="nats"):
        load_promotion_config(SHIPPED_PROMOTION, {"nats": {"port": 4222}})


def test_the_config_in_force_survives_loop_started(tmp_path):
    promotion = _write(tmp_path, SHIPPED_PROMOTION.read_text().replace("simulations: 48", "simulations: 7"),
                       "promotion.yaml")
    loop = _write(tmp_path, f"run: r9\npromotion_config: {promotion}\nselfplay: {{seed: 42}}\n")
    in_force = load_in_force(loop)
    assert in_force.promotion.simulations == 7 and in_force.loop.selfplay.seed == 42
    assert len(in_force.loop_sha256) == 64 and len(in_force.promotion_sha256) == 64
    started = ev.LoopStarted.new("r9", by="test", **in_force.started_fields())
    back = codec.decode(codec.encode(started))
    recorded = recorded_in_force(back, seq=12)
    assert recorded.loop == in_force.loop and recorded.promotion == in_force.promotion
    assert (recorded.loop_sha256, recorded.promotion_sha256, recorded.seq) == (
        in_force.loop_sha256, in_force.promotion_sha256, 12)


def test_a_start_that_recorded_no_config_is_refused():
    with pytest.raises(ConfigError, match="records no loop or no promotion config"):
        recorded_in_force(ev.LoopStarted.new("r1", config=msgspec.to_builtins(LoopConfig())))


def test_a_bad_promotion_config_is_refused_when_the_loop_config_is_loaded(tmp_path):
    promotion = _write(tmp_path, "max_pairs: -3\n", "promotion.yaml")
    loop = _write(tmp_path, f"promotion_config: {promotion}\n")
    with pytest.raises(ConfigError) as info:
        load_in_force(loop)
    assert "max_pairs" in _one_line(info) and str(promotion) in str(info.value)

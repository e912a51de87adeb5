"""The ``jetzero events`` and ``server`` commands, run as a user runs them (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec
import pytest

from streams import codec, names
from streams import events as ev
from streams.server import free_port
from tests.loop_configs import nats_section

pytestmark = pytest.mark.integration


def jetzero(*args: str, config=None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "scripts.cli", *args]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def config(tmp_path, nats_settings):
    path = tmp_path / "loop.yaml"
    path.write_text(f"run: r1\nnats: {json.dumps(nats_section(nats_settings))}\n")
    return path


async def test_replay_until_gives_the_state_at_that_point(store, config):
    seqs = await store.append_many([
        ev.LoopStarted.new("r1", by="alice"),
        ev.LoopHalted.new("r1", by="bob", reason="nan loss"),
        ev.LoopResumed.new("r1", by="carol"),
    ])
    out = jetzero("events", "replay", "--projection", "loop_status", "--until", str(seqs[1]),
                  "--json", config=config)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["position"] == seqs[1]
    assert data["state"]["halted"] and data["state"]["halt_reason"] == "nan loss"
    now = json.loads(jetzero("events", "replay", "-p", "loop_status", "--json",
                             config=config).stdout)
    assert now["state"]["state"] == "running" and not now["state"]["halted"]
    assert now["state"]["halted_by"] == "carol"
    table = jetzero("events", "replay", "-p", "loop_status", "--until", str(seqs[0]),
                    config=config)
    assert "as of sequence 1" in table.stdout and "running" in table.stdout
    assert "alice" in table.stdout


async def test_show_tail_export_stats(store, config):
    await store.append_many([ev.LoopHalted.new("r1", reason=f"r{i}") for i in range(5)])
    shown = json.loads(jetzero("events", "show", "3", config=config).stdout)
    assert shown["seq"] == 3 and shown["event"]["reason"] == "r2"
    tail = jetzero("events", "tail", "-n", "2", "--type", "loop.halted", config=config)
    assert tail.returncode == 0 and tail.stdout.count("loop.halted") == 2 and "r4" in tail.stdout
    lines = jetzero("events", "export", "--jsonl", "--from", "2", "--until", "4",
                    config=config).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [2, 3, 4]
    stats = jetzero("events", "stats", config=config).stdout
    assert "loop.halted" in stats and "5" in stats


def test_bad_arguments_are_one_clear_error(config):
    for args in (["events", "show", "notanumber"], ["events", "replay", "-p", "nope"],
                 ["events", "replay", "-p", "loop_status", "--until", "yesterday"]):
        out = jetzero(*args, config=config)
        assert out.returncode == 2, args
        assert "Traceback" not in out.stderr


def test_unreachable_server_is_one_line_and_non_zero(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"nats:\n  url: nats://127.0.0.1:{free_port()}\n")
    out = jetzero("events", "stats", config=path)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "no NATS server answers" in out.stderr


def test_bad_config_value_names_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("nats:\n  port: many\n")
    out = jetzero("events", "stats", config=path)
    assert out.returncode == 2 and "$.nats.port" in out.stderr and "Traceback" not in out.stderr


async def test_stats_count_by_decoded_type_not_by_subject(store, config):
    promoted_subject = codec.subject_of(ev.CandidatePromoted.new("r1", model_id="m1", generation=1))
    await store.append_many([ev.LoopHalted.new("r1", reason="a"), ev.LoopHalted.new("r1", reason="b")])
    await store.js.publish(promoted_subject, msgspec.msgpack.encode([1]), stream=names.EVENTS)
    await store.js.publish(promoted_subject, b"\xc1 junk", stream=names.EVENTS)
    out = jetzero("events", "stats", config=config)
    assert out.returncode == 0, out.stderr
    counts = dict(line.split() for line in out.stdout.splitlines() if line.startswith("    "))
    assert counts == {"loop.halted": "2", "(undecodable)": "2"}  # before: candidate.promoted 2


async def test_tail_searches_back_as_far_as_the_type_needs(store, config):
    await store.append_many([ev.LoopHalted.new("r1", reason=f"old{i}") for i in range(4)])
    await store.append_many([ev.ProcessRestarted.new("r1", process="sync") for _ in range(2500)])
    out = jetzero("events", "tail", "--type", "loop.halted", "-n", "3", config=config)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()  # before: nothing (only the last 150 events were read)
    assert len(lines) == 3 and ["old1" in lines[0], "old2" in lines[1], "old3" in lines[2]] == [True] * 3
    everything = jetzero("events", "tail", "--type", "loop.halted", "-n", "10", config=config)
    assert everything.stdout.count("loop.halted") == 4


@pytest.mark.parametrize("point", ["nan", "inf", "-inf", "-5", "1969-12-31T00:00"])
def test_a_point_that_is_no_time_is_refused(config, point):
    for args in (["events", "replay", "-p", "loop_status", f"--until={point}"],
                 ["events", "export", f"--from={point}"]):
        out = jetzero(*args, config=config)
        assert out.returncode == 2, (args, out.stdout)  # before: accepted, exit 0
        message = " ".join(out.stderr.replace("│", " ").split())  # unwrapped from its box
        assert "not a sequence or a time after 1970" in message and "Traceback" not in out.stderr

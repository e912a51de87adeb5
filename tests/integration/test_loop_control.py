"""The loop's controls against a real server: a later halt wins over a queued resume (the
controller a real process, stopped with SIGSTOP), commands decided in-process when no loop
runs, and a start failure quoting only its own attempt's lines.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from handlers.loop.config import load_in_force
from handlers.loop.control import decide_command, halt, loop_status, resume, start_background
from handlers.loop.process import child_command
from handlers.loop.supervisor import SUPERVISOR_LEASE
from streams import commands as cmd
from streams import events as ev
from streams import names
from streams.errors import CommandTimeout, JetzeroError
from streams.kv import acquire_lease, process_owner
from streams.store import EventStore
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "c1"


async def events_of(store: EventStore, kind: type) -> list:
    return [s.event async for s in store.read(names.EVENTS) if isinstance(s.event, kind)]


async def started(store: EventStore, path: Path) -> None:
    await store.append(ev.LoopStarted.new(RUN, **load_in_force(path).started_fields()))


async def test_a_later_halt_wins_over_a_resume_queued_for_a_stopped_controller(
    tmp_path, store, nats_settings
):
    path, config = write_tiny_loop(nats_settings, tmp_path, RUN)
    await started(store, path)
    await acquire_lease(store.log, RUN, SUPERVISOR_LEASE, process_owner("test"))  # as a running loop's
    argv, env = child_command("controller", 0, RUN, config.nats)
    with open(tmp_path / "controller.log", "ab") as out:
        controller = await asyncio.create_subprocess_exec(*argv, env={**os.environ, **env}, stdout=out,
                                                          stderr=out, stdin=asyncio.subprocess.DEVNULL)
    try:
        assert "halted run" in await halt(config, "first look")
        assert "accepted" in await resume(config, "looked", timeout=30)  # the controller answers
        assert "halted run" in await halt(config, "alice's halt")
        controller.send_signal(signal.SIGSTOP)
        with pytest.raises(CommandTimeout, match="recorded and will be handled"):
            await resume(config, "alice is done", timeout=1.0)
        second = await halt(config, "bob: keep it halted")
        assert "halted already" in second and "recorded too" in second
        [_, alices, bobs] = await events_of(store, ev.LoopHalted)
        assert (alices.reason, bobs.reason) == ("alice's halt", "bob: keep it halted")
        controller.send_signal(signal.SIGCONT)

        async def refused() -> list:
            return await events_of(store, ev.CommandRejected)

        [stale] = await until(refused, 30, "the controller answering alice's queued resume")
        assert "halted again since" in stale.reason
        status = await loop_status(store, RUN)
        assert status.halted and status.halt_reason == "bob: keep it halted" and status.halts == 3
        assert len(await events_of(store, ev.LoopResumed)) == 1  # only the first look's
        assert "accepted" in await resume(config, "bob is done", timeout=30)
        assert not (await loop_status(store, RUN)).halted
    finally:
        controller.send_signal(signal.SIGCONT)
        controller.send_signal(signal.SIGTERM)
        await controller.wait()


async def test_with_no_loop_running_the_controller_decides_here_queued_commands_first(
    tmp_path, store, nats_settings
):
    path, config = write_tiny_loop(nats_settings, tmp_path, RUN)
    await started(store, path)
    await store.append(ev.LoopStopped.new(RUN))
    await halt(config, "alice's halt")
    alice_saw = (await loop_status(store, RUN)).halt_seq
    queued = cmd.ResumeLoop.new(RUN, by="alice", halt_seq=alice_saw)
    await store.append(queued)  # asked while no controller ran
    await halt(config, "bob's halt")
    answer = await decide_command(store, cmd.ResumeLoop.new(RUN, by="carol", halt_seq=alice_saw))
    assert isinstance(answer, ev.CommandRejected) and "halted again since" in answer.reason
    rejected = await events_of(store, ev.CommandRejected)
    assert [r.command_id for r in rejected] == [queued.id, answer.command_id]  # the queued one first
    assert "accepted" in await resume(config, "all done")  # names bob's halt: lifted, here
    assert not (await loop_status(store, RUN)).halted
    again = await decide_command(store, cmd.StopLoop.new(RUN))
    assert isinstance(again, ev.CommandRejected) and "stopped" in again.reason


async def test_a_start_failure_quotes_this_attempts_lines_only(tmp_path, nats_settings):
    _, config = write_tiny_loop(nats_settings, tmp_path, RUN)
    log_path = Path(config.supervisor.log_dir) / "supervisor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("".join(f"an earlier attempt, line {i}\n" for i in range(5)))
    refused = tmp_path / "refused.yaml"  # the supervisor reads this one, and refuses it
    refused.write_text(f"run: {RUN}\nsync: {{games_per_shard: many}}\n")
    with pytest.raises(JetzeroError) as failed:
        await start_background(config, refused, timeout=60)
    message = str(failed.value)
    assert "did not start (exit 1)" in message and "games_per_shard" in message
    assert "earlier attempt" not in message
    assert "an earlier attempt, line 4" in log_path.read_text()  # the log itself keeps them

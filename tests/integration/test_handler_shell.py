"""The handler shell against a real server: crash between append and ack, poison input."""

from __future__ import annotations

import dataclasses

import pytest

from handlers.loop.controller import build_controller
from streams import commands as cmd
from streams import events as ev
from streams import names
from streams.commanding import send_command

pytestmark = pytest.mark.integration


class Crash(Exception):
    pass


async def _events(store, tag=None):
    return [s.event async for s in store.read(names.EVENTS)
            if tag is None or getattr(s.event, "tag", None) == tag]


async def test_killed_between_append_and_ack_emits_nothing_twice(store):
    await store.append(ev.LoopStarted.new("r1"))
    await store.append(cmd.StopLoop.new("r1", by="ops"))
    shell, _ = build_controller(store, "r1")

    async def crash_before_ack(delivery, cause_id):
        raise Crash()

    shell._done = crash_before_ack  # the process dies after appending, before remembering/acking
    await shell.open()
    with pytest.raises(Crash):
        for d in await shell.consumer.fetch(10, timeout=2):
            await shell.process(d)
    await shell.consumer.close()
    assert len(await _events(store, "loop.stop_requested")) == 1

    restarted, _ = build_controller(store, "r1")  # a new process: the command comes back at once
    await restarted.open()
    assert await restarted.drain() >= 1
    assert len(await _events(store, "loop.stop_requested")) == 1
    assert len(await _events(store, "command.accepted")) == 1


async def test_a_restarted_shell_delivers_nothing_at_or_below_its_saved_position(store):
    await store.append(ev.LoopStarted.new("r1"))
    await store.append(cmd.StopLoop.new("r1"))
    shell, _ = build_controller(store, "r1")
    await shell.open()
    [d] = await shell.consumer.fetch(10, timeout=2)

    class LostAck:  # the process dies just before the ack reaches the server
        async def ack(self):
            raise Crash()

    d = dataclasses.replace(d, _msg=LostAck())
    with pytest.raises(Crash):
        await shell.process(d)  # appended + position saved, ack lost
    await shell.consumer.close()
    await store.append(cmd.ResumeLoop.new("r1"))
    restarted, _ = build_controller(store, "r1")
    await restarted.open()
    assert restarted.position.seq == d.seq
    assert await restarted.drain() == 1  # the resume only: the stop is not offered again
    assert len(await _events(store, "loop.stop_requested")) == 1


async def test_a_killed_handler_loses_none_of_the_batch_it_held(store):
    """Killed with a fetched batch half done, then newer commands arrive: the restarted
    handler must take the rest of the old batch first (the ack wait here is a minute, so
    the old consumer would hand it back only behind the newer ones, which moved the
    remembered position past it)."""
    await store.append(ev.LoopStarted.new("r1"))
    for i in range(6):
        await store.append(cmd.StopLoop.new("r1", by=f"ops{i}"))
    shell, _ = build_controller(store, "r1")
    await shell.open()
    held = await shell.consumer.fetch(10, timeout=2)
    assert len(held) == 6
    for d in held[:2]:
        await shell.process(d)
    await shell.consumer.close()  # killed: four fetched commands never acked
    for i in range(3):
        await store.append(cmd.StopLoop.new("r1", by=f"late{i}"))
    restarted, _ = build_controller(store, "r1")
    await restarted.open()
    assert await restarted.drain() == 7
    answered = {getattr(e, "causation_id", None) for e in await _events(store)
                if getattr(e, "tag", "") in ("command.accepted", "command.rejected")}
    commands = [s.event.id async for s in store.read(names.COMMANDS)]
    assert len(commands) == 9
    assert set(commands) <= answered



async def test_garbage_is_recorded_as_rejected_and_the_handler_goes_on(store, log):
    await store.append(ev.LoopStarted.new("r1"))
    garbage_subject = names.command_subject("r1", "stop")
    await log.js.publish(garbage_subject, b"\x93not-a-command")
    await store.append(cmd.StopLoop.new("r1", by="ops"))
    shell, _ = build_controller(store, "r1")
    await shell.open()
    assert await shell.drain() == 2
    await shell.consumer.close()
    rejected = await _events(store, "event.rejected")
    assert len(rejected) == 1
    assert rejected[0].subject == garbage_subject and rejected[0].seq == 1
    assert rejected[0].stream == names.COMMANDS and shell.stats.rejected == 1
    assert len(await _events(store, "loop.stop_requested")) == 1


async def test_cli_command_waits_for_the_outcome(store):
    import asyncio

    await store.append(ev.LoopStarted.new("r1"))
    shell, runner = build_controller(store, "r1")
    stop = asyncio.Event()
    task = asyncio.create_task(shell.run_until(stop))
    try:
        answer = await send_command(store, cmd.StopLoop.new("r1", by="me"), timeout=10)
        assert isinstance(answer, ev.CommandAccepted)
        again = await send_command(store, cmd.StopLoop.new("r1", by="me"), timeout=10)
        assert isinstance(again, ev.CommandRejected) and "loop is stopping" in again.reason
    finally:
        stop.set()
        await task


async def test_command_with_no_controller_times_out_with_a_hint(store):
    from streams.errors import CommandTimeout

    with pytest.raises(CommandTimeout, match="is the loop running"):
        await send_command(store, cmd.StopLoop.new("r1"), timeout=0.5)

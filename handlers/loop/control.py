"""What the loop's CLI does: start in the background, stop, halt, resume, and read status.

``--halt`` appends ``loop.halted`` straight to the log (it must work with the controller or
the supervisor down), also when the loop is halted already: every halt is recorded, and a
resume names the halt it lifts (the latest its sender saw), so a later halt always wins.
Everything else that changes a loop (stop, resume, promote, rollback) is a command decided
by the controller (``decide_command``): the running loop's, or with no loop running, the same
controller run in this process. ``--start`` launches the supervisor, which records
``loop.started``. With no server running, the embedded one is started for the call and
stopped after it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from handlers.loop.config import LoopConfig, prepare_log_dir
from handlers.loop.controller import build_controller
from handlers.loop.supervisor import supervisor_alive, supervisor_holder, who
from projections.loop_status import LoopStatus, LoopStatusProjection
from projections.runner import ProjectionRunner
from streams import commands as cmd
from streams import events as ev
from streams import names
from streams.commanding import send_command
from streams.config import NatsSettings
from streams.connection import connect
from streams.envelope import Event
from streams.errors import JetzeroError
from streams.kv import owner_gone
from streams.server import EmbeddedServer, start_if_needed
from streams.store import EventStore

T = TypeVar("T", bound=Event)


@asynccontextmanager
async def open_store(settings: NatsSettings) -> AsyncIterator[EventStore]:
    """A store on the configured server; an embedded one is started for the call if needed."""
    temporary = start_if_needed(settings)
    conn = await connect(settings, name="jetzero-cli", long_lived=False)
    try:
        yield EventStore(conn)
    finally:
        await conn.close()
        if temporary is not None:
            temporary.stop()


async def loop_status(store: EventStore, run: str) -> LoopStatus:
    runner = ProjectionRunner(store, LoopStatusProjection(), run, use_snapshots=False)
    return await runner.catch_up()


async def halt(config: LoopConfig, reason: str) -> str:
    """Append ``loop.halted``; when halted already it is recorded too (a resume asked for
    before it, still queued for a stopped controller, is refused then)."""
    async with open_store(config.nats) as store:
        status = await loop_status(store, config.run)
        seq = await store.append(ev.LoopHalted.new(config.run, by=who(), reason=reason))
        if status.halted:
            return (f"run {config.run} was halted already (since {time.ctime(status.halted_since)} by "
                    f"{status.halted_by}); your halt is recorded too (loop.halted #{seq}): only a "
                    f"resume that names it lifts the halt")
        return (f"halted run {config.run} (loop.halted #{seq}): workers pause at their next health "
                f"check (within {config.health.interval_s:g} s)")


async def decide_command(
    store: EventStore, command: cmd.Command, *, timeout: float = 10.0
) -> ev.CommandAccepted | ev.CommandRejected:
    """``command`` appended to COMMANDS and decided by the controller; its answer.

    With the run's supervisor alive, its controller decides (``CommandTimeout`` if it does not
    answer in time: the command stays queued). With no loop running, the same controller
    (``build_controller``: same durable consumer, same position, same ``decide``) runs in this
    process until the command is answered; it answers whatever was queued before it first,
    as the loop's controller would at its next start, and nothing is answered twice.
    """
    if await supervisor_alive(store, command.run):
        return await send_command(store, command, timeout=timeout)
    shell, _ = build_controller(store, command.run)
    stop = asyncio.Event()
    controller = asyncio.create_task(shell.run_until(stop))
    asking = asyncio.create_task(send_command(store, command, timeout=timeout))
    try:
        await asyncio.wait({controller, asking}, return_when=asyncio.FIRST_COMPLETED)
        if asking.done():
            return asking.result()
        controller.result()  # what stopped the controller before it answered
        raise JetzeroError(f"the controller stopped before it answered '{command.name}'")
    finally:
        stop.set()
        asking.cancel()
        await asyncio.gather(controller, asking, return_exceptions=True)


async def effect_of(store: EventStore, command: cmd.Command, kind: type[T], aggregate: str) -> tuple[T, int]:
    """The ``kind`` event the controller appended on ``aggregate`` for an accepted ``command``,
    with its sequence (``JetzeroError`` if there is none)."""
    subjects = names.aggregate_filter(names.EVENTS, command.run, aggregate)
    async for stored in store.read(names.EVENTS, subject_filter=subjects):
        event = stored.event
        if isinstance(event, kind) and getattr(event, "causation_id", "") == command.id:
            return event, stored.seq
    raise JetzeroError(f"{command.name} was accepted, but the event it causes is not in the log")


async def command(store: EventStore, command: cmd.Command, timeout: float = 10.0) -> str:
    """``command`` decided (``decide_command``): a line saying so, or ``JetzeroError`` if refused."""
    answer = await decide_command(store, command, timeout=timeout)
    if isinstance(answer, ev.CommandRejected):
        raise JetzeroError(f"{command.name} rejected: {answer.reason}")
    return f"{command.name}: accepted {answer.detail}".rstrip()


async def resume(config: LoopConfig, reason: str, timeout: float = 10.0) -> str:
    """Lift the latest halt this call sees (``ResumeLoop.halt_seq``); a later halt keeps the loop halted."""
    async with open_store(config.nats) as store:
        status = await loop_status(store, config.run)
        resume = cmd.ResumeLoop.new(config.run, by=who(), reason=reason, halt_seq=status.halt_seq)
        return await command(store, resume, timeout)


async def stop(config: LoopConfig, reason: str, timeout: float = 60.0) -> str:
    """Ask the loop to stop and wait for ``loop.stopped``."""
    async with open_store(config.nats) as store:
        if not await supervisor_alive(store, config.run):
            return f"loop {config.run} is not running"
        answer = await send_command(store, cmd.StopLoop.new(config.run, by=who(), reason=reason))
        if isinstance(answer, ev.CommandRejected):
            raise JetzeroError(f"stop rejected: {answer.reason}")
        runner = ProjectionRunner(store, LoopStatusProjection(), config.run, use_snapshots=False)
        await runner.follow()
        try:
            await runner.wait_for(lambda s: s.state == "stopped", timeout)
        except TimeoutError:
            raise JetzeroError(f"the loop did not stop within {timeout:.0f} s") from None
        finally:
            await runner.stop()
    # the supervisor stops the embedded server it started; wait for it to go
    deadline = time.monotonic() + 20
    while not config.nats.url and EmbeddedServer(config.nats).status().running:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    return f"loop {config.run} stopped"


async def start_background(config: LoopConfig, config_path: Path, timeout: float = 120.0) -> str:
    """Start the supervisor detached; return once ``loop.started`` is in the log."""
    log_dir = prepare_log_dir(config)  # an unwritable log_dir: one ConfigError line
    if config.nats.url or EmbeddedServer(config.nats).status().running:
        async with open_store(config.nats) as store:
            holder = await supervisor_holder(store, config.run)
            if holder is not None and not owner_gone(holder):  # a dead holder's lease is taken over
                return f"loop {config.run} is already running (supervisor of {holder})"
    log_path = log_dir / "supervisor.log"
    t0 = time.time()
    with open(log_path, "ab") as out:
        offset = out.tell()  # this attempt's lines start here (the log keeps earlier ones)
        proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.loop.supervisor", "--config", str(config_path)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode == 3:
                return f"loop {config.run} is already running"
            tail = attempt_lines(log_path, offset)[-3:] or ["(it wrote nothing)"]
            raise JetzeroError(f"the loop did not start (exit {proc.returncode}): {' | '.join(tail)}")
        server_up = config.nats.url or EmbeddedServer(config.nats).status().running
        if server_up:
            try:
                async with open_store(config.nats) as store:
                    status = await loop_status(store, config.run)
                if status.state == "running" and status.started_at >= t0:
                    return (f"loop {config.run} started (pid {proc.pid}); logs in {log_dir}/ "
                            f"(supervisor.log and one per process)")
            except JetzeroError:
                pass
        await asyncio.sleep(0.3)
    raise JetzeroError(f"the loop did not report started within {timeout:.0f} s; see {log_path}")


def attempt_lines(log_path: Path, offset: int) -> list[str]:
    """The non-empty lines written to ``log_path`` from byte ``offset`` on (one attempt's)."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if line.strip()]

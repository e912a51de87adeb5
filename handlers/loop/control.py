"""What the loop's CLI does: start in the background, stop, halt, resume, and read status.

``--halt`` appends ``loop.halted`` straight to the log (it must work with the controller or
the supervisor down); ``--resume`` and ``--stop`` go through the controller as commands.
With no server running, the embedded one is started for the call and stopped after it.
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

from handlers.loop.config import LoopConfig
from handlers.loop.supervisor import SUPERVISOR_LEASE, who
from projections.loop_status import LoopStatus, LoopStatusProjection
from projections.runner import ProjectionRunner
from streams import commands as cmd
from streams import events as ev
from streams import names
from streams.commanding import send_command
from streams.config import NatsSettings
from streams.connection import connect
from streams.errors import JetzeroError
from streams.kv import get_value
from streams.server import EmbeddedServer
from streams.store import EventStore


@asynccontextmanager
async def open_store(settings: NatsSettings) -> AsyncIterator[EventStore]:
    """A store on the configured server; an embedded one is started for the call if needed."""
    temporary = None
    if not settings.url:
        server = EmbeddedServer(settings)
        if not server.status().running:
            server.start()
            temporary = server
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


async def supervisor_holder(store: EventStore, run: str) -> str | None:
    """Who holds the supervisor lease of ``run`` (None: no supervisor is running)."""
    held = await get_value(store.log, names.KV_LOCKS, names.lock_key(run, SUPERVISOR_LEASE))
    return held.decode() if held else None


async def halt(config: LoopConfig, reason: str) -> str:
    async with open_store(config.nats) as store:
        status = await loop_status(store, config.run)
        if status.halted:
            return f"already halted since {time.ctime(status.halted_since)} by {status.halted_by}"
        await store.append(ev.LoopHalted.new(config.run, by=who(), reason=reason))
        return (f"halted run {config.run}: workers pause at their next health check "
                f"(within {config.health.interval_s:g} s)")


async def command(config: LoopConfig, command: cmd.Command, timeout: float = 10.0) -> str:
    async with open_store(config.nats) as store:
        answer = await send_command(store, command, timeout=timeout)
        if isinstance(answer, ev.CommandRejected):
            raise JetzeroError(f"{command.name} rejected: {answer.reason}")
        return f"{command.name}: accepted {answer.detail}".rstrip()


async def resume(config: LoopConfig, reason: str) -> str:
    return await command(config, cmd.ResumeLoop.new(config.run, by=who(), reason=reason))


async def stop(config: LoopConfig, reason: str, timeout: float = 60.0) -> str:
    """Ask the loop to stop and wait for ``loop.stopped``."""
    async with open_store(config.nats) as store:
        if await supervisor_holder(store, config.run) is None:
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
    log_dir = Path(config.supervisor.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    if config.nats.url or EmbeddedServer(config.nats).status().running:
        async with open_store(config.nats) as store:
            holder = await supervisor_holder(store, config.run)
            if holder is not None:
                return f"loop {config.run} is already running (supervisor of {holder})"
    log_path = log_dir / "supervisor.log"
    t0 = time.time()
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "handlers.loop.supervisor", "--config", str(config_path)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            if proc.returncode == 3:
                return f"loop {config.run} is already running"
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

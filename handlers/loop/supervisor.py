"""The supervisor: one per run. Starts the embedded server (unless ``nats.url``), records
``loop.started`` with the config in force (the loop config and the promotion config, whole,
with their files' sha256; children read them from there, see ``handlers.loop.process``),
runs every handler and worker as a child process,
restarts crashed children with back-off (recording ``process.restarted``), and stops them
gracefully when ``loop.stop_requested`` appears in the log or on SIGTERM.

A lease in the locks bucket keeps a second supervisor of the same run from starting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from handlers.loop.config import DEFAULT_CONFIG_PATH, ConfigInForce, LoopConfig, prepare_log_dir
from handlers.loop.process import child_command, process_label, process_names
from projections.loop_status import LoopStatusProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.connection import connect
from streams.errors import LockHeld
from streams.kv import acquire_lease, get_value, owner_gone, process_owner
from streams.server import die_with_parent, start_if_needed
from streams.store import EventStore

log = logging.getLogger(__name__)
SUPERVISOR_LEASE = "supervisor"


def who() -> str:
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER", "user")
    return f"{user}@{socket.gethostname()}"


async def supervisor_holder(store: EventStore, run: str) -> str | None:
    """Who holds the supervisor lease of ``run`` (None: no supervisor is running)."""
    held = await get_value(store.log, names.KV_LOCKS, names.lock_key(run, SUPERVISOR_LEASE))
    return held.decode() if held else None


async def supervisor_alive(store: EventStore, run: str) -> bool:
    """A supervisor of ``run`` holds its lease (and is not a process of this host that ended)."""
    holder = await supervisor_holder(store, run)
    return holder is not None and not owner_gone(holder)



@dataclass
class Child:
    name: str
    index: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = 0.0
    backoff: float = 0.0
    log_path: Path | None = None

    @property
    def label(self) -> str:
        return process_label(self.name, self.index)


@dataclass
class Supervisor:
    in_force: ConfigInForce
    verbose: bool = False
    children: list[Child] = field(default_factory=list)

    @property
    def config(self) -> LoopConfig:
        return self.in_force.loop

    def _spawn(self, child: Child) -> None:
        cmd, child_env = child_command(child.name, child.index, self.config.run, self.config.nats,
                                       verbose=self.verbose)
        log_dir = prepare_log_dir(self.config)
        child.log_path = log_dir / f"{child.label}.log"
        out = None if self.verbose else open(child.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **child_env)
        child.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT if out else None, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent, env=env,
        )
        if out is not None:
            out.close()
        child.started = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Run the loop until stop is set or a stop is requested through the log."""
        started_server = start_if_needed(self.config.nats)  # dies with this process
        conn = await connect(self.config.nats, name="jetzero-supervisor")
        store = EventStore(conn)
        lease = None
        try:
            lease = await acquire_lease(conn, self.config.run, SUPERVISOR_LEASE,
                                        process_owner(who()), stale=owner_gone)
            status = ProjectionRunner(store, LoopStatusProjection(), self.config.run)
            await status.follow()
            await store.append(ev.LoopStarted.new(
                self.config.run, by=who(), reason="supervisor start", host=socket.gethostname(),
                **self.in_force.started_fields(),
            ))
            self.children = [Child(n, i) for n, i in process_names(self.config)]
            for child in self.children:
                self._spawn(child)
            log.info("loop %s running: %d processes; logs in %s", self.config.run,
                     len(self.children), self.config.supervisor.log_dir)
            renew_every = max(1.0, self.config.nats.lock_ttl_s / 3)
            next_renew = time.monotonic() + renew_every
            while not stop.is_set() and status.state.state != "stopping":
                await self._reap(store)
                if time.monotonic() >= next_renew:
                    await lease.renew()
                    next_renew = time.monotonic() + renew_every
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except TimeoutError:
                    pass
            await self._stop_children()
            reason = "stop requested" if status.state.state == "stopping" else "supervisor signalled"
            await store.append(ev.LoopStopped.new(self.config.run, by=who(), reason=reason))
            await status.stop()
        finally:
            if lease is not None:
                await lease.release()
            await conn.close()
            if started_server is not None:
                started_server.stop()

    async def _reap(self, store: EventStore) -> None:
        cfg = self.config.supervisor
        for child in self.children:
            proc = child.process
            if proc is None:
                if time.monotonic() >= child.backoff:
                    self._spawn(child)
                continue
            code = proc.poll()
            if code is None:
                continue
            ran = time.monotonic() - child.started
            child.restarts += 1
            delay = cfg.restart_backoff_s if ran > 60 else min(
                cfg.restart_backoff_max_s, cfg.restart_backoff_s * 2 ** min(child.restarts - 1, 10)
            )
            log.warning("%s exited with %s after %.1f s; restarting in %.1f s",
                        child.label, code, ran, delay)
            await store.append(ev.ProcessRestarted.new(
                self.config.run, by="supervisor", process=child.label, exit_code=code,
                restarts=child.restarts, backoff_s=delay, reason=f"exited after {ran:.1f} s",
            ))
            child.process = None
            child.backoff = time.monotonic() + delay

    async def _stop_children(self, timeout: float = 30.0) -> None:
        live = [c.process for c in self.children if c.process and c.process.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in live:
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def supervise(in_force: ConfigInForce, *, verbose: bool = False,
                    stop: asyncio.Event | None = None) -> None:
    """Run the loop on ``in_force`` (from ``handlers.loop.config.load_in_force``) until stopped."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    prepare_log_dir(in_force.loop)
    await Supervisor(in_force, verbose).run(stop)


__all__ = ["Supervisor", "supervise", "process_names", "LockHeld"]


def main(argv: list[str] | None = None) -> int:
    """``python -m handlers.loop.supervisor --config PATH [--verbose]``: run the loop in this process."""
    import argparse

    import uvloop

    from handlers.loop.config import load_in_force
    from streams.errors import JetzeroError

    parser = argparse.ArgumentParser(prog="handlers.loop.supervisor")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s supervisor %(levelname)s %(name)s: %(message)s")
    try:
        in_force = load_in_force(args.config)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(supervise(in_force, verbose=args.verbose))
    except LockHeld as exc:
        print(f"error: the loop is already running ({exc})", file=sys.stderr)
        return 3
    except JetzeroError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

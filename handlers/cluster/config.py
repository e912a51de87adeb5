"""The cluster's typed config (``config/cluster.yaml``), range-checked, field paths in errors.

``nats:`` is either ``urls:`` (servers that exist; ``credentials:`` a jetzero credentials
file, see ``handlers.cluster.credentials``) or ``embedded: 3`` (``handlers.cluster.servers``
starts that many JetStream servers on loopback with routes, each with its own store under
``data_dir``; consecutive ports from ``port``, ``route_port`` and ``http_port``). ``replicas``
applies to every stream, KV bucket and object store. ``nodes`` lists the machines, their roles
and how each node's agent is launched; ``min_version`` / ``max_model_lag`` / ``lease_ttl_s``
are read by the agent, heal and lease modules, which own their behaviour.
Loaded with ``streams.config.read_document``; every error is one ``ConfigError`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from streams.config import NatsSettings, TlsSettings, convert_config, read_document
from streams.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/cluster.yaml")
Role = Literal["selfplay", "eval", "train", "promote", "sync"]
ROLES: tuple[str, ...] = ("selfplay", "eval", "train", "promote", "sync")
_VERSION_PARTS = 3


class ClusterNats(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the cluster's servers are: existing ``urls``, or ``embedded`` ones started here."""

    urls: list[str] = []
    credentials: str | None = None  # with urls: the operator's credentials file (0600)
    embedded: int = 0  # 0: use urls; 3 or 5: start that many servers on this machine
    host: str = "127.0.0.1"
    port: int = 14222  # client ports port, port+1, ...
    route_port: int = 14322
    http_port: int = 14422  # monitoring (/healthz, /jsz)
    data_dir: str = "data/cluster"  # one store per server, the credentials, the logs
    # Clients drop a silent (frozen) server after ping_interval_s x (max_outstanding_pings + 1).
    ping_interval_s: float = 0.5
    max_outstanding_pings: int = 2
    duplicate_window_s: float = 120.0
    tls: TlsSettings | None = None  # with urls: TLS to your servers (streams.config.TlsSettings)

    def __post_init__(self) -> None:
        if self.embedded and self.tls is not None:
            raise ValueError("tls is for servers of your own (urls); the embedded ones listen on loopback")
        if self.embedded and self.urls:
            raise ValueError("set either urls (existing servers) or embedded (servers started "
                             "here), not both")
        if not self.embedded and not self.urls:
            raise ValueError("set urls (existing servers) or embedded: 3")
        if self.embedded not in (0, 3, 5):
            raise ValueError(f"embedded must be 3 or 5 servers (a quorum), got {self.embedded}")
        for name in ("port", "route_port", "http_port"):
            first = getattr(self, name)
            if not 0 < first < 65536 - max(self.embedded, 1):
                raise ValueError(f"{name} must leave room for {self.embedded} ports below 65536, "
                                 f"got {first}")
        if self.ping_interval_s <= 0 or self.max_outstanding_pings < 1:
            raise ValueError("ping_interval_s must be positive, max_outstanding_pings at least 1")
        for url in self.urls:
            if "://" not in url:
                raise ValueError(f"urls: {url!r} is not a URL like nats://host:4222")

    def server_urls(self) -> list[str]:
        if self.embedded:
            return [f"nats://{self.host}:{self.port + i}" for i in range(self.embedded)]
        return list(self.urls)


class Launch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a node's agent is started: over ``ssh`` with a command template, or ``managed``
    (systemd / Kubernetes start it; see config/jetzero-agent.service)."""

    method: Literal["ssh", "managed"] = "managed"
    command: str = ""  # ssh: the remote command; {roles} {connect} {creds} {node} {run} filled in
    user: str | None = None
    port: int = 22
    identity_file: str | None = None
    options: list[str] = []  # ssh: more arguments, e.g. ["-o", "UserKnownHostsFile=/etc/jz/hosts"]
    state_dir: str = "~/.jetzero"  # ssh: where the agent's pid file and log go on the node

    def __post_init__(self) -> None:
        if self.method == "ssh" and not self.command.strip():
            raise ValueError("launch.method ssh needs launch.command (the agent's command line)")
        if not 0 < self.port < 65536:
            raise ValueError(f"launch.port must be 1..65535, got {self.port}")


class Node(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One machine: its roles and how much of it they use."""

    name: str
    host: str = "127.0.0.1"
    roles: list[Role]
    selfplay_processes: int = 1
    eval_processes: int = 1
    torch_threads: int = 1
    device: str = "cpu"
    launch: Launch = Launch()

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ValueError(f"node name {self.name!r} must be letters, digits, '-' or '_'")
        if not self.roles:
            raise ValueError(f"node {self.name}: roles must name at least one of {', '.join(ROLES)}")
        if len(set(self.roles)) != len(self.roles):
            raise ValueError(f"node {self.name}: a role is listed twice")
        for field in ("selfplay_processes", "eval_processes", "torch_threads"):
            if not 0 <= getattr(self, field) <= 256:
                raise ValueError(f"node {self.name}: {field} must be 0..256")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")
                or self.device == "mps"):
            raise ValueError(f"node {self.name}: device must be cpu, cuda, cuda:N or mps, "
                             f"got {self.device!r}")


class ClusterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole of ``config/cluster.yaml``."""

    run: str = "main"
    nats: ClusterNats
    replicas: int = 3  # streams, KV buckets and object stores
    nodes: list[Node] = []
    min_version: str = "0.0.0"  # agents below it are refused at join
    max_model_lag: int = 2  # generations behind the champion before games are kept out
    lease_ttl_s: float = 10.0
    heartbeat_ttl_s: float = 15.0

    def __post_init__(self) -> None:
        if self.replicas not in (1, 3, 5):
            raise ValueError(f"replicas must be 1, 3 or 5, got {self.replicas}")
        size = self.nats.embedded or len(self.nats.urls)
        if self.nats.embedded and self.replicas > size:
            raise ValueError(f"replicas {self.replicas} exceeds the {size} embedded servers")
        if self.max_model_lag < 0:
            raise ValueError("max_model_lag must be 0 or more")
        if not 1.0 <= self.lease_ttl_s <= 3600:
            raise ValueError("lease_ttl_s must be 1..3600 seconds")
        if not 1.0 <= self.heartbeat_ttl_s <= 3600:
            raise ValueError("heartbeat_ttl_s must be 1..3600 seconds")
        version_tuple(self.min_version)
        seen = [n.name for n in self.nodes]
        if len(set(seen)) != len(seen):
            raise ValueError("two nodes share a name")

    @property
    def data_dir(self) -> Path:
        return Path(self.nats.data_dir)

    @property
    def credentials_dir(self) -> Path:
        """Where ``jetzero cluster credentials`` writes (embedded: used by the servers too)."""
        return self.data_dir / "credentials"

    def settings_for(self, role: str = "admin", credentials: str | Path | None = None) -> NatsSettings:
        """The ``NatsSettings`` a client of ``role`` uses: every server's URL, that role's
        credentials file (or ``credentials``), the cluster's replicas and ping settings."""
        from handlers.cluster.credentials import role_file  # noqa: PLC0415 - avoids a cycle

        if credentials is None:
            credentials = (self.nats.credentials if self.nats.urls and role == "admin"
                           else role_file(self.credentials_dir, role))
        return NatsSettings(
            url=",".join(self.nats.server_urls()),
            credentials=str(credentials) if credentials else None,
            replicas=self.replicas,
            heartbeat_ttl_s=self.heartbeat_ttl_s,
            lock_ttl_s=self.lease_ttl_s,
            duplicate_window_s=self.nats.duplicate_window_s,
            ping_interval_s=self.nats.ping_interval_s,
            max_outstanding_pings=self.nats.max_outstanding_pings,
            tls=self.nats.tls,
        )


def version_tuple(text: str) -> tuple[int, ...]:
    """``"1.2.3"`` → ``(1, 2, 3)``; anything else is a ``ValueError`` naming it."""
    parts = text.split(".")
    if not 1 <= len(parts) <= _VERSION_PARTS or not all(p.isdigit() for p in parts):
        raise ValueError(f"version {text!r} must be like 1.2.3")
    return tuple(int(p) for p in parts) + (0,) * (_VERSION_PARTS - len(parts))


def parse_cluster_config(data: dict, source: str = "cluster config") -> ClusterConfig:
    return convert_config(data, ClusterConfig, source)


def load_cluster_config(path: str | Path = DEFAULT_CONFIG_PATH) -> ClusterConfig:
    """Read and check ``config/cluster.yaml`` (``ConfigError`` with the field's path)."""
    data, _digest = read_document(path)
    config = parse_cluster_config(data, str(path))
    if config.nats.urls and config.nats.credentials and not Path(config.nats.credentials).exists():
        raise ConfigError(f"{path}: $.nats.credentials: {config.nats.credentials} does not exist")
    return config

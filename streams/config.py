"""Typed config: frozen msgspec Structs decoded from YAML, errors naming the field's path.

``NatsSettings`` (the loop config's ``nats:`` section, the one home of how to reach the
log) lives here because the log layer needs it; each surface defines its own Struct and
loads it with :func:`load_config` (the one loader: every config file is read through it).
Unknown keys, wrong values, empty files and files that are not a mapping are refused with
``ConfigError``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from streams.errors import ConfigError

T = TypeVar("T")


class TlsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS to servers of your own (optional; the embedded servers listen on loopback only).

    ``ca_file``: the CA that signed the servers' certificates (absent: the system's CAs).
    ``cert_file`` and ``key_file``: this client's certificate, for servers that verify clients
    (``verify: true`` in their ``tls {}`` block); both or neither.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together (both or neither)")


class NatsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the log lives.

    ``url`` set: use that server or cluster and start nothing. Unset: start the embedded
    nats-server on ``host:port`` with its store under ``data_dir``.
    """

    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 4222
    data_dir: str = "data/nats"
    # Durability: False = the server's lazy fsync (a killed process loses nothing; power
    # loss can lose recent acknowledged writes). True = fsync every write (single node that
    # must survive power loss; about 0.2x the pipelined publish rate).
    sync_always: bool = False
    duplicate_window_s: float = 120.0
    games_max_bytes: int = 2 * 1024**3
    games_max_age_s: float = 0.0  # 0 = no age limit
    replicas: int = 1
    heartbeat_ttl_s: float = 15.0
    lock_ttl_s: float = 30.0
    # Logging in to a ``url`` server: a jetzero credentials file (JSON, owner-only; see
    # streams/auth.py). The embedded server keeps its own in data_dir. Secrets stay out of the
    # config, and so out of the log that records it.
    credentials: str | None = None
    # How soon a client gives up on a silent server and moves to another (a cluster: 1 s x 2,
    # see handlers/cluster/config.py): ping every ping_interval_s, drop after this many unanswered.
    ping_interval_s: float = 10.0
    max_outstanding_pings: int = 3
    # TLS to a ``url`` server (see TlsSettings); None: plain TCP, unless the URL says tls://.
    tls: TlsSettings | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.duplicate_window_s <= 0:
            raise ValueError("duplicate_window_s must be positive")
        if self.ping_interval_s <= 0 or self.max_outstanding_pings < 1:
            raise ValueError("ping_interval_s must be positive and max_outstanding_pings at least 1")
        if self.replicas not in (1, 3, 5):
            raise ValueError("replicas must be 1, 3 or 5")

    @property
    def client_url(self) -> str:
        return self.url or f"nats://{self.host}:{self.port}"


def convert_config(data: Any, kind: type[T], source: str = "config") -> T:
    """Convert plain data into ``kind``, turning validation errors into ``ConfigError``."""
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def read_document(path: str | Path) -> tuple[dict[str, Any], str]:
    """A config file's top-level mapping and the sha256 of its bytes.

    Refused with one ``ConfigError`` line: a missing or unreadable file, one that is not
    UTF-8 text or not valid YAML, an empty one (no silent fall-back to every default), and
    one whose top level is not a mapping.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (not UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{p}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty (write the keys you mean; the shipped file shows "
                          "every key)")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, not a {type(data).__name__}")
    return data, hashlib.sha256(raw).hexdigest()


def load_config(path: str | Path, kind: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Read a YAML file into ``kind``; ``overrides`` are dotted keys (``nats.port``) set on top."""
    return load_config_with_digest(path, kind, overrides)[0]


def load_config_with_digest(
    path: str | Path, kind: type[T], overrides: dict[str, Any] | None = None
) -> tuple[T, str]:
    """:func:`load_config` and the sha256 of the file's bytes (what ``loop.started`` records)."""
    data, digest = read_document(path)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return convert_config(data, kind, str(path)), digest


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a mapping")
    node[leaf] = value

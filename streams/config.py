"""Typed config: frozen msgspec Structs decoded from YAML, errors naming the field's path.

``NatsSettings`` (the ``nats:`` section every config file shares) lives here because the
log layer needs it; each surface defines its own Struct around it and loads it with
:func:`load_config`. Unknown keys and wrong values are refused with ``ConfigError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from streams.errors import ConfigError

T = TypeVar("T")


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

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.duplicate_window_s <= 0:
            raise ValueError("duplicate_window_s must be positive")
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


def load_config(path: str | Path, kind: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Read a YAML file into ``kind``; ``overrides`` are dotted keys (``nats.port``) set on top."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return convert_config(data, kind, str(p))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a mapping")
    node[leaf] = value


def to_plain(config: Any) -> dict[str, Any]:
    """The config as plain builtins (for recording in ``loop.started``)."""
    return msgspec.to_builtins(config)

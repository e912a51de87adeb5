"""Where a stream lives on a JetStream cluster: its leader and its replicas' health.

From JetStream's stream info (``cluster``: the leader's server name, the followers with
``current`` / ``lag`` / ``offline``). Works on any server a client reaches; a single server
reports itself as leader with no replicas.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from streams.errors import StoreError


@dataclass(frozen=True)
class Replica:
    name: str
    current: bool
    offline: bool
    lag: int
    active_s: float  # seconds since the leader last heard from it

    @property
    def health(self) -> str:
        return "offline" if self.offline else ("current" if self.current else f"lag {self.lag}")


@dataclass(frozen=True)
class StreamPlacement:
    stream: str
    replicas_wanted: int
    leader: str | None
    messages: int
    last_seq: int
    followers: list[Replica] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "stream": self.stream, "replicas": self.replicas_wanted, "leader": self.leader,
            "messages": self.messages, "last_seq": self.last_seq,
            "followers": [{"name": r.name, "health": r.health, "current": r.current,
                           "offline": r.offline, "lag": r.lag, "active_s": r.active_s}
                          for r in self.followers],
        }


async def placement(js, stream: str, timeout: float = 2.0) -> StreamPlacement:
    """The leader and followers of ``stream`` (``StoreError`` if it cannot be told now)."""
    try:
        info = await asyncio.wait_for(js.stream_info(stream), timeout)
    except NotFoundError:
        raise StoreError(f"stream {stream} does not exist") from None
    except (NatsTimeout, TimeoutError, NoRespondersError, ServiceUnavailableError):
        raise StoreError(f"stream {stream}: no answer (no leader right now?)") from None
    except APIError as exc:
        raise StoreError(f"stream {stream}: {exc.description}") from None
    cluster = info.cluster
    followers = [
        Replica(r.name, bool(r.current), bool(r.offline), int(r.lag or 0), (r.active or 0) / 1e9)
        for r in (getattr(cluster, "replicas", None) or [])
    ]
    return StreamPlacement(
        stream, int(info.config.num_replicas or 1), getattr(cluster, "leader", None),
        int(info.state.messages), int(info.state.last_seq), followers,
    )

"""A real 3-server JetStream cluster for tests: the ``nats_cluster`` fixture.

API (what a test gets from ``nats_cluster``, a ``TestCluster``):

    .urls                  ["nats://127.0.0.1:P1", ...] every server's client URL
    .url                   the same, comma-joined (a NatsSettings.url)
    .settings_for(role)    NatsSettings logging in as ``role`` (admin, operator, selfplay, eval,
                           promote, train, sync, or node-<name> for nodes= given below), R3,
                           0.5 s x 2 pings. Non-admin roles may not create streams: connect with
                           ``streams.connection.connect(settings, ensure=False)``.
    .servers               the ClusterServer list (.name "n1".., .url, .pid(), .healthz())
    .cluster               the LocalCluster behind it (handlers/cluster/servers.py)
    .kill(i)               kill -9 server i            .restart(i)  start it again, wait healthy
    .freeze(i)             SIGSTOP server i            .thaw(i)     SIGCONT
    await .leader(stream)  index of the server leading ``stream`` (names.EVENTS, ...)
    await .placement(s)    streams.cluster_info.StreamPlacement (leader, followers' health)
    .credentials_dir       where the per-role credential files are

Every server runs with the per-role permissions on; the R3 streams, KV buckets and object
stores are applied (as admin) before the test starts. Extra node logins: mark the test with
``@pytest.mark.cluster_nodes({"a1": ["selfplay", "eval"]})``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from handlers.cluster import credentials
from handlers.cluster.servers import LocalCluster
from handlers.cluster.up import apply_with_retry
from streams.config import NatsSettings


@dataclass
class TestCluster:
    """Three servers with routes on loopback, temp stores, permissions on."""

    cluster: LocalCluster
    __test__ = False  # not a test class

    @property
    def urls(self) -> list[str]:
        return self.cluster.urls

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    @property
    def servers(self):
        return self.cluster.servers

    @property
    def credentials_dir(self) -> Path:
        return self.cluster.credentials_dir

    def settings_for(self, role: str = "admin", **overrides) -> NatsSettings:
        fields = dict(
            url=self.url,
            credentials=str(credentials.role_file(self.credentials_dir, role)),
            replicas=3,
            ping_interval_s=self.cluster.nats.ping_interval_s,
            max_outstanding_pings=self.cluster.nats.max_outstanding_pings,
            duplicate_window_s=self.cluster.nats.duplicate_window_s,
        )
        fields.update(overrides)
        return NatsSettings(**fields)  # type: ignore[arg-type]

    def kill(self, i: int) -> None:
        self.cluster.kill(i)

    def freeze(self, i: int) -> None:
        self.cluster.freeze(i)

    def thaw(self, i: int) -> None:
        self.cluster.thaw(i)

    def restart(self, i: int, wait: bool = True) -> None:
        self.cluster.restart(i, wait=wait)

    async def placement(self, stream: str, timeout: float = 20.0):
        """The stream's placement, retried while the cluster elects (``StoreError`` after)."""
        from streams.cluster_info import placement
        from streams.connection import connect
        from streams.errors import StoreError

        conn = await connect(self.settings_for("admin"), name="test-admin", long_lived=False,
                             ensure=False)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    found = await placement(conn.js, stream)
                    if found.leader:
                        return found
                except StoreError:
                    if time.monotonic() > deadline:
                        raise
                if time.monotonic() > deadline:
                    raise StoreError(f"stream {stream}: no leader within {timeout:.0f} s")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def leader(self, stream: str) -> int:
        """The index in ``servers`` of the server leading ``stream``."""
        return self.cluster.index_of((await self.placement(stream)).leader or "")


@pytest.fixture
async def nats_cluster(tmp_path, request):
    """Three real nats-servers (JetStream, routes, own stores, per-role users), R3 applied."""
    marker = request.node.get_closest_marker("cluster_nodes")
    cluster = LocalCluster.on_free_ports(tmp_path / "cluster")
    cluster.nodes = dict(marker.args[0]) if marker else {}
    cluster.start()
    wrapper = TestCluster(cluster)
    try:
        await apply_with_retry(wrapper.settings_for("admin"))
        yield wrapper
    finally:
        for i in range(len(cluster.servers)):
            cluster.thaw(i)
        cluster.stop(timeout=5.0)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "cluster_nodes(nodes): extra node logins for nats_cluster ({name: [roles]})"
    )

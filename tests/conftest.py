"""Shared fixtures: a real nats-server per test (free port, temporary store), and a connection.

Hypothesis runs derandomized (the same examples every run), so a suite that passed once
passes again; ``HYPOTHESIS_PROFILE=explore`` draws fresh examples to hunt for new failures.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from streams.config import NatsSettings
from streams.server import EmbeddedServer, free_port

pytest_plugins = ["tests.cluster"]  # the nats_cluster fixture (3 servers, permissions on)

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream on a free loopback port, stopped after the test."""
    settings = NatsSettings(port=free_port(), data_dir=str(tmp_path / "nats"))
    server = EmbeddedServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_settings(nats_server) -> NatsSettings:
    return nats_server.settings


@pytest.fixture
async def log(nats_settings):
    from streams.connection import connect

    conn = await connect(nats_settings, name="test")
    yield conn
    await conn.close()


@pytest.fixture
async def store(log):
    from streams.store import EventStore

    return EventStore(log)

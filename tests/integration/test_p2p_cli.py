"""``scripts/p2p_orchestrator.py --port`` as a real process (real AI workers, real nats-server):
the page is served, a human plays the AI to the end over a real WebSocket, SIGTERM stops it,
and ``jetzero p2p games`` / ``ratings`` read the result from the log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner
from websockets.asyncio.client import connect

from scripts.cli import app
from streams.server import free_port
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str):
    """``jetzero p2p ARGS`` (in a thread: the command runs its own event loop)."""
    return CliRunner().invoke(app, ["p2p", *args])


def p2p_config(tmp_path: Path, port: int) -> Path:
    data = yaml.safe_load((ROOT / "config" / "p2p.yaml").read_text())
    data["server"]["port"] = port
    path = tmp_path / "p2p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_orchestrator_serves_a_game_and_the_cli_reads_it(nats_settings, tmp_path):
    loop_path, cfg = write_tiny_loop(nats_settings, tmp_path, run="p2p1")
    port = free_port()
    env = {**os.environ, "JETZERO_P2P_SECRET": "cli-test-secret"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "p2p_orchestrator.py"), "--port", str(port),
         "--config", str(loop_path), "--p2p-config", str(p2p_config(tmp_path, port))],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        async def page() -> bytes | None:
            try:
                url = f"http://127.0.0.1:{port}/"
                with await asyncio.to_thread(urllib.request.urlopen, url, None, 2) as r:
                    html = r.status == 200 and r.headers["Content-Type"].startswith("text/html")
                    return r.read() if html else None
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                return None

        assert b"<html" in (await until(page, 60, "the page served")).lower()
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(json.dumps({"type": "hello", "v": 1, "name": "cli"}))
            welcome = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "seek", "game": "tictactoe", "opponent": "ai", "level": 1,
                                      "seat": 0}))
            over = None
            while over is None:
                message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                state = message.get("state") if message["type"] == "start" else message
                mine = message["type"] in ("start", "state") and state["to_move"] == 0
                if mine and state["status"] == "playing":
                    await ws.send(json.dumps({"type": "move", "game_id": state["game_id"],
                                              "move": state["legal"][0], "version": state["version"]}))
                elif message["type"] == "over":
                    over = message
        assert over["reason"] in ("win", "draw")
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output

    games = await asyncio.to_thread(cli, "games", "--config", str(loop_path), "--json")
    assert games.exit_code == 0, games.output
    assert json.loads(games.output) == {"live": [], "started": 1, "finished": 1}
    ratings = await asyncio.to_thread(cli, "ratings", "--config", str(loop_path), "--json")
    rows = {row["player"]: row for row in json.loads(ratings.output)}
    assert rows[welcome["player"]]["games"] == 1 and rows[welcome["player"]]["name"] == "cli"
    assert rows["ai-1"]["games"] == 1 and rows["ai-8"]["games"] == 0 and len(rows) == 9
    table = await asyncio.to_thread(cli, "ratings", "--config", str(loop_path))
    assert table.exit_code == 0 and "ai-1" in table.output

"""A node agent cut off from every server of the cluster (issue 19, item 2).

A real ``jetzero agent --roles selfplay`` process (tic-tac-toe, tiny net) plays on the
3-server cluster of ``tests.cluster``; then all three servers are frozen (SIGSTOP: they keep
their sockets and answer nothing, as when the network to them is cut) for longer than the
client's ping timeout, and thawed. Checked from the agent's own log and the event log after:

- it kept playing while cut off: games that finished during the outage (their event time is
  inside it) are in the log, stored after the servers came back;
- it reconnected by itself: the same process, one ``node.joined`` (one session), no worker
  restarted;
- nothing is stored twice: every game id once, every event id once (the stores dedupe retries by
  ``Nats-Msg-Id`` within the 120 s duplicate window; the outage is far shorter);
- it stops promptly afterwards on SIGTERM, with its ``node.left`` recorded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from streams import auth, names
from streams import events as ev
from streams.connection import connect
from streams.errors import StoreError
from streams.games import GameFinished
from streams.store import EventStore, Stored
from tests.loop_configs import start_tiny_run
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "rc"
NODE = "a1"
PING_S = 0.5  # the agent's --ping-interval: a silent server is left after 2 unanswered (~1.5 s)
OUTAGE_S = 6.0  # every server frozen this long: four ping timeouts
SHUTDOWN_BOUND_S = 15.0
MIN_GAMES_CUT_OFF = 16  # one batch of games in flight: play went on past the cut, not just ended
ROOT = Path(__file__).resolve().parents[2]


class AgentProcess:
    """``jetzero agent`` as its own process, its log in a file."""

    def __init__(self, cluster, log_path: Path):
        self.log_path = log_path
        creds = auth.client_file(cluster.settings_for(f"node-{NODE}"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", "agent", "--roles", "selfplay", "--connect",
             cluster.url, "--creds", str(creds), "--run", RUN, "--name", NODE,
             "--ping-interval", str(PING_S)],
            cwd=ROOT, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def says(self, words: str, after: int = 0) -> bool:
        return words in self.text()[after:]

    async def stop(self) -> float:
        """SIGTERM; seconds until the process exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None:
            if time.monotonic() - started > 60:
                self.proc.kill()
                break
            await asyncio.sleep(0.05)  # polling the process's exit, not synchronising on time
        return time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def everything(store: EventStore, stream: str) -> list[Stored]:
    return [s async for s in store.read(stream, subject_filter=names.run_filter(stream, RUN))]


async def games(store: EventStore) -> list[tuple[Stored, GameFinished]]:
    return [(s, s.event) for s in await everything(store, names.GAMES) if isinstance(s.event, GameFinished)]


@pytest.mark.cluster_nodes({NODE: ["selfplay"]})
async def test_agent_cut_off_from_every_server_keeps_playing_reconnects_and_publishes_nothing_twice(
        nats_cluster, tmp_path):
    admin = await connect(nats_cluster.settings_for("admin"), name="test-admin", ensure=False)
    store = EventStore(admin)
    await start_tiny_run(store, nats_cluster.settings_for("admin"), tmp_path, RUN)
    agent = AgentProcess(nats_cluster, tmp_path / "agent.log")
    try:
        await until(lambda: _games_at_least(store, 20), 60, "the agent's first games")
        await admin.close()  # the test's own client would only be cut off as well

        mark = len(agent.text())
        cut = time.time()
        for i in range(3):
            nats_cluster.freeze(i)
        await until(lambda: agent.says("disconnected", mark), 10, "the agent noticing the outage")
        noticed = time.time() - cut
        # The outage itself is what is under test: held for a measured OUTAGE_S, not a guess.
        await asyncio.sleep(max(0.0, cut + OUTAGE_S - time.time()))
        back = time.time()
        for i in range(3):
            nats_cluster.thaw(i)
        await until(lambda: agent.says("reconnected", mark), 30, "the agent reconnecting")
        reconnected = time.time() - back

        admin = await connect(nats_cluster.settings_for("admin"), name="test-admin", ensure=False)
        store = EventStore(admin)
        await until(lambda: _played_between(store, back + 1.0, time.time() + 3600), 40,
                    "games played after the outage stored")
        took = await agent.stop()
        assert agent.proc.returncode == 0, agent.text()[-3000:]
        assert took < SHUTDOWN_BOUND_S, agent.text()[-3000:]

        # reconnected by itself: one join (one session), one leaving
        events = [s.event for s in await _everything_now(store, names.EVENTS)]
        joined = [e for e in events if isinstance(e, ev.NodeJoined)]
        assert [(j.node, j.session) for j in joined] == [(NODE, joined[0].session)]
        assert [(e.node, e.causation_id) for e in events if isinstance(e, ev.NodeLeft)] == [
            (NODE, joined[0].id)]

        # nothing twice: every game id once, every event id once
        played = await games(store)
        assert max(Counter(g.game_id for _, g in played).values()) == 1
        stored = await everything(store, names.GAMES) + await everything(store, names.EVENTS)
        ids = Counter(getattr(s.event, "id", "") for s in stored)
        assert max(ids.values()) == 1, ids.most_common(3)

        # kept playing while cut off: games finished after it knew it was cut off, before the
        # servers came back, stored once they were back
        during = [(s, g) for s, g in played if cut + noticed <= g.time <= back]
        print(f"noticed {noticed:.2f} s, outage {back - cut:.2f} s, reconnected {reconnected:.2f} s "
              f"after the thaw, {len(during)} games played while cut off (of {len(played)}), "
              f"shutdown {took:.2f} s")
        assert "restarting" not in agent.text(), agent.text()[-3000:]  # no worker was restarted
        assert len(during) >= MIN_GAMES_CUT_OFF, f"{len(during)} games finished while cut off"
        assert all(s.time >= back for s, _ in during)
    finally:
        agent.kill()
        print(agent.text()[-12000:])  # shown by pytest when the test fails
        await admin.close()


async def _games_at_least(store: EventStore, n: int) -> bool:
    return len(await games(store)) >= n


async def _played_between(store: EventStore, start: float, end: float):
    try:
        played = await games(store)
    except StoreError:  # the cluster electing its leaders after the thaw
        return None  # (a read's nats timeout is not translated by the store: see the notes)
    found = [(s, g) for s, g in played if start <= g.time <= end]
    return found or None


async def _everything_now(store: EventStore, stream: str) -> list[Stored]:
    return await until(lambda: _read_or_none(store, stream), 20, f"{stream} readable")


async def _read_or_none(store: EventStore, stream: str) -> list[Stored] | None:
    try:
        return await everything(store, stream)
    except StoreError:
        return None

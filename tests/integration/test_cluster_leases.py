"""Singleton roles under fenced leases on a real 3-server cluster (permissions on, as ``train``).

Two holder processes (``tests/lease_holder.py``) compete for the ``trainer`` role; the locks
bucket's TTL is set to ``TTL`` seconds for the test (as ``lease_ttl_s`` would). Everything is
checked from the log: ``role.taken``, the fenced ``training.started`` and ``role.fence_refused``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handlers.cluster.agent import AgentOptions, run_agent
from handlers.cluster.leases import current_fence, held_roles
from handlers.loop.config import load_in_force
from streams import events as ev
from streams import names
from streams.cluster_events import FenceRefused, RoleTaken
from streams.connection import connect
from streams.store import EventStore, Stored
from tests.loop_configs import write_tiny_loop
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "leases"
ROLE = "trainer"
TTL = 3.0
RETRY = TTL / 10  # hold_role's default retry of a held lease
# Takeover after a kill: the key expires TTL after the last renewal (at most TTL after the
# kill), the server's expiry timer fires (measured well under 1 s here), then the waiter's next
# retry (RETRY) takes it and appends role.taken (tens of ms on loopback R3). Margin: RETRY + 1 s.
MARGIN = RETRY + 1.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def admin(nats_cluster):
    """An admin store; the locks bucket's TTL set to ``TTL`` (what ``lease_ttl_s`` configures)."""
    conn = await connect(nats_cluster.settings_for("admin"), name="test-leases", long_lived=False,
                         ensure=False)
    info = await conn.js.stream_info(f"KV_{names.KV_LOCKS}")
    await conn.js.update_stream(dataclasses.replace(info.config, max_age=TTL,
                                                    duplicate_window=TTL))
    try:
        yield EventStore(conn)
    finally:
        await conn.close()


class Holder:
    def __init__(self, nats_cluster, tmp_path: Path, node: str):
        self.out = tmp_path / f"holder-{node}.out"
        self.node = node
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lease_holder", "--url", nats_cluster.url, "--creds",
             str(nats_cluster.settings_for("train").credentials), "--run", RUN, "--role", ROLE,
             "--node", node],
            cwd=ROOT, stdout=self.out.open("w"), stderr=subprocess.STDOUT)

    async def waiting(self) -> bool:
        """It found the role held and waits for it (its log line)."""
        return "is held" in self.out.read_text()

    async def ended(self) -> bool:
        return self.proc.poll() is not None

    def facts(self) -> list[dict]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def holders(nats_cluster, tmp_path):
    made: list[Holder] = []

    def start(node: str) -> Holder:
        made.append(Holder(nats_cluster, tmp_path, node))
        return made[-1]

    yield start
    for holder in made:
        holder.stop()


async def _log(store: EventStore) -> list[Stored]:
    return [s async for s in store.read(names.EVENTS, subject_filter=names.run_filter(names.EVENTS, RUN))]


async def _taken_by(store: EventStore, node: str) -> Stored | None:
    return next((s for s in await _log(store)
                 if isinstance(s.event, RoleTaken) and s.event.node == node), None)


async def _writes(store: EventStore, fence: int, after: int = 0) -> list[Stored]:
    return [s for s in await _log(store) if isinstance(s.event, ev.TrainingStarted)
            and s.event.fence == fence and s.seq > after]


async def test_paused_holder_woken_after_takeover_cannot_write(admin, holders):
    a = holders("a")
    taken_a = await until(lambda: _taken_by(admin, "a"), 30, "a takes the role")
    fence_a = taken_a.event.fence
    await until(lambda: _writes(admin, fence_a), 10, "a writes under its fence")
    b = holders("b")
    await until(b.waiting, 15, "b waits for the role")
    os.kill(a.proc.pid, signal.SIGSTOP)  # a is paused: it still believes it holds the role
    taken_b = await until(lambda: _taken_by(admin, "b"), TTL + MARGIN + 5, "b takes over")
    fence_b = taken_b.event.fence
    assert fence_b > fence_a and taken_b.event.previous_owner == taken_a.event.owner
    assert await current_fence(admin, RUN, ROLE) == fence_b
    await until(lambda: _writes(admin, fence_b), 10, "b writes under its fence")

    os.kill(a.proc.pid, signal.SIGCONT)  # a wakes and writes at once, under its stale fence
    refusal = await until(lambda: _async_find(admin, FenceRefused), 15, "a's write refused")
    assert (refusal.event.fence, refusal.event.current_fence) == (fence_a, fence_b)
    assert refusal.event.owner == taken_a.event.owner and refusal.event.refused_tag == "training.started"
    await until(a.ended, 15, "a ends its holding")
    assert a.proc.returncode == 0, a.out.read_text()
    assert any(f.get("refused") == fence_a for f in a.facts())
    # nothing of a's landed after b took the role; b's writes go on after a's refusal
    assert await _writes(admin, fence_a, after=taken_b.seq) == []
    await until(lambda: _writes(admin, fence_b, after=refusal.seq), 10, "b writes on")
    b.stop()
    assert b.proc.returncode == 0
    assert not await _lock_held(admin)  # b released it on SIGTERM: free at once, no TTL to wait


async def test_killed_holder_is_taken_over_within_the_ttl(admin, holders):
    a = holders("a")
    taken_a = await until(lambda: _taken_by(admin, "a"), 30, "a takes the role")
    await until(lambda: _writes(admin, taken_a.event.fence), 10, "a writes")
    b = holders("b")
    await until(b.waiting, 15, "b waits for the role")
    killed_at = time.time()
    os.kill(a.proc.pid, signal.SIGKILL)
    taken_b = await until(lambda: _taken_by(admin, "b"), TTL + MARGIN + 5, "b takes over")
    takeover = taken_b.time - killed_at
    print(f"takeover after kill -9: {takeover:.2f} s (TTL {TTL:.1f} s, margin {MARGIN:.1f} s)")
    # a renewed at most TTL/3 before the kill, so its key outlived it by at least 2/3 TTL
    assert TTL * 2 / 3 - 0.2 <= takeover < TTL + MARGIN
    assert taken_b.event.fence > taken_a.event.fence
    await until(lambda: _writes(admin, taken_b.event.fence), 10, "b writes under the new fence")


async def _leases_match_takings(store: EventStore, node: str, takings: list[RoleTaken]) -> None:
    """What ``cluster status`` shows of the leases: both roles held by ``node``, each with the
    fence of its last ``role.taken`` and that holder's owner name."""
    held = {h.role: h for h in await held_roles(store, RUN)}
    assert set(held) == {"promoter", "evaluator"}, held
    for role, h in held.items():
        last = [t for t in takings if t.role == role][-1]
        assert (h.node, h.owner, h.fence) == (node, last.owner, last.fence), (h, last)


async def _async_find(store: EventStore, kind):
    return next((s for s in await _log(store) if isinstance(s.event, kind)), None)


async def _lock_held(store: EventStore) -> bool:
    from streams.kv import get_value

    return await get_value(store.log, names.KV_LOCKS, names.lock_key(RUN, ROLE)) is not None


@pytest.mark.cluster_nodes({"p1": ["promote"], "p2": ["promote"]})
async def test_agents_run_the_promote_singletons_on_one_node_at_a_time(admin, nats_cluster, tmp_path):
    """Two agents with the promote role: the promoter and the evaluator run on one of them;
    when it stops (releasing its leases), the other takes both over at once."""
    path, _ = write_tiny_loop(nats_cluster.settings_for("admin"), tmp_path, RUN)
    await admin.append(ev.LoopStarted.new(RUN, by="test", **load_in_force(path).started_fields()))
    stops = {name: asyncio.Event() for name in ("p1", "p2")}
    tasks = {name: asyncio.create_task(run_agent(nats_cluster.settings_for(f"node-{name}"), RUN,
                                                 AgentOptions(name=name, roles=("promote",)),
                                                 stop=stops[name]))
             for name in ("p1",)}

    async def takings() -> list[RoleTaken]:
        return [s.event for s in await _log(admin) if isinstance(s.event, RoleTaken)]

    async def held_by(node: str) -> bool:
        return {t.role for t in await takings() if t.node == node} == {"promoter", "evaluator"}

    try:
        await until(lambda: held_by("p1"), 30, "p1 runs the promoter and the evaluator")
        await _leases_match_takings(admin, "p1", await takings())
        tasks["p2"] = asyncio.create_task(run_agent(
            nats_cluster.settings_for("node-p2"), RUN, AgentOptions(name="p2", roles=("promote",)),
            stop=stops["p2"]))
        stops["p1"].set()
        await asyncio.wait_for(tasks["p1"], 30)
        await until(lambda: held_by("p2"), TTL, "p2 takes both roles over (released: no TTL wait)")
        seen = await takings()
        await _leases_match_takings(admin, "p2", seen)
        for role in ("promoter", "evaluator"):
            order = [(t.node, t.fence) for t in seen if t.role == role]
            assert [n for n, _ in order] == ["p1", "p2"] and order[0][1] < order[1][1], order
    finally:
        for name, task in tasks.items():
            stops[name].set()
            await asyncio.wait_for(task, 30)

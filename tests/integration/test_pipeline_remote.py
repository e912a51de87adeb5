"""The non-regression match over WORK, on a real nats-server with a real node agent
(``run_agent``, role ``eval``) in this process, tic-tac-toe and tiny nets:

- a unit played by one player that gives it back unacknowledged (as one killed after reporting
  its pairs would) is redelivered to the agent, played again, and every pair is stored once;
- a validation finds the agent, ships both code versions and models through the object store,
  and has every pair played by the agent (the events and the result say so), with the verdict,
  the pair count and the pentanomial counts of the same validation played here with the same
  seed (the engines are deterministic: no root noise, ties broken by seed and position);
- the units of a decided match are not played;
- units nobody plays within the timeout are played here, each pair counted once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import msgspec
import pytest

from engine.checkpoint import make_meta, save_checkpoint_file
from engine.games import get_game
from engine.network import NetworkConfig, build_network
from handlers.cluster.agent import AgentOptions, run_agent
from handlers.pipeline.bundle import pack_tree
from handlers.pipeline.config import (
    MatchGate,
    PipelineConfig,
    QualityGate,
    SpeedGate,
    StrengthGate,
    WorkSettings,
)
from handlers.pipeline.remote import WorkMatch, live_players
from handlers.pipeline.validate import Hooks, ValidationRequest, validate
from handlers.pipeline.work_player import PLAYER, PipelinePlayer, pipeline_work_consumer
from streams import names
from streams.kv import Heartbeat, alive_nodes, beat
from streams.objects import put_object
from streams.pipeline_events import (
    CodeVersion,
    PipelineMatchDecided,
    PipelineMatchUnit,
    PipelinePairPlayed,
    UnitPair,
)
from streams.store import EventStore
from tests.loop_configs import start_tiny_run
from tests.pipeline_support import clone, make_repo
from tests.waiting import until

pytestmark = pytest.mark.integration

RUN = "pr"
TTT = get_game("tictactoe")
NET = NetworkConfig(blocks=1, channels=8, policy_channels=2, value_channels=2, value_hidden=8)
AGENT = "a1"
AGENT_PLAYER = f"{AGENT}-pipeline"


def model(path: Path, seed: int) -> Path:
    net = build_network(TTT, NET, seed=seed)
    save_checkpoint_file(path, net, make_meta(net, game=TTT, created=0.0))
    return path


def match_only(max_pairs: int) -> PipelineConfig:
    return PipelineConfig(quality=QualityGate(enabled=False), strength=StrengthGate(enabled=False),
                          speed=SpeedGate(enabled=False),
                          match=MatchGate(simulations=4, max_pairs=max_pairs, pairs_in_flight=4,
                                          work=WorkSettings(pairs_per_unit=2, unit_timeout_s=60)))


async def pairs_of(store: EventStore, validation_id: str) -> list[PipelinePairPlayed]:
    subjects = names.aggregate_filter(names.EVENTS, RUN, names.pipeline_validation_aggregate(validation_id))
    return [s.event async for s in store.read(names.EVENTS, subject_filter=subjects)
            if isinstance(s.event, PipelinePairPlayed)]


async def player_beat(store: EventStore) -> dict[str, float]:
    beats = {b.node: b for b in await alive_nodes(store.log, RUN)}
    return dict(beats[AGENT_PLAYER].detail) if AGENT_PLAYER in beats else {}


async def ship(store: EventStore, label: str, root: Path, model_path: Path) -> CodeVersion:
    code, code_digest = pack_tree(root)
    data = model_path.read_bytes()
    model_digest = hashlib.sha256(data).hexdigest()
    code_object = names.pipeline_code_object(code_digest)
    model_object = names.pipeline_model_object(model_digest)
    await put_object(store.log, names.OBJ_MODELS, code_object, code)
    await put_object(store.log, names.OBJ_MODELS, model_object, data)
    return CodeVersion(label=label, code_object=code_object, code_digest=code_digest,
                       model_object=model_object, model_digest=model_digest)


async def join_prerequisites(store: EventStore, nats_settings, tmp_path: Path) -> None:
    """What an agent waits for before it works: the config in force and a champion."""
    await start_tiny_run(store, nats_settings.client_url, tmp_path, RUN)


async def test_a_validation_plays_its_match_over_work_as_it_would_here(nats_settings, store, tmp_path):
    pr = clone(make_repo(tmp_path / "seed"), tmp_path / "pr")
    baseline, candidate = model(tmp_path / "baseline.pt", 1), model(tmp_path / "candidate.pt", 2)
    await join_prerequisites(store, nats_settings, tmp_path)

    # a unit reported by a first player that gives it back (killed before its ack) ...
    unit = PipelineMatchUnit.new(
        RUN, validation_id="redelivered", unit_id=0, game="tictactoe",
        candidate=await ship(store, "candidate", pr, candidate), base=await ship(store, "base", pr, baseline),
        simulations=4, pairs=[UnitPair(pair_index=i, opening=[i], flip=bool(i % 2)) for i in range(2)])
    await store.append(unit)
    consumer = pipeline_work_consumer(store.log, RUN)
    await consumer.open(ack_wait=60)
    (delivery,) = await consumer.fetch(1, timeout=5)
    first = PipelinePlayer(store, RUN, stop=asyncio.Event(), cache=tmp_path / "cache-first", node="first")
    await first.play(unit)
    await first.close_engines()  # they go with its process
    await delivery.nak()
    await consumer.close()
    first_pairs = await pairs_of(store, "redelivered")
    assert sorted(p.pair_index for p in first_pairs) == [0, 1]
    assert {p.worker for p in first_pairs} == {"first"}

    # ... goes to the agent, which plays it again: every pair is still stored once
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(nats_settings, RUN, AgentOptions(name=AGENT, roles=("eval",),
                                                                           beat_s=0.3), stop=stop))
    try:
        beat = await until(lambda: _redelivered(store), 90, "the agent to play the redelivered unit")
        assert beat["units_redelivered"] == 1.0 and beat["pairs_played"] == 2.0
        again = await pairs_of(store, "redelivered")
        assert [(p.pair_index, p.worker) for p in again] == [(p.pair_index, p.worker) for p in first_pairs]
        assert await live_players(store, RUN) == [AGENT_PLAYER]

        # a validation: over WORK (the agent), then here, same seed
        def request() -> ValidationRequest:
            return ValidationRequest(repo=str(pr), config=match_only(max_pairs=10), game="tictactoe",
                                     base_ref="main", candidate_model=str(candidate),
                                     baseline_model=str(baseline), run=RUN)

        notes: list[str] = []
        start = time.perf_counter()
        remote = await asyncio.to_thread(validate, request(), Hooks(
            note=notes.append, work=WorkMatch(nats_settings, RUN, note=notes.append)))
        remote_s = time.perf_counter() - start
        start = time.perf_counter()
        local = await asyncio.to_thread(validate, request(), Hooks())
        local_s = time.perf_counter() - start
        print(f"validation over WORK {remote_s:.1f} s, here {local_s:.1f} s")  # the notes' figures

        assert remote.exit_code == local.exit_code != 2, (remote.reason, local.reason, notes)
        assert remote.match is not None and local.match is not None
        assert (remote.match.verdict, remote.match.pairs, remote.match.pentanomial) == \
               (local.match.verdict, local.match.pairs, local.match.pentanomial)
        assert remote.played_by == {AGENT_PLAYER: remote.match.pairs}
        assert next(iter(local.played_by)).startswith("local:")
        (gate,) = remote.gates
        assert gate.figures["pairs_remote"] == remote.match.pairs and gate.figures["pairs_local"] == 0
        assert f"pairs by {AGENT_PLAYER} {remote.match.pairs}" in gate.message

        played = await pairs_of(store, remote.validation_id)
        indices = [p.pair_index for p in played]
        assert len(indices) == len(set(indices)) and set(range(remote.match.pairs)) <= set(indices)
        assert {p.worker for p in played} == {AGENT_PLAYER}
        decided = [s.event async for s in store.read(names.EVENTS, subject_filter=names.aggregate_filter(
            names.EVENTS, RUN, names.pipeline_validation_aggregate(remote.validation_id)))
            if isinstance(s.event, PipelineMatchDecided)]
        assert [d.pairs for d in decided] == [remote.match.pairs]
        # units handed out but not needed once decided are skipped, not played
        await until(lambda: _work_drained(store), 30, "the agent to settle the leftover units")
        assert len(await pairs_of(store, remote.validation_id)) == len(played)
    finally:
        stop.set()
        await asyncio.wait_for(agent, 40)


async def _redelivered(store: EventStore) -> dict[str, float] | None:
    beat = await player_beat(store)
    return beat if beat.get("units_redelivered", 0.0) >= 1.0 and beat.get("busy") == 0.0 else None


async def _work_drained(store: EventStore) -> bool:
    drained = await pipeline_work_consumer(store.log, RUN).lag() == 0
    return drained and (await player_beat(store)).get("busy") == 0.0



async def test_units_nobody_plays_in_time_are_played_here_and_counted_once(nats_settings, store, tmp_path):
    """A player that beats but takes nothing (an agent of a build without pipeline units, say):
    every unit times out and is played here, with the verdict of a match played here."""
    pr = clone(make_repo(tmp_path / "seed"), tmp_path / "pr")
    baseline, candidate = model(tmp_path / "baseline.pt", 1), model(tmp_path / "candidate.pt", 2)
    await beat(store.log, RUN, Heartbeat(node="silent-pipeline", host="", roles=[PLAYER]))
    config = match_only(max_pairs=8)
    config = msgspec.structs.replace(config, match=msgspec.structs.replace(
        config.match, work=WorkSettings(pairs_per_unit=2, unit_timeout_s=1.0)))
    request = ValidationRequest(repo=str(pr), config=config, game="tictactoe", base_ref="main",
                                candidate_model=str(candidate), baseline_model=str(baseline), run=RUN)
    remote = await asyncio.to_thread(validate, request, Hooks(work=WorkMatch(nats_settings, RUN)))
    local = await asyncio.to_thread(validate, request, Hooks())
    assert remote.match is not None and local.match is not None, (remote.reason, local.reason)
    assert (remote.match.verdict, remote.match.pairs, remote.match.pentanomial) == \
           (local.match.verdict, local.match.pairs, local.match.pentanomial)
    (here,) = remote.played_by
    assert here.startswith("local:") and remote.played_by[here] == remote.match.pairs
    assert remote.gates[0].figures["units_here"] >= 1 and remote.gates[0].figures["pairs_remote"] == 0
    played = await pairs_of(store, remote.validation_id)
    assert len({p.pair_index for p in played}) == len(played)  # each pair stored once

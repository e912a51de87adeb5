"""``jetzero promotion`` and ``scripts/model_promotion_manager.py`` against a real server, on a
tic-tac-toe run with a tiny net: candidates refused with a reason (exit 2, nothing recorded),
judged in-process to a verdict (exit 0 promoted, 1 rejected), rollback to a chosen promotion,
the history that shows it, and the daemon judging a checkpoint as it is saved.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from engine.checkpoint import make_meta, save_checkpoint, save_checkpoint_file
from engine.games import get_game
from engine.network import DEFAULT_TICTACTOE_NETWORK, NetworkConfig, build_network, set_torch_threads
from handlers.loop.config import load_loop_config
from handlers.promotion.config import load_promotion_config
from handlers.promotion.daemon import run_daemon
from projections.models import ModelRegistryProjection
from projections.runner import state_as_of
from scripts.common import run_async
from scripts.promotion_cli import app
from streams import events as ev
from streams import names
from streams.connection import connect
from streams.objects import put_object
from streams.store import EventStore
from tests.loop_configs import nats_section

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUN = "cli"
TTT = get_game("tictactoe")
PERMISSIVE = """\
simulations: 4
sprt: {elo0: -600.0, elo1: -500.0}   # any candidate not hopelessly worse is accepted quickly
elo_threshold: -1000.0
max_pairs: 30
pairs_per_unit: 2
regression: {previous_champions: 0, reference_players: [], max_pairs: 4}
watch: {enabled: false}
"""


@pytest.fixture
def config(tmp_path, nats_settings) -> Path:
    promotion = tmp_path / "promotion.yaml"
    promotion.write_text(PERMISSIVE)
    path = tmp_path / "loop.yaml"
    path.write_text(
        f"run: {RUN}\ngame: {{name: tictactoe}}\nnats: {json.dumps(nats_section(nats_settings))}\n"
        f"network: {msgspec.json.encode(DEFAULT_TICTACTOE_NETWORK).decode()}\n"
        f"promotion_config: {promotion}\nevaluation: {{torch_threads: 1}}\n"
    )
    return path


def in_log(settings, work):
    """Run ``work(store)`` against the test server (these tests are sync: the CLI runs its own loop)."""

    async def main():
        conn = await connect(settings, name="test", long_lived=False)
        try:
            return await work(EventStore(conn))
        finally:
            await conn.close()

    return run_async(main)


async def add_model(store: EventStore, model_id: str, generation: int, *, seed: int, source: str) -> None:
    """A tiny tic-tac-toe net stored in OBJ_MODELS and recorded as ``checkpoint.saved``."""
    net = build_network(TTT, DEFAULT_TICTACTOE_NETWORK, seed=seed)
    data = save_checkpoint(net, make_meta(net, game=TTT, model_id=model_id, generation=generation))
    name = names.model_object(model_id)
    digest = await put_object(store.log, names.OBJ_MODELS, name, data)
    await store.append(ev.CheckpointSaved.new(
        RUN, model_id=model_id, object_name=name, digest=digest, generation=generation, game="tictactoe",
        source=source,
    ))


def seed_run(settings) -> None:
    """Generation 0 of the run: a stored tiny net recorded as the first checkpoint (the champion)."""
    in_log(settings, lambda store: add_model(store, f"{RUN}-gen0", 0, seed=0, source="initial"))


def candidate_file(path: Path, model_id: str, *, game: str = "tictactoe",
                   arch: NetworkConfig = DEFAULT_TICTACTOE_NETWORK, seed: int = 1) -> Path:
    g = get_game(game)
    net = build_network(g, arch, seed=seed)
    save_checkpoint_file(path, net, make_meta(net, game=g, model_id=model_id))
    return path


def all_events(settings) -> list:
    async def work(store: EventStore):
        return [s.event async for s in store.read(names.EVENTS)]

    return in_log(settings, work)


def registry(settings):
    async def work(store: EventStore):
        return (await state_as_of(store, ModelRegistryProjection(), RUN))[0]

    return in_log(settings, work)


def jetzero(*args: str | Path | int):
    result = CliRunner().invoke(app, [str(a) for a in args])
    print(result.output)  # shown when a test fails
    return result


def refused_files(tmp_path: Path) -> list[tuple[Path, str]]:
    """Checkpoint files every importer refuses, each with the reason it must give."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    connect4 = candidate_file(tmp_path / "c4.pt", "c4-model", game="connect4",
                              arch=NetworkConfig(blocks=1, channels=8, value_hidden=8))
    wider = candidate_file(tmp_path / "wide.pt", "wide-model",
                           arch=NetworkConfig(blocks=2, channels=8, value_hidden=8))
    return [
        (corrupt, "refused: checkpoint is corrupt or not a checkpoint"),
        (connect4, "refused: checkpoint c4-model is for connect4, not tictactoe"),
        (wider, "refused: checkpoint wide-model has architecture"),
    ]


def test_refused_candidates_exit_2_with_the_reason_and_record_nothing(tmp_path, config, nats_settings):
    seed_run(nats_settings)
    before = all_events(nats_settings)
    cases = [*refused_files(tmp_path), (tmp_path / "missing.pt", "cannot read model file")]
    for path, reason in cases:
        result = jetzero("candidate", path, "--config", config, "--play", "local")
        assert result.exit_code == 2, (path, result.output)
        assert reason in result.output and "Traceback" not in result.output
    after = all_events(nats_settings)
    assert len(after) == len(before)  # nothing recorded: no checkpoint, no decision
    assert registry(nats_settings).champion.model_id == f"{RUN}-gen0"


def test_a_valid_candidate_is_judged_in_process_and_promoted_with_exit_0(tmp_path, config, nats_settings):
    seed_run(nats_settings)
    path = candidate_file(tmp_path / "new_model.pt", "cand-1")
    result = jetzero("candidate", path, "--config", config, "--play", "local", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "imported cand-1" in result.output and "playing the matches in this process" in result.output
    assert "gate" in result.output and "→ accept" in result.output  # progress, then the decision
    assert "PROMOTED cand-1 (candidate.promoted #" in result.output
    events = all_events(nats_settings)
    [saved] = [e for e in events if isinstance(e, ev.CheckpointSaved) and e.source == "import"]
    assert saved.model_id == "cand-1" and saved.generation == 1 and len(saved.digest) == 64
    pairs = [e for e in events if isinstance(e, ev.MatchPairPlayed)]
    [completed] = [e for e in events if isinstance(e, ev.MatchCompleted)]
    assert completed.verdict == "accept" and completed.pairs <= len(pairs)
    assert len({p.pair_index for p in pairs}) == len(pairs)  # every pair played once
    assert all(len(p.games) == 2 and p.worker.startswith("promotion-manager") for p in pairs)
    state = registry(nats_settings)
    assert state.champion.model_id == "cand-1" and state.champion.generation == 1
    again = jetzero("candidate", path, "--config", config, "--play", "local")  # the same file
    assert again.exit_code == 0 and "already in run" in again.output and "PROMOTED cand-1" in again.output
    assert len([e for e in all_events(nats_settings) if isinstance(e, ev.CandidatePromoted)]) == 1


def test_the_script_rejects_a_candidate_below_the_threshold_with_exit_1(tmp_path, config, nats_settings):
    seed_run(nats_settings)
    path = candidate_file(tmp_path / "weak.pt", "cand-2", seed=2)
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "model_promotion_manager.py"), "--candidate", str(path),
         "--config", str(config), "--play", "local", "--elo-threshold", "5000", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "REJECTED cand-2" in out.stdout and "elo_threshold" in out.stdout
    [rejected] = [e for e in all_events(nats_settings) if isinstance(e, ev.CandidateRejected)]
    assert rejected.model_id == "cand-2"
    gates = {g.gate: g for g in rejected.gates}
    assert gates["sprt"].passed and not gates["elo_threshold"].passed
    assert gates["elo_threshold"].figures["threshold"] == 5000.0
    assert registry(nats_settings).champion.model_id == f"{RUN}-gen0"


def test_rollback_to_a_promotion_makes_its_model_the_champion(config, nats_settings):
    async def line(store: EventStore) -> list[int]:
        seqs = [await store.append(ev.CheckpointSaved.new(
            RUN, model_id=m, object_name=m, digest=m, generation=g)) for g, m in enumerate("oab")]
        for previous, model in (("o", "a"), ("a", "b")):
            seqs.append(await store.append(
                ev.CandidatePromoted.new(RUN, model_id=model, previous_champion=previous)))
        return seqs

    seqs = in_log(nats_settings, line)
    promoted_a = seqs[3]
    result = jetzero("rollback", "--config", config, "--to", promoted_a, "--reason", "b plays badly")
    assert result.exit_code == 0, result.output
    assert f"to promotion #{promoted_a}: the champion is a; reverted b" in result.output
    state = registry(nats_settings)
    assert state.champion.model_id == "a" and state.reverted_models == {"b"}
    assert state.rollbacks[-1].reason == "b plays badly" and not state.rollbacks[-1].automatic
    refused = jetzero("rollback", "--config", config, "--to", seqs[4])  # b's promotion, reverted now
    assert refused.exit_code == 2 and "not effective" in refused.output
    history = jetzero("history", "--config", config)
    assert history.exit_code == 0, history.output
    assert "champion: a" in history.output and "rolled back" in history.output
    assert "(reverted)" in history.output and "b plays badly" in history.output
    ratings = jetzero("ratings", "--config", config)
    assert ratings.exit_code == 0 and "no completed matches" in ratings.output


def test_by_hand_promote_and_rollback_are_commands_the_controller_decides_with_no_loop_running(
    config, nats_settings
):
    async def models(store: EventStore) -> None:
        for g, m in enumerate(("o", "a")):
            await store.append(ev.CheckpointSaved.new(RUN, model_id=m, object_name=m, digest=m, generation=g))

    in_log(nats_settings, models)
    promoted = jetzero("promote", "a", "--config", config, "--reason", "looks good")
    assert promoted.exit_code == 0 and "promoted a by hand" in promoted.output, promoted.output
    again = jetzero("promote", "a", "--config", config)
    assert again.exit_code == 2 and "already promoted" in again.output
    script = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "model_promotion_manager.py"), "--rollback", "--model", "o",
         "--config", str(config), "--reason", "a regressed"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert script.returncode == 0 and "the champion is o; reverted a" in script.stdout, script.stderr
    nothing_left = jetzero("rollback", "--config", config)
    assert nothing_left.exit_code == 2 and "no earlier promotion" in nothing_left.output
    log = all_events(nats_settings)
    outcomes = [(e.command, type(e).__name__) for e in log
                if isinstance(e, ev.CommandAccepted | ev.CommandRejected)]
    assert outcomes == [("promote", "CommandAccepted"), ("promote", "CommandRejected"),
                        ("rollback", "CommandAccepted"), ("rollback", "CommandRejected")]
    [rollback] = [e for e in log if isinstance(e, ev.ChampionRolledBack)]
    accepted = [e for e in log if isinstance(e, ev.CommandAccepted)]
    assert rollback.causation_id == accepted[1].command_id and rollback.reason == "a regressed"
    assert registry(nats_settings).champion.model_id == "o"


async def test_the_daemon_judges_each_new_checkpoint_as_it_is_saved(store, config):
    loop_config = load_loop_config(config)
    promotion = load_promotion_config(loop_config.promotion_config)
    set_torch_threads(1)
    await add_model(store, f"{RUN}-gen0", 0, seed=0, source="initial")
    stop, decided = asyncio.Event(), asyncio.Event()
    decisions: list = []

    def on_decision(entry) -> None:
        decisions.append(entry)
        decided.set()

    daemon = asyncio.create_task(run_daemon(loop_config, promotion, stop, play="local",
                                            on_decision=on_decision))
    try:
        await add_model(store, "trained-1", 1, seed=3, source="trainer")  # what the trainer does
        await asyncio.wait_for(decided.wait(), 60)
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 30)
    [entry] = decisions  # the initial champion predates the daemon: not reported again
    assert entry.model_id == "trained-1" and entry.kind in ("promoted", "rejected")
    assert entry.figures["pairs"] >= 1 and "sprt" in entry.detail
    state = (await state_as_of(store, ModelRegistryProjection(), RUN))[0]
    assert state.is_decided("trained-1")

"""One source per figure: ``--status`` and the metrics endpoint report the same figures from one
log, and ``jetzero events replay --projection curriculum`` the stage of the configured stages."""

from __future__ import annotations

import json

import pytest

from handlers.loop.config import HealthSection, LoopConfig, MetricsSection
from handlers.loop.status import collect_status, format_status
from streams import events as ev
from streams import names
from streams.games import GameFinished, pack_policies
from streams.server import free_port
from tests.integration.test_cli_events import config, jetzero  # noqa: F401 - config: the fixture
from tests.integration.test_metrics import r, scrape_until, start_health, stop_health

pytestmark = pytest.mark.integration


def _checkpoint(run: str, model_id: str, generation: int, step: int = 0) -> ev.CheckpointSaved:
    return ev.CheckpointSaved.new(run, model_id=model_id, object_name=names.model_object(model_id),
                                  digest="d", generation=generation, step=step,
                                  policy_loss=2.0 - generation, value_loss=0.5)


async def _a_run(store, run: str) -> None:
    """A log with every shared figure set: games, pool, two models, a rated champion, a restart."""
    await store.append(ev.LoopStarted.new(run, by="test"))
    await store.append(_checkpoint(run, "m0", 0, 100))
    await store.append_many([
        GameFinished.new(run, game_id=f"g{i}", game="tictactoe", moves=list(range(3 + i % 3)),
                         **pack_policies([[1.0]] * (3 + i % 3)), outcome=0, model_id="m0", worker="w")
        for i in range(7)
    ])
    for index, (first, last) in enumerate([(1, 3), (4, 7)]):
        await store.append(ev.PoolBatchSynced.new(
            run, shard_id=f"s{index}", object_name=names.shard_object(run, f"s{index}"), digest="d",
            games=last - first + 1, positions=10 * (index + 1), games_first_seq=first,
            games_last_seq=last, models=["m0"]))
    await store.append(_checkpoint(run, "m1", 1, 250))
    await store.append(ev.MatchScheduled.new(run, match_id="x1",
                                             candidate=ev.PlayerSpec(kind="model", model_id="m1"),
                                             opponent=ev.PlayerSpec(kind="model", model_id="m0")))
    await store.append(ev.MatchCompleted.new(run, match_id="x1", verdict="accept", pairs=4,
                                             pentanomial=[0, 1, 1, 1, 1], elo=80.0, elo_ci95=90.0,
                                             llr=3.0, lower=-2.9, upper=2.9))
    await store.append(ev.CandidatePromoted.new(run, model_id="m1", previous_champion="m0", generation=1))
    await store.append(ev.ProcessRestarted.new(run, process="sync", exit_code=1))


async def test_status_and_the_metrics_endpoint_agree_on_one_log(nats_settings, store):
    run, port = "agree", free_port()
    loop = LoopConfig(run=run, nats=nats_settings, health=HealthSection(interval_s=0.2),
                      metrics=MetricsSection(port=port))
    await _a_run(store, run)
    task, stop = start_health(nats_settings, loop)
    try:
        _, metric = await scrape_until(port, lambda v: v.get(("jetzero_games_total", r(run))) == 7
                                       and v.get(("jetzero_champion_generation", r(run))) == 1
                                       and v.get(("jetzero_pool_shards", r(run))) == 2
                                       and v.get(("jetzero_process_restarts_total", r(run))) == 1)
        status = await collect_status(store, loop)
    finally:
        await stop_health(task, stop)

    def m(name: str) -> float:
        return metric[(f"jetzero_{name}", r(run))]

    pool, champion = status["pool"], status["champion"]
    assert pool["games_recorded"] == m("games_total") == 7
    assert pool["positions_recorded"] == m("positions_total")
    assert pool["selfplay_games_per_minute"] == pytest.approx(m("selfplay_games_per_minute"))
    assert m("selfplay_games_per_minute") > 0
    assert pool["games"] == m("pool_games") and pool["positions"] == m("pool_positions") == 30
    assert pool["shards"] == m("pool_shards")
    assert pool["positions_since_training"] == m("pool_positions_since_training")
    assert champion["model_id"] == "m1" and champion["generation"] == m("champion_generation")
    assert champion["elo"] == pytest.approx(m("champion_elo"))
    assert champion["elo_ci95"] == pytest.approx(m("champion_elo_ci95"))
    assert status["models"] == m("models_saved") == 2
    assert status["loop"]["restarts"] == m("process_restarts_total") == 1
    assert status["loop"]["halted"] == bool(m("halted"))
    assert status["recent"]["poison_events"] == m("rejected_events_total")
    text = format_status(status)
    assert f"{m('selfplay_games_per_minute'):.1f} games/min" in text and "7 games" in text


async def test_curriculum_replay_reports_the_stage_of_the_configured_stages(store, config):  # noqa: F811
    path = config  # run r1 on the test's server
    path.write_text(
        path.read_text() + "curriculum:\n"
        "  - {name: warmup, until_generation: 1, simulations: 8}\n"
        "  - {name: deep, until_generation: null, simulations: 32}\n"
    )
    first = await store.append(_checkpoint("r1", "m0", 0))
    await store.append(_checkpoint("r1", "m1", 1))
    await store.append(ev.CandidatePromoted.new("r1", model_id="m1", previous_champion="m0", generation=1))

    def stage(*until: str) -> dict:
        out = jetzero("events", "replay", "-p", "curriculum", "--json", *until, config=path)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["state"]

    then = stage("--until", str(first))
    assert (then["stage"], then["stage_index"], then["champion"]) == ("warmup", 0, "m0")
    now = stage()
    assert (now["stage"], now["stage_index"], now["generation"]) == ("deep", 1, 1)

"""The health service against a real server: the metrics endpoint follows the projections, and a
critical check records its failure and halts the loop once, across a restart."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from handlers.loop import health
from handlers.loop.config import HealthSection, LoopConfig, MetricsSection
from handlers.loop.metrics import heartbeats
from handlers.runtime.service import run_service
from projections.loop_status import LoopStatusProjection
from projections.pool import PoolProjection
from projections.ratings import RatingsProjection
from projections.runner import ProjectionRunner
from streams import events as ev
from streams import names
from streams.consumer import DurableConsumer
from streams.games import GameFinished, pack_policies
from streams.kv import Heartbeat, beat
from streams.server import free_port

pytestmark = pytest.mark.integration
NODE = "test-health"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

EXPECTED_NAMES = [
    "games_total", "positions_total", "selfplay_games_per_minute",
    "network_evaluations_per_second", "training_steps_total", "training_policy_loss",
    "training_value_loss", "pool_positions", "pool_positions_since_training",
    "champion_generation", "champion_elo", "champion_elo_ci95", "match_pairs_played",
    "match_llr", "consumer_lag", "halted", "process_restarts_total",
    "health_check_failures_total", "nodes_alive",
]


def _scrape(port: int) -> tuple[set[str], Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in families for s in family.samples}
    return {family.name for family in families}, samples


async def scrape_until(port: int, predicate: Callable[[Samples], bool], timeout: float = 20.0):
    """Scrape until ``predicate`` holds on the samples (the endpoint may not be up yet)."""
    deadline = time.monotonic() + timeout
    last: tuple[set[str], Samples] | None = None
    while True:
        try:
            last = await asyncio.to_thread(_scrape, port)
        except OSError:
            last = None
        if last is not None and predicate(last[1]):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last scrape: {last}")
        await asyncio.sleep(0.05)


async def wait_ticks(conn, run: str, at_least: int, since: float = 0.0, timeout: float = 20.0) -> None:
    """Wait until a health heartbeat beaten after ``since`` says ``at_least`` rounds are done."""
    deadline = time.monotonic() + timeout
    while True:
        for hb in await heartbeats(conn, run):
            if hb.node == NODE and hb.time >= since and hb.detail.get("ticks", 0) >= at_least:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"health did not finish {at_least} rounds within {timeout} s")
        await asyncio.sleep(0.05)


def r(run: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"run": run, **labels}.items()))


def start_health(settings, config: LoopConfig) -> tuple[asyncio.Task, asyncio.Event]:
    stop = asyncio.Event()

    async def body(ctx):
        ctx.extra["node"] = NODE
        await health.serve(ctx, config)

    task = asyncio.create_task(
        run_service("health", settings, config.run, body, install_signals=False, stop=stop))
    return task, stop


async def stop_health(task: asyncio.Task, stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


def _game(run: str, index: int, moves: list[int]) -> GameFinished:
    return GameFinished.new(run, game_id=f"g{index}", game="tictactoe", moves=moves,
                            **pack_policies([[1.0]] * len(moves)), outcome=0, model_id="m0", worker="w1")


def _checkpoint(run: str, model_id: str, generation: int, step: int, policy_loss: float,
                value_loss: float) -> ev.CheckpointSaved:
    return ev.CheckpointSaved.new(run, model_id=model_id, object_name=names.model_object(model_id),
                                  digest="d", generation=generation, step=step,
                                  policy_loss=policy_loss, value_loss=value_loss)


async def _events(store, tag: str) -> list:
    return [s.event async for s in store.read(names.EVENTS) if getattr(s.event, "tag", "") == tag]


async def test_the_metrics_endpoint_follows_the_projections(nats_settings, store, log):
    run, port = "m1", free_port()
    config = LoopConfig(run=run, nats=nats_settings, health=HealthSection(interval_s=0.2),
                        metrics=MetricsSection(port=port))
    await store.append(ev.LoopStarted.new(run, by="test"))
    await store.append(_checkpoint(run, "m0", 0, 100, policy_loss=2.5, value_loss=0.75))
    await store.append_many([_game(run, 0, [0, 1, 2]), _game(run, 1, [4, 0, 8, 2])])
    await beat(log, run, Heartbeat(node="sp-0", host="", roles=["selfplay"],
                                   detail={"evals_per_s": 512.0}))
    lagging = DurableConsumer(log, names.EVENTS, names.run_filter(names.EVENTS, run),
                              names.durable(run, "evaluator"))
    await lagging.open()  # never fetches: its lag is every event of the run
    task, stop = start_health(nats_settings, config)
    try:
        found, values = await scrape_until(port, lambda v: v.get(("jetzero_games_total", r(run))) == 2)
        assert not [n for n in EXPECTED_NAMES if f"jetzero_{n.removesuffix('_total')}" not in found]
        assert values[("jetzero_positions_total", r(run))] == 7
        assert values[("jetzero_halted", r(run))] == 0
        assert values[("jetzero_champion_generation", r(run))] == 0
        assert values[("jetzero_training_steps_total", r(run))] == 100
        assert values[("jetzero_training_policy_loss", r(run))] == 2.5
        assert values[("jetzero_network_evaluations_per_second", r(run))] == 512
        assert values[("jetzero_consumer_lag", r(run, handler="evaluator"))] == 2
        # the selfplay worker's heartbeat, then health's own after its first round
        await scrape_until(port, lambda v: v.get(("jetzero_nodes_alive", r(run))) == 2)

        candidate = ev.PlayerSpec(kind="model", model_id="m1")
        await store.append(_checkpoint(run, "m1", 1, 250, policy_loss=1.5, value_loss=0.5))
        await store.append(ev.MatchScheduled.new(run, match_id="x1", candidate=candidate,
                                                 opponent=ev.PlayerSpec(kind="random")))
        for index, penta in enumerate([4, 3, 2]):
            await store.append(ev.MatchPairPlayed.new(run, match_id="x1", unit_id="u0",
                                                      pair_index=index, opening=[],
                                                      pentanomial=penta))
        _, values = await scrape_until(
            port, lambda v: v.get(("jetzero_match_pairs_played", r(run, match="x1"))) == 3)
        assert values[("jetzero_match_llr", r(run, match="x1"))] > 0
        await store.append(ev.MatchCompleted.new(run, match_id="x1", verdict="accept", pairs=3,
                                                 pentanomial=[0, 0, 1, 1, 1], elo=200.0,
                                                 elo_ci95=150.0, llr=3.1, lower=-2.9,
                                                 upper=2.9))
        await store.append(ev.CandidatePromoted.new(run, model_id="m1", generation=1))
        ratings = await ProjectionRunner(store, RatingsProjection(), run,
                                         use_snapshots=False).catch_up()
        _, values = await scrape_until(
            port, lambda v: v.get(("jetzero_champion_generation", r(run))) == 1
            and ("jetzero_champion_elo", r(run)) in v)
        assert values[("jetzero_champion_elo", r(run))] == pytest.approx(ratings.ladder["m1"].elo)
        assert values[("jetzero_champion_elo_ci95", r(run))] == pytest.approx(
            ratings.ladder["m1"].ci95)
        assert values[("jetzero_training_steps_total", r(run))] == 250

        await pool_metrics_follow_the_pool(store, run, port)

        await store.append(ev.ProcessRestarted.new(run, process="sync", exit_code=1))
        await store.append(ev.LoopHalted.new(run, by="ops", reason="looking"))
        _, values = await scrape_until(port, lambda v: v.get(("jetzero_halted", r(run))) == 1)
        assert values[("jetzero_process_restarts_total", r(run))] == 1
    finally:
        await stop_health(task, stop)
        await lagging.close()
    with pytest.raises(OSError):  # the endpoint is closed with the service
        _scrape(port)


async def pool_metrics_follow_the_pool(store, run: str, port: int) -> None:
    """Synced batches reach the endpoint as the pool projection counts them."""
    for index, (first, last) in enumerate([(1, 2), (3, 5)]):
        await store.append(ev.PoolBatchSynced.new(
            run, shard_id=f"s{index}", object_name=names.shard_object(run, f"s{index}"),
            digest="d", games=last - first + 1, positions=7 * (index + 1), games_first_seq=first,
            games_last_seq=last, models=["m0"]))
    pool = await ProjectionRunner(store, PoolProjection(), run, use_snapshots=False).catch_up()
    assert pool.positions == 21
    _, values = await scrape_until(port, lambda v: v.get(
        ("jetzero_pool_positions_since_training", r(run))) == pool.positions_since_training)
    assert values[("jetzero_pool_positions", r(run))] == pool.positions
    assert values[("jetzero_pool_games", r(run))] == pool.games == 5


async def test_a_critical_check_records_once_and_halts_once_across_a_restart(
    nats_settings, store, log
):
    run, port = "m2", free_port()
    config = LoopConfig(run=run, nats=nats_settings,
                        health=HealthSection(interval_s=0.1, min_free_disk_gb=1e12),
                        metrics=MetricsSection(port=port))
    await store.append(ev.LoopStarted.new(run, by="test"))
    task, stop = start_health(nats_settings, config)
    try:
        status = ProjectionRunner(store, LoopStatusProjection(), run, use_snapshots=False)
        await status.follow()
        halted = await status.wait_for(lambda s: s.halted, timeout=20)
        await status.stop()
        assert halted.halt_automatic and halted.halted_by == "health"
        assert "disk_space" in halted.halt_reason
        await wait_ticks(log, run, 4)  # several more rounds with the check still failing
        _, values = await scrape_until(
            port, lambda v: v.get(("jetzero_health_check_failures_total", r(run))) == 1)
        assert values[("jetzero_health_check_failing", r(run, check="disk_space"))] == 1
        await store.append(ev.LoopResumed.new(run, by="ops", reason="I know"))
        await wait_ticks(log, run, 8)
    finally:
        await stop_health(task, stop)

    restarted_at = time.time()
    task, stop = start_health(nats_settings, config)  # a restarted health process
    try:
        await wait_ticks(log, run, 4, since=restarted_at)
    finally:
        await stop_health(task, stop)
    [failure] = await _events(store, "health.check_failed")
    assert (failure.check, failure.severity, failure.node) == ("disk_space", "critical", NODE)
    assert failure.threshold == 1e12 and failure.value < failure.threshold
    [halt] = await _events(store, "loop.halted")
    assert halt.automatic and halt.causation_id == failure.id
    assert halt.by == "health"


async def test_a_critical_failure_recorded_by_the_trainer_halts_the_loop(nats_settings, store, log):
    run, port = "m3", free_port()
    config = LoopConfig(run=run, nats=nats_settings, health=HealthSection(interval_s=0.1),
                        metrics=MetricsSection(port=port))
    await store.append(ev.LoopStarted.new(run, by="test"))
    task, stop = start_health(nats_settings, config)
    try:
        status = ProjectionRunner(store, LoopStatusProjection(), run, use_snapshots=False)
        await status.follow()
        await wait_ticks(log, run, 2)
        assert not status.state.halted  # nothing critical yet
        nan = ev.HealthCheckFailed.new(run, check="nan_loss", severity="critical",
                                       detail="policy loss is nan", node="trainer-0")
        await store.append(nan)
        halted = await status.wait_for(lambda s: s.halted, timeout=20)
        await status.stop()
        assert halted.halt_automatic and halted.halted_by == "health"
        assert "nan_loss" in halted.halt_reason
        await wait_ticks(log, run, 6)
    finally:
        await stop_health(task, stop)
    assert len(await _events(store, "loop.halted")) == 1
    assert [e.node for e in await _events(store, "health.check_failed")] == ["trainer-0"]


async def test_a_taken_metrics_port_is_recorded_and_the_checks_go_on(nats_settings, store, log):
    run = "m4"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = LoopConfig(run=run, nats=nats_settings, health=HealthSection(interval_s=0.1),
                            metrics=MetricsSection(port=port))
        task, stop = start_health(nats_settings, config)
        try:
            await wait_ticks(log, run, 3)
        finally:
            await stop_health(task, stop)
    [failure] = await _events(store, "health.check_failed")
    assert (failure.check, failure.severity) == ("metrics_endpoint", "warning")
    assert str(port) in failure.detail

"""Health checks and metric families as pure functions: thresholds, episodes, automatic halt."""

from __future__ import annotations

import math

import msgspec
import pytest

from handlers.loop.config import HealthSection
from handlers.loop.health import (
    CRITICAL,
    WARNING,
    HealthInputs,
    advance,
    check_consumer_lag,
    check_disk,
    check_losses,
    check_rejections,
    check_selfplay_stall,
    consecutive_rejections,
    decide,
    health_inputs,
    run_checks,
)
from handlers.loop.metrics import LiveReadings, metric_families
from projections.base import fold
from projections.journal import JournalProjection
from projections.loop_status import LoopStatus, LoopStatusProjection
from projections.matches import MatchesProjection
from projections.models import ModelRegistryProjection, fold_numbered
from projections.ratings import RatingsProjection
from projections.tally import RECENT_GAMES, GameTally, GameTallyProjection
from streams import events as ev
from streams.games import GameFinished, pack_policies
from streams.kv import Heartbeat

RUN = "h1"
CFG = HealthSection(selfplay_stall_s=100.0, max_consumer_lag=50, max_rejections=3,
                    max_candidate_rejections=2, min_free_disk_gb=2.0)
T0 = 1_000_000.0
RUNNING = LoopStatus(state="running", since=T0)


def inputs(**fields) -> HealthInputs:
    base = dict(now=T0 + 10, status=RUNNING, last_game_time=T0 + 5, free_disk_bytes=10**12)
    return HealthInputs(**{**base, **fields})


def checks(failures) -> list[str]:
    return [f.check for f in failures]


# -- each check at its threshold ---------------------------------------------------------------


def test_selfplay_stall_passes_at_the_threshold_and_fails_past_it():
    at = inputs(now=T0 + 5 + 100.0)
    past = inputs(now=T0 + 5 + 100.5)
    assert check_selfplay_stall(at, CFG) == []
    [failure] = check_selfplay_stall(past, CFG)
    assert (failure.check, failure.severity) == ("selfplay_stalled", WARNING)
    assert failure.value == pytest.approx(100.5) and failure.threshold == 100.0


def test_selfplay_stall_counts_from_the_start_and_the_resume_and_skips_halts():
    never_played = inputs(last_game_time=0.0, now=T0 + 101)
    assert checks(check_selfplay_stall(never_played, CFG)) == ["selfplay_stalled"]
    assert check_selfplay_stall(inputs(last_game_time=0.0, now=T0 + 99), CFG) == []
    resumed = msgspec.structs.replace(RUNNING, halted_since=T0 + 500)  # resumed at T0+500
    assert check_selfplay_stall(inputs(status=resumed, now=T0 + 550), CFG) == []
    halted = msgspec.structs.replace(RUNNING, halted=True, halted_since=T0)
    assert check_selfplay_stall(inputs(status=halted, now=T0 + 10_000), CFG) == []
    stopped = LoopStatus(state="stopped", since=T0)
    assert check_selfplay_stall(inputs(status=stopped, now=T0 + 10_000), CFG) == []


def test_consumer_lag_fails_per_handler_above_the_maximum_and_not_while_halted():
    lags = {"evaluator": 50, "sync": 51, "promoter": 0}
    failures = check_consumer_lag(inputs(consumer_lags=lags), CFG)
    assert checks(failures) == ["consumer_lag:sync"]
    assert failures[0].severity == WARNING and failures[0].value == 51
    halted = msgspec.structs.replace(RUNNING, halted=True)
    assert check_consumer_lag(inputs(status=halted, consumer_lags=lags), CFG) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_loss_is_critical(bad):
    assert check_losses(inputs(losses={"policy": 2.1, "value": 0.4}), CFG) == []
    [failure] = check_losses(inputs(losses={"policy": 2.1, "value": bad}), CFG)
    assert (failure.check, failure.severity) == ("nan_loss", CRITICAL)
    assert "value" in failure.detail


def test_rejections_fail_above_their_maxima():
    assert check_rejections(inputs(rejected_events=3, consecutive_rejections=2), CFG) == []
    assert checks(check_rejections(inputs(rejected_events=4), CFG)) == ["rejected_events"]
    assert checks(check_rejections(inputs(consecutive_rejections=3), CFG)) == [
        "candidate_rejections"]


def test_disk_space_below_the_minimum_is_critical():
    assert check_disk(inputs(free_disk_bytes=2 * 10**9), CFG) == []
    assert check_disk(inputs(free_disk_bytes=None), CFG) == []
    [failure] = check_disk(inputs(free_disk_bytes=2 * 10**9 - 1), CFG)
    assert (failure.check, failure.severity) == ("disk_space", CRITICAL)
    assert failure.threshold == 2.0 and failure.value < 2.0


def test_a_healthy_snapshot_passes_every_check():
    assert run_checks(inputs(consumer_lags={"sync": 3}, losses={"p": 1.0}), CFG) == []


# -- episodes ----------------------------------------------------------------------------------------


def test_advance_opens_keeps_and_closes_episodes():
    [fail] = check_disk(inputs(free_disk_bytes=0), CFG)
    episodes, started = advance({}, [fail], T0)
    assert episodes == {"disk_space": T0} and started == [(fail, T0)]
    episodes, started = advance(episodes, [fail], T0 + 1)
    assert episodes == {"disk_space": T0} and started == []
    episodes, started = advance(episodes, [], T0 + 2)
    assert episodes == {} and started == []


def test_failing_twice_records_once_and_failing_again_after_recovery_records_again():
    lagging = inputs(consumer_lags={"sync": 999})
    first = decide(lagging, CFG, {}, run=RUN, node="n1")
    assert [e.check for e in first.events] == ["consumer_lag:sync"]
    assert first.events[0].node == "n1" and first.events[0].severity == WARNING
    assert first.halt is None  # a warning does not halt
    second = decide(msgspec.structs.replace(lagging, now=lagging.now + 3), CFG, first.episodes,
                    run=RUN)
    assert second.events == [] and second.episodes == first.episodes
    recovered = decide(inputs(now=lagging.now + 6), CFG, second.episodes, run=RUN)
    assert recovered.events == [] and recovered.episodes == {}
    again = decide(msgspec.structs.replace(lagging, now=lagging.now + 9), CFG, {}, run=RUN)
    assert [e.check for e in again.events] == ["consumer_lag:sync"]
    assert again.events[0].id != first.events[0].id


def test_ids_derive_from_the_episode_and_unrecorded_episodes_are_sent_again():
    failing = inputs(free_disk_bytes=0)
    one = decide(failing, CFG, {}, run=RUN)
    same = decide(failing, CFG, {}, run=RUN)
    assert [e.id for e in one.events] == [e.id for e in same.events]
    assert one.halt is not None and one.halt.id == same.halt.id
    later = msgspec.structs.replace(failing, now=failing.now + 30)
    assert decide(later, CFG, one.episodes, run=RUN).events == []
    resent = decide(later, CFG, one.episodes, run=RUN, unrecorded={"disk_space"})
    assert [e.id for e in resent.events] == [e.id for e in one.events]


def test_a_critical_failure_halts_once_and_not_when_already_halted():
    failing = inputs(losses={"value": math.nan})
    first = decide(failing, CFG, {}, run=RUN, node="n1")
    assert first.halt is not None
    assert first.halt.automatic and first.halt.by == "health"
    assert "nan_loss" in first.halt.reason
    assert first.halt.causation_id == first.events[0].id
    second = decide(msgspec.structs.replace(failing, now=failing.now + 3), CFG, first.episodes,
                    run=RUN)
    assert second.halt is None and second.events == []
    halted = msgspec.structs.replace(RUNNING, halted=True, halted_by="ops")
    already = decide(inputs(status=halted, losses={"value": math.nan}), CFG, {}, run=RUN)
    assert [e.check for e in already.events] == ["nan_loss"] and already.halt is None
    manual = msgspec.structs.replace(CFG, auto_halt_on_critical=False)
    assert decide(failing, manual, {}, run=RUN).halt is None


def test_two_critical_failures_at_once_halt_once():
    both = inputs(losses={"value": math.inf}, free_disk_bytes=0)
    decision = decide(both, CFG, {}, run=RUN)
    assert sorted(e.check for e in decision.events) == ["disk_space", "nan_loss"]
    assert decision.halt is not None


# -- snapshot from the projections ---------------------------------------------------------------------


def _checkpoint(model_id, generation, step, policy_loss=1.0, value_loss=0.5):
    return ev.CheckpointSaved.new(RUN, model_id=model_id, object_name=f"models/{model_id}.pt",
                                  digest="d", generation=generation, step=step,
                                  policy_loss=policy_loss, value_loss=value_loss)


def _game(t, moves=(0, 1, 2)):
    game = GameFinished.new(RUN, game_id=f"g{t}", game="tictactoe", moves=list(moves),
                            **pack_policies([[1.0]] * len(moves)), outcome=1, model_id="m0", worker="w")
    return msgspec.structs.replace(game, time=t)


def test_consecutive_rejections_count_since_the_last_promotion():
    registry = fold_numbered(ModelRegistryProjection(), [
        (1, _checkpoint("m0", 0, 0)),
        *((1 + i, _checkpoint(f"m{i}", i, i)) for i in range(1, 5)),  # decisions need checkpoints
        (6, ev.CandidateRejected.new(RUN, model_id="m1", reason="weak")),
        (7, ev.CandidatePromoted.new(RUN, model_id="m2", generation=1)),
        (8, ev.CandidateRejected.new(RUN, model_id="m3", reason="weak")),
        (9, ev.CandidateRejected.new(RUN, model_id="m4", reason="weak")),
    ])
    assert consecutive_rejections(registry) == 2
    assert consecutive_rejections(None) == 0


def test_health_inputs_take_losses_from_the_latest_checkpoint_and_heartbeats():
    registry = fold_numbered(ModelRegistryProjection(), [
        (1, _checkpoint("m0", 0, 100, policy_loss=math.nan)),
        (2, _checkpoint("m1", 1, 200, policy_loss=1.25, value_loss=0.75)),
    ])
    trainer = Heartbeat(node="t1", host="h", roles=["trainer"], detail={"value_loss": math.inf})
    tally = fold(GameTallyProjection(), [_game(T0), _game(T0 + 1, moves=(4,))])
    snap = health_inputs({"model_registry": registry, "game_tally": tally},
                         LiveReadings(heartbeats=(trainer,), free_disk_bytes=5), T0 + 2)
    assert snap.losses == {"checkpoint m1 policy_loss": 1.25, "checkpoint m1 value_loss": 0.75,
                           "t1 value_loss": math.inf}
    assert (snap.games, snap.last_game_time, snap.free_disk_bytes) == (2, T0 + 1, 5)
    assert checks(check_losses(snap, CFG)) == ["nan_loss"]


# -- metric families -------------------------------------------------------------------------------------


def _samples(families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}


def test_the_game_tally_counts_games_positions_and_the_recent_rate():
    tally = fold(GameTallyProjection(), [_game(T0 + i) for i in range(30)])
    assert (tally.games, tally.positions, tally.last_game_time) == (30, 90, T0 + 29)
    families = metric_families(RUN, {"game_tally": tally}, LiveReadings(), T0 + 29.5)
    values = _samples(families)
    assert values[("jetzero_games_total", (("run", RUN),))] == 30
    assert values[("jetzero_positions_total", (("run", RUN),))] == 90
    assert values[("jetzero_selfplay_games_per_minute", (("run", RUN),))] == 30
    fast = fold(GameTallyProjection(), [_game(T0 + i / 100) for i in range(RECENT_GAMES + 5)])
    assert len(fast.recent) == RECENT_GAMES
    rate = metric_families(RUN, {"game_tally": fast}, LiveReadings(), T0 + 3.0)
    per_min = _samples(rate)[("jetzero_selfplay_games_per_minute", (("run", RUN),))]
    assert per_min > 60 * RECENT_GAMES / 60.0  # over the ring's span, not the whole minute
    assert GameTally().games == 0


def test_metric_families_read_the_projection_states():
    events = [
        ev.LoopStarted.new(RUN),
        _checkpoint("m0", 0, 100, policy_loss=2.0, value_loss=0.9),
        ev.MatchScheduled.new(RUN, match_id="x1", candidate=ev.PlayerSpec(kind="model", model_id="m0"),
                              opponent=ev.PlayerSpec(kind="random")),
        ev.MatchPairPlayed.new(RUN, match_id="x1", unit_id="u", pair_index=0, opening=[],
                               pentanomial=4),
        ev.MatchCompleted.new(RUN, match_id="x1", verdict="accept", pairs=3,
                              pentanomial=[0, 0, 1, 0, 2], elo=100.0, elo_ci95=50.0, llr=3.0,
                              lower=-2.9, upper=2.9),
        ev.ProcessRestarted.new(RUN, process="sync"),
        ev.HealthCheckFailed.new(RUN, check="disk_space", severity="critical", detail="full"),
        ev.LoopHalted.new(RUN, by="health", automatic=True),
    ]
    states = {
        "loop_status": fold(LoopStatusProjection(), events),
        "journal": fold(JournalProjection(), events),
        "model_registry": fold_numbered(ModelRegistryProjection(), enumerate(events, 1)),
        "matches": fold(MatchesProjection(), events),
        "ratings": fold(RatingsProjection(), events),
    }
    selfplay = Heartbeat(node="s1", host="h", roles=["selfplay"], detail={"evals_per_s": 120.0})
    other = Heartbeat(node="s2", host="h", roles=["selfplay"], detail={"evals_per_s": 30.5})
    live = LiveReadings(heartbeats=(selfplay, other), consumer_lags={"sync": 7})
    values = _samples(metric_families(RUN, states, live, T0, failing=["disk_space"]))
    r = (("run", RUN),)
    rating = states["ratings"].ladder["m0"]
    assert values[("jetzero_halted", r)] == 1
    assert values[("jetzero_champion_generation", r)] == 0
    assert values[("jetzero_champion_elo", r)] == pytest.approx(rating.elo)
    assert values[("jetzero_champion_elo_ci95", r)] == pytest.approx(rating.ci95)
    assert values[("jetzero_training_steps_total", r)] == 100
    assert values[("jetzero_training_policy_loss", r)] == 2.0
    assert values[("jetzero_training_value_loss", r)] == pytest.approx(0.9)
    assert values[("jetzero_match_pairs_played", (("match", "x1"), ("run", RUN)))] == 3
    assert values[("jetzero_match_llr", (("match", "x1"), ("run", RUN)))] == 3.0
    assert values[("jetzero_consumer_lag", (("handler", "sync"), ("run", RUN)))] == 7
    assert values[("jetzero_network_evaluations_per_second", r)] == 150.5
    assert values[("jetzero_nodes_alive", r)] == 2
    assert values[("jetzero_process_restarts_total", r)] == 1
    assert values[("jetzero_health_check_failures_total", r)] == 1
    assert values[("jetzero_health_check_failing", (("check", "disk_space"), ("run", RUN)))] == 1


def test_a_critical_failure_recorded_by_another_process_halts_until_a_resume():
    trainer_nan = ev.HealthCheckFailed.new(RUN, check="nan_loss", severity="critical",
                                           detail="loss is nan", node="trainer")
    warning = ev.HealthCheckFailed.new(RUN, check="pool_shard", severity="warning", detail="x")
    started = ev.LoopStarted.new(RUN)
    before = msgspec.structs.replace(trainer_nan, time=started.time - 1)
    after = msgspec.structs.replace(trainer_nan, time=started.time + 1)

    def snapshot(*events):
        states = {"loop_status": fold(LoopStatusProjection(), events),
                  "journal": fold(JournalProjection(), events)}
        return health_inputs(states, LiveReadings(), started.time + 5)

    assert decide(snapshot(before, started, warning), CFG, {}, run=RUN).halt is None
    halt = decide(snapshot(started, warning, after), CFG, {}, run=RUN).halt
    assert halt is not None and halt.automatic and "nan_loss" in halt.reason
    again = decide(snapshot(started, warning, after), CFG, {}, run=RUN).halt
    assert again is not None and again.id == halt.id  # the same halt, deduplicated
    halted = msgspec.structs.replace(halt, time=after.time + 1)
    assert decide(snapshot(started, after, halted), CFG, {}, run=RUN).halt is None
    resumed = ev.LoopResumed.new(RUN, by="ops")
    resumed = msgspec.structs.replace(resumed, time=after.time + 2)
    assert decide(snapshot(started, after, halted, resumed), CFG, {}, run=RUN).halt is None
    manual = msgspec.structs.replace(CFG, auto_halt_on_critical=False)
    assert decide(snapshot(started, after), manual, {}, run=RUN).halt is None

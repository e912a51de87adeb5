"""Training steps (loss goes down, NaN is caught, schedules) and training samples."""

from __future__ import annotations

import io

import msgspec
import numpy as np
import pytest
import torch

from engine.errors import TrainingDiverged
from engine.games import get_game
from engine.network import NetworkConfig, build_network, set_torch_threads
from engine.samples import InvalidSamples, Samples, samples_from_record, samples_from_records
from engine.selfplay import GameRecord
from engine.train import TrainConfig, TrainSession, evaluate_losses, train_steps

C4 = get_game("connect4")
TTT = get_game("tictactoe")
SMALL = NetworkConfig(blocks=1, channels=16, value_hidden=16)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    set_torch_threads(1)


def uniform_record(game, moves, opening_plies=0):
    """A record of ``moves`` with uniform-over-legal policies (a stand-in for search)."""
    state, policies = game.initial_state(), []
    for ply, move in enumerate(moves):
        if ply >= opening_plies:
            mask = state.legal_mask()
            policies.append(tuple((mask / mask.sum()).tolist()))
        state = state.play(move)
    return GameRecord(
        moves=tuple(moves),
        policies=tuple(policies),
        outcome=int(state.outcome()),
        plies=len(moves),
        opening_plies=opening_plies,
    )


def fixed_batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    planes = (rng.random((n, *C4.plane_shape)) < 0.3).astype(np.float32)
    policies = rng.dirichlet(np.ones(7), size=n).astype(np.float32)
    values = rng.choice([-1.0, 0.0, 1.0], size=n).astype(np.float32)
    return Samples(planes, policies, values)


def total(report):
    return report.policy_loss + report.value_loss


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    net = build_network(C4, SMALL, seed=0)
    samples = fixed_batch()
    before = evaluate_losses(net, samples)
    cfg = TrainConfig(steps=40, batch_size=64, optimizer="adamw", lr=3e-3, lr_schedule="constant")
    report = train_steps(net, samples, cfg, np.random.default_rng(0), augment=False)
    after = evaluate_losses(net, samples)
    assert total(after) < 0.8 * total(before)
    assert report.steps == 40 and report.samples_seen == 40 * 64
    assert 0 < report.policy_entropy <= np.log(7) + 1e-6
    assert not net.training


def test_training_is_reproducible_with_the_same_seed():
    samples = fixed_batch(32)
    cfg = TrainConfig(steps=5, batch_size=16)
    reports = []
    for _ in range(2):
        net = build_network(C4, SMALL, seed=4)
        reports.append(train_steps(net, samples, cfg, np.random.default_rng(9), game=C4))
    assert reports[0] == reports[1]


def test_a_nan_loss_raises_before_the_step_is_applied():
    net = build_network(C4, SMALL, seed=0)
    samples = fixed_batch(16)
    samples.values[3] = np.nan
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = TrainConfig(steps=3, batch_size=16)
    with pytest.raises(TrainingDiverged, match="step 0"):
        train_steps(net, samples, cfg, np.random.default_rng(0), augment=False)
    for name, value in net.state_dict().items():
        assert torch.equal(value, weights[name]) or "running" in name or "num_batches" in name


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_chunks_of_a_session_train_exactly_like_one_run(optimizer):
    """4 chunks of 3 steps == 12 steps at once: same weights, same schedule, same epochs
    (20 samples in batches of 8: the order is reshuffled across chunk boundaries)."""
    samples = fixed_batch(20)
    cfg = TrainConfig(steps=12, batch_size=8, optimizer=optimizer, lr=0.01, warmup_steps=2)
    whole = build_network(C4, SMALL, seed=1)
    one = train_steps(whole, samples, cfg, np.random.default_rng(3), game=C4)
    chunked = build_network(C4, SMALL, seed=1)
    session = TrainSession(chunked, samples, cfg, np.random.default_rng(3), game=C4)
    reports = [session.run(3) for _ in range(4)]
    assert same_weights(whole, chunked)
    assert [r.final_lr for r in reports] == [cfg.lr_at(i) for i in (2, 5, 8, 11)]
    assert reports[-1].final_lr == one.final_lr and session.remaining == 0
    assert sum(r.samples_seen for r in reports) == one.samples_seen
    assert reports[-1].final_policy_loss == one.final_policy_loss
    assert not chunked.training


def test_restarting_the_optimizer_per_chunk_would_differ():
    """The equality above is not automatic: fresh optimizers per chunk give other weights."""
    samples = fixed_batch(16)
    cfg = TrainConfig(steps=6, batch_size=16, lr=0.01, lr_schedule="constant")
    whole = build_network(C4, SMALL, seed=1)
    train_steps(whole, samples, cfg, np.random.default_rng(3), augment=False)
    restarted = build_network(C4, SMALL, seed=1)
    rng = np.random.default_rng(3)
    for _ in range(2):
        train_steps(
            restarted,
            samples,
            TrainConfig(steps=3, batch_size=16, lr=0.01, lr_schedule="constant"),
            rng,
            augment=False,
        )
    assert not same_weights(whole, restarted)


def test_a_session_runs_no_more_than_its_schedule():
    session = TrainSession(
        build_network(C4, SMALL, seed=0),
        fixed_batch(8),
        TrainConfig(steps=3, batch_size=8),
        np.random.default_rng(0),
        augment=False,
    )
    assert session.run(2).steps == 2 and session.remaining == 1
    with pytest.raises(ValueError, match="1 of 3 remain"):
        session.run(2)
    assert session.run().steps == 1 and session.step == 3


def test_a_diverged_step_leaves_the_session_where_it_was():
    samples = fixed_batch(16)
    samples.values[5] = np.inf
    session = TrainSession(
        build_network(C4, SMALL, seed=0),
        samples,
        TrainConfig(steps=4, batch_size=16),
        np.random.default_rng(0),
        augment=False,
    )
    with pytest.raises(TrainingDiverged, match="step 0"):
        session.run(2)
    assert session.step == 0 and not session.net.training


def test_augmentation_needs_the_game():
    with pytest.raises(ValueError, match="game"):
        train_steps(build_network(C4, SMALL), fixed_batch(8), TrainConfig(steps=1), np.random.default_rng(0))


def test_learning_rate_schedules():
    cosine = TrainConfig(steps=11, lr=1.0, lr_schedule="cosine", lr_final_fraction=0.1)
    assert cosine.lr_at(0) == pytest.approx(1.0) and cosine.lr_at(10) == pytest.approx(0.1)
    assert cosine.lr_at(5) == pytest.approx(0.55)
    step = TrainConfig(lr=1.0, lr_schedule="step", lr_decay_steps=(3, 6), lr_decay_factor=0.5)
    assert [step.lr_at(i) for i in (0, 3, 5, 6, 9)] == [1.0, 0.5, 0.5, 0.25, 0.25]
    warm = TrainConfig(lr=1.0, lr_schedule="constant", warmup_steps=4)
    assert [warm.lr_at(i) for i in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_learning_tictactoe_values_from_recorded_games():
    """Trained on two replayed games, the net predicts each position's outcome."""
    records = [uniform_record(TTT, [0, 3, 1, 4, 2]), uniform_record(TTT, [4, 0, 2, 6, 3, 1, 5])]
    samples = samples_from_records(TTT, records)
    net = build_network(TTT, NetworkConfig(blocks=1, channels=16, value_hidden=32), seed=0)
    cfg = TrainConfig(steps=150, batch_size=len(samples), optimizer="adamw", lr=3e-3)
    train_steps(net, samples, cfg, np.random.default_rng(0), game=TTT)
    assert evaluate_losses(net, samples).value_loss < 0.05


# -- samples ---------------------------------------------------------------------------------


def test_samples_from_a_record_follow_the_side_to_move():
    record = uniform_record(C4, [0, 1, 0, 1, 0, 1, 0])  # player 0 wins on ply 6
    samples = samples_from_record(C4, record)
    assert len(samples) == 7
    won = C4.terminal_value(1, 7)  # a win on the 7th ply, shrunk by the quick-win weight
    assert 0.9 < won < 1
    np.testing.assert_allclose(samples.values, np.float32([1, -1, 1, -1, 1, -1, 1]) * won)
    state = C4.from_moves(record.moves[:3])
    np.testing.assert_array_equal(samples.planes[3], state.planes())
    np.testing.assert_allclose(samples.policies.sum(axis=1), 1.0, rtol=1e-6)
    assert samples.planes.dtype == samples.policies.dtype == samples.values.dtype == np.float32


def test_opening_plies_have_no_samples():
    record = uniform_record(TTT, [4, 0, 2, 6, 3, 1, 5], opening_plies=2)  # X wins on ply 6
    samples = samples_from_record(TTT, record)
    assert len(samples) == 5
    np.testing.assert_array_equal(samples.planes[0], TTT.from_moves([4, 0]).planes())
    assert samples.values[0] == record.outcome  # ply 2: player 0 to move


def test_samples_concat_and_bytes_round_trip():
    parts = [samples_from_record(C4, uniform_record(C4, [0, 1] * 3 + [0])), fixed_batch(5)]
    joined = Samples.concat(parts)
    assert len(joined) == 12
    back = Samples.from_bytes(joined.to_bytes())
    for name in ("planes", "policies", "values", "search_values"):
        np.testing.assert_array_equal(getattr(back, name), getattr(joined, name))
    assert len(samples_from_records(C4, [])) == 0


def test_a_shard_written_before_search_values_reads_with_the_outcomes():
    old = fixed_batch(6)
    buffer = io.BytesIO()  # the shard layout before search values were stored
    np.savez_compressed(buffer, planes=old.planes, policies=old.policies, values=old.values)
    back = Samples.from_bytes(buffer.getvalue())
    np.testing.assert_array_equal(back.searched, old.values)
    np.testing.assert_array_equal(back.value_targets(0.5), old.values)


def test_recorded_root_values_become_the_search_values_and_blend_into_targets():
    record = uniform_record(C4, [0, 1, 0, 1, 0, 1, 0])  # player 0 wins: values alternate in sign
    q = (0.5, -0.25, 0.0, 0.75, -1.0, 0.25, 1.0)
    samples = samples_from_record(C4, msgspec.structs.replace(record, root_values=q))
    np.testing.assert_array_equal(samples.searched, np.float32(q))
    np.testing.assert_array_equal(samples.value_targets(0.0), samples.values)
    np.testing.assert_allclose(samples.value_targets(1.0), np.float32(q), atol=1e-7)
    won = C4.terminal_value(1, 7)
    np.testing.assert_allclose(
        samples.value_targets(0.5, np.array([0, 1])), [(won + 0.5) / 2, (-won - 0.25) / 2], rtol=1e-6
    )


def test_the_value_head_learns_the_blend_that_the_config_asks_for():
    base = fixed_batch(64, seed=3)
    outcome = np.ones(64, np.float32)
    samples = Samples(base.planes, base.policies, outcome, -outcome)  # outcome +1, search -1
    predicted = {}
    for weight in (0.0, 1.0):
        net = build_network(C4, SMALL, seed=0)
        cfg = TrainConfig(steps=60, batch_size=64, optimizer="adamw", lr=3e-3,
                          lr_schedule="constant", search_value_weight=weight)
        train_steps(net, samples, cfg, np.random.default_rng(0), augment=False)
        with torch.inference_mode():
            predicted[weight] = net(torch.from_numpy(samples.planes))[1].mean().item()
    assert predicted[0.0] > 0.5 and predicted[1.0] < -0.5


def test_a_search_value_weight_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="search_value_weight"):
        TrainConfig(search_value_weight=1.5)


@pytest.mark.parametrize("data", [b"", b"garbage", b"PK\x03\x04 truncated zip"])
def test_bad_sample_bytes_are_refused(data):
    with pytest.raises(InvalidSamples):
        Samples.from_bytes(data)


def test_inconsistent_samples_are_refused():
    good = fixed_batch(4)
    with pytest.raises(InvalidSamples):
        Samples(good.planes, good.policies[:3], good.values)
    with pytest.raises(InvalidSamples):
        Samples(good.planes.astype(np.float64), good.policies, good.values)
    with pytest.raises(InvalidSamples):
        Samples(good.planes, good.policies, good.values, good.values[:3])
    with pytest.raises(InvalidSamples):
        Samples.concat([good, samples_from_record(TTT, uniform_record(TTT, [0, 3, 1, 4, 2]))])
    half = fixed_batch(4).to_bytes()
    with pytest.raises(InvalidSamples):
        Samples.from_bytes(half[: len(half) // 2])

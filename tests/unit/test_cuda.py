"""CUDA paths (skipped without a GPU; run on a GPU machine by scripts/gpu_check.sh): selfplay on
CUDA plays legal games whose records decode, also as two batches in flight; threads sharing an
evaluator keep their own staging buffers; checkpoints move between CUDA and the CPU."""

from __future__ import annotations

import threading

import msgspec
import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint, make_meta, save_checkpoint
from engine.games import get_game
from engine.mcts import SearchSettings
from engine.network import DEFAULT_CONNECT4_NETWORK, NetworkEvaluator, build_network
from engine.overlapped_selfplay import OverlappedSelfplay
from engine.samples import samples_from_records
from engine.selfplay import SelfplaySettings, check_record, play_games
from engine.settings import TrainConfig
from engine.train import train_steps
from handlers.loop.selfplay import to_event
from streams.codec import decode, encode
from streams.games import GameFinished, policy_array

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

GAME = get_game("connect4")
SEARCH = SearchSettings(simulations=16, dirichlet_fraction=0.25, temperature_moves=4)
SETTINGS = SelfplaySettings(search=SEARCH, games_in_flight=32)


@pytest.mark.parametrize("half", [False, True])
def test_selfplay_on_cuda_plays_legal_games_whose_records_decode(half):
    net = build_network(GAME, DEFAULT_CONNECT4_NETWORK, seed=1)
    evaluator = NetworkEvaluator(net, device="cuda", half=half)
    assert evaluator.device.type == "cuda" and evaluator.half == half
    records = list(play_games(GAME, evaluator, SETTINGS, 40, np.random.default_rng(0)))
    assert len(records) == 40
    for record in records:
        check_record(GAME, record)
        event = to_event("r", record, game="connect4", model_id="m", generation=0, stage="s",
                         search=msgspec.to_builtins(SETTINGS.search), worker="w")
        back = decode(encode(event))
        assert isinstance(back, GameFinished) and tuple(back.moves) == record.moves
        np.testing.assert_allclose(policy_array(back), np.asarray(record.policies, dtype=np.float32))


def test_cuda_and_cpu_evaluators_agree():
    net = build_network(GAME, DEFAULT_CONNECT4_NETWORK, seed=2)
    states = [GAME.from_moves([c, 3]) for c in range(7)]
    cpu = NetworkEvaluator(net, device="cpu").evaluate(states)
    cuda = NetworkEvaluator(net, device="cuda").evaluate(states)
    np.testing.assert_allclose(cuda[0], cpu[0], atol=1e-4)
    np.testing.assert_allclose(cuda[1], cpu[1], atol=1e-4)


@pytest.mark.parametrize(("train_on", "load_on"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_trained_on_one_device_loads_on_the_other(train_on, load_on):
    net = build_network(GAME, DEFAULT_CONNECT4_NETWORK, seed=3)
    evaluator = NetworkEvaluator(net, device="cpu")
    records = list(play_games(GAME, evaluator, SETTINGS, 8, np.random.default_rng(1)))
    samples = samples_from_records(GAME, records)
    train_steps(net, samples, TrainConfig(steps=5, batch_size=64), np.random.default_rng(2), game=GAME,
                device=train_on)
    assert net.device.type == train_on
    data = save_checkpoint(net, make_meta(net, game=GAME))
    loaded, meta = load_checkpoint(data, GAME, DEFAULT_CONNECT4_NETWORK)
    loaded = loaded.to(load_on)
    planes = torch.from_numpy(np.stack([s.planes() for s in (GAME.from_moves([3]), GAME.initial_state())]))
    with torch.inference_mode():
        want = [t.cpu() for t in net.eval()(planes.to(train_on))]
        got = [t.cpu() for t in loaded.eval()(planes.to(load_on))]
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_threads_calling_one_cuda_evaluator_at_once_get_their_own_answers():
    """Each thread stages its planes in its own pinned buffer: two threads (as two batches in
    flight do) never read each other's positions."""
    net = build_network(GAME, DEFAULT_CONNECT4_NETWORK, seed=4)
    evaluator = NetworkEvaluator(net, device="cuda")
    batches = [[GAME.from_moves([c, (c + k) % 7]) for c in range(7)] * 20 for k in range(2)]
    want = [evaluator.evaluate(states) for states in batches]
    errors: list[str] = []

    def hammer(k: int) -> None:
        for _ in range(50):
            priors, values = evaluator.evaluate(batches[k])
            same = np.allclose(priors, want[k][0], atol=1e-5) and np.allclose(values, want[k][1], atol=1e-5)
            if not same:
                errors.append(f"thread {k} got another batch's answers")

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_two_batches_in_flight_on_cuda_play_legal_games():
    net = build_network(GAME, DEFAULT_CONNECT4_NETWORK, seed=5)
    evaluator = NetworkEvaluator(net, device="cuda")
    driver = OverlappedSelfplay(GAME, evaluator, SETTINGS, np.random.default_rng(3), n_games=40)
    records = []
    while not driver.finished:
        records += driver.step()
    assert len(records) == 40 and driver.stats.games == 40
    for record in records:
        check_record(GAME, record)

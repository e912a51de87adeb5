"""The policy-value net, its evaluator, and checkpoints (round trip, and every refusal)."""

from __future__ import annotations

import io

import msgspec
import numpy as np
import pytest
import torch

from engine.checkpoint import (
    CheckpointMeta,
    load_checkpoint,
    load_checkpoint_file,
    make_meta,
    read_meta,
    save_checkpoint,
    save_checkpoint_file,
    weights_digest,
)
from engine.errors import CheckpointError
from engine.games import get_game
from engine.network import (
    DEFAULT_CONNECT4_NETWORK,
    NetworkConfig,
    NetworkEvaluator,
    build_network,
    inference_copy,
    masked_softmax,
    set_torch_threads,
)

C4 = get_game("connect4")
TTT = get_game("tictactoe")
SMALL = NetworkConfig(blocks=1, channels=8, value_hidden=8)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    set_torch_threads(1)


def trained_looking(net):
    """Give batch-norm statistics non-trivial values, as after training."""
    gen = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
    return net.eval()


def some_states(game, n, seed=0):
    rng = np.random.default_rng(seed)
    states, state = [], game.initial_state()
    while len(states) < n:
        if state.is_terminal():
            state = game.initial_state()
        states.append(state)
        legal = state.legal_moves()
        state = state.play(legal[int(rng.integers(len(legal)))])
    return states


def test_shapes_ranges_and_seeded_init():
    net = build_network(C4, DEFAULT_CONNECT4_NETWORK, seed=1).eval()
    x = torch.from_numpy(np.stack([s.planes() for s in some_states(C4, 5)]))
    with torch.inference_mode():
        logits, values = net(x)
    assert logits.shape == (5, 7) and values.shape == (5,)
    assert torch.all(values.abs() <= 1)
    assert weights_digest(net) == weights_digest(build_network(C4, DEFAULT_CONNECT4_NETWORK, seed=1))
    assert weights_digest(net) != weights_digest(build_network(C4, DEFAULT_CONNECT4_NETWORK, seed=2))


def test_masked_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 500.0, -500.0], [1.0, 1.0, 1.0]])
    legal = np.array([[True, False, True], [True, False, True], [False, False, False]])
    p = masked_softmax(logits, legal)
    assert p[0, 1] == 0 and p[0].sum() == pytest.approx(1)
    assert p[0, 2] / p[0, 0] == pytest.approx(np.e**2)
    assert p[1, 0] == pytest.approx(1.0) and p[1, 1] == 0
    assert np.all(p[2] == 0)


def test_evaluator_matches_the_net_and_masks_illegal_moves():
    net = trained_looking(build_network(C4, SMALL, seed=0))
    states = some_states(C4, 40) + [C4.from_moves([2] * 6)]  # column 3 full
    evaluator = NetworkEvaluator(net, device="cpu")
    priors, values = evaluator.evaluate(states)
    legal = np.stack([s.legal_mask() for s in states])
    assert priors.shape == (41, 7) and values.shape == (41,)
    assert np.all(priors[~legal] == 0)
    np.testing.assert_allclose(priors.sum(axis=1), 1.0, rtol=1e-5)
    with torch.inference_mode():
        logits, expected = net(torch.from_numpy(np.stack([s.planes() for s in states])))
    np.testing.assert_allclose(values, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(priors, masked_softmax(logits.numpy(), legal), atol=1e-5)
    one_priors, one_value = evaluator.evaluate_one(states[-1])
    np.testing.assert_allclose(one_priors, priors[-1], atol=1e-6)
    assert one_priors[2] == 0


def test_inference_copy_folds_batch_norm_without_changing_outputs():
    net = trained_looking(build_network(TTT, NetworkConfig(blocks=2, channels=8), seed=3))
    fused = inference_copy(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.from_numpy(np.stack([s.planes() for s in some_states(TTT, 12)]))
    with torch.inference_mode():
        (a, va), (b, vb) = net(x), fused(x)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(va, vb, atol=1e-5, rtol=1e-4)


def test_network_config_validation():
    with pytest.raises(ValueError):
        NetworkConfig(channels=0)
    assert msgspec.json.decode(msgspec.json.encode(SMALL), type=NetworkConfig) == SMALL


# -- checkpoints ---------------------------------------------------------------------------


def checkpoint(game=C4, config=SMALL, seed=0, **fields):
    net = trained_looking(build_network(game, config, seed=seed))
    meta = make_meta(net, game=game, game_params={"width": 7, "height": 6}, **fields)
    return net, meta, save_checkpoint(net, meta)


def test_round_trip_gives_identical_outputs_and_meta():
    net, meta, data = checkpoint(model_id="m-1", parent_id="m-0", step=300, generation=2)
    loaded, loaded_meta = load_checkpoint(data, expect_game=C4, expect_arch=SMALL)
    assert loaded_meta == meta and loaded_meta.digest == weights_digest(net)
    assert (loaded_meta.model_id, loaded_meta.parent_id, loaded_meta.step) == ("m-1", "m-0", 300)
    x = torch.from_numpy(np.stack([s.planes() for s in some_states(C4, 16)]))
    with torch.inference_mode():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert read_meta(data) == meta
    assert save_checkpoint(loaded, loaded_meta) == data  # deterministic bytes


def test_meta_digest_is_filled_in_and_checked_on_save():
    net = build_network(C4, SMALL, seed=0)
    meta = msgspec.structs.replace(make_meta(net, game=C4), digest="")
    assert read_meta(save_checkpoint(net, meta)).digest == weights_digest(net)
    with pytest.raises(CheckpointError, match="does not match"):
        save_checkpoint(net, msgspec.structs.replace(meta, digest="0" * 64))
    with pytest.raises(CheckpointError, match="does not describe"):
        save_checkpoint(net, msgspec.structs.replace(meta, architecture=DEFAULT_CONNECT4_NETWORK))


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: b"",
        lambda d: b"not a checkpoint at all",
        lambda d: d[: len(d) // 2],
        lambda d: d[:-40],
        lambda d: d[:100] + bytes(b ^ 0xFF for b in d[100:140]) + d[140:],
    ],
    ids=["empty", "garbage", "half", "tail-cut", "bytes-flipped"],
)
def test_corrupt_or_truncated_bytes_are_refused(damage):
    _, _, data = checkpoint()
    with pytest.raises(CheckpointError):
        load_checkpoint(damage(data))


def test_tampered_weights_fail_the_digest():
    net, meta, _ = checkpoint()
    with torch.no_grad():
        next(net.parameters())[0].flatten()[0] += 1e-3
    buffer = io.BytesIO()
    torch.save(
        {
            "format": "jetzero-checkpoint/1",
            "meta": msgspec.json.encode(meta).decode(),
            "weights": net.state_dict(),
        },
        buffer,
    )
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(buffer.getvalue())


def test_pickled_objects_are_never_loaded():
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    buffer = io.BytesIO()
    torch.save({"format": "jetzero-checkpoint/1", "meta": "{}", "weights": Payload()}, buffer)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(buffer.getvalue())


def test_wrong_game_and_wrong_architecture_are_refused():
    _, _, data = checkpoint()
    with pytest.raises(CheckpointError, match="is for connect4, not tictactoe"):
        load_checkpoint(data, expect_game=TTT)
    with pytest.raises(CheckpointError, match="is for connect4, not tictactoe"):
        load_checkpoint(data, expect_game="tictactoe")
    with pytest.raises(CheckpointError, match="planes"):
        load_checkpoint(data, expect_game=get_game("connect4", width=6, height=5))
    with pytest.raises(CheckpointError, match="architecture"):
        load_checkpoint(data, expect_arch=DEFAULT_CONNECT4_NETWORK)


def test_meta_that_lies_about_the_architecture_is_refused():
    net, meta, _ = checkpoint()
    lie = msgspec.structs.replace(meta, architecture=NetworkConfig(blocks=1, channels=9))
    buffer = io.BytesIO()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.save(
        {"format": "jetzero-checkpoint/1", "meta": msgspec.json.encode(lie).decode(), "weights": state},
        buffer,
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(buffer.getvalue())


def test_checkpoint_files_are_written_atomically(tmp_path):
    net, meta, data = checkpoint()
    path = tmp_path / "models" / "m.pt"
    assert save_checkpoint_file(path, net, meta) == data
    assert path.read_bytes() == data
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary left behind
    _, loaded_meta = load_checkpoint_file(path, expect_game=C4)
    assert loaded_meta == meta
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint_file(tmp_path / "missing.pt")
    assert isinstance(meta, CheckpointMeta)

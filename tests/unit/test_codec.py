"""Every event type round-trips through the codec; old versions are upcast; poison is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import codec
from streams.errors import DecodeError
from streams.games import (
    GameFinished,
    pack_policies,
    policy_array,
    upgrade_game_finished_v1,
    upgrade_game_finished_v2,
    upgrade_game_finished_v3,
    upgrade_game_finished_v4,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
_json_scalars = st.one_of(st.integers(-(2**31), 2**31), st.text(max_size=8), st.booleans())


def strategy_for(info: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    i = msgspec.inspect
    if isinstance(info, i.StrType):
        return st.text(max_size=12)
    if isinstance(info, i.BytesType):
        return st.binary(max_size=12)
    if isinstance(info, i.BoolType):
        return st.booleans()
    if isinstance(info, i.IntType):
        return st.integers(-(2**63), 2**63 - 1)
    if isinstance(info, i.FloatType):
        return st.floats(allow_nan=False)
    if isinstance(info, i.NoneType):
        return st.none()
    if isinstance(info, i.ListType):
        return st.lists(strategy_for(info.item_type), max_size=4)
    if isinstance(info, i.DictType):
        return st.dictionaries(st.text(max_size=6), strategy_for(info.value_type), max_size=3)
    if isinstance(info, i.AnyType):
        return _json_scalars
    if isinstance(info, i.UnionType):
        return st.one_of([strategy_for(t) for t in info.types])
    if isinstance(info, i.StructType):
        return st.builds(
            info.cls, **{f.name: strategy_for(f.type) for f in info.fields if f.name != "v"}
        )
    raise NotImplementedError(info)


EVENTS = st.one_of([strategy_for(msgspec.inspect.type_info(t)) for t in codec.EVENT_TYPES])


@settings(max_examples=300)
@given(EVENTS)
def test_every_event_round_trips(event):
    assert codec.decode(codec.encode(event)) == event


@settings(max_examples=100)
@given(EVENTS)
def test_every_event_has_a_dotted_tag_and_a_subject(event):
    assert "." in event.tag
    subject = codec.subject_of(msgspec.structs.replace(event, run="r1"))
    assert subject.endswith("." + event.tag)
    assert subject.split(".")[2] == "r1"


def test_stored_v1_game_finished_is_upcast_on_read():
    data = (FIXTURES / "game_finished_v1.msgpack").read_bytes()
    event = codec.decode(data)
    assert isinstance(event, GameFinished)
    assert event.v == 5 and event.outcome == 0 and event.stage == "" and event.root_values == []
    assert event.full_search == [] and event.policies == []
    assert event.moves == [4, 0, 8, 2, 6, 1, 5, 3, 7]
    # the v1 policies, carried through every step to the packed field
    assert np.array_equal(policy_array(event), np.full((9, 9), 0.1, np.float32))
    # the upgraded event re-encodes as the current version and decodes by the fast path
    assert codec.decode(codec.encode(event)) == event


def test_stored_v2_game_finished_is_upcast_on_read_without_root_values():
    data = (FIXTURES / "game_finished_v2.msgpack").read_bytes()
    assert msgspec.msgpack.decode(data)["v"] == 2
    event = codec.decode(data)
    assert isinstance(event, GameFinished)
    assert event.v == 5 and event.stage == "main" and event.root_values == []
    assert policy_array(event).shape == (len(event.moves), 9)
    assert codec.decode(codec.encode(event)) == event


def test_v2_upgrader_is_pure_and_keeps_recorded_values():
    base = {"type": "game.finished", "v": 2, "outcome": 1}
    out = upgrade_game_finished_v2(base)
    assert base == {"type": "game.finished", "v": 2, "outcome": 1}
    assert out == {**base, "v": 3, "root_values": []}
    assert upgrade_game_finished_v2({**base, "root_values": [0.5]})["root_values"] == [0.5]


def test_stored_v3_game_finished_is_upcast_on_read_as_fully_searched():
    data = (FIXTURES / "game_finished_v3.msgpack").read_bytes()
    assert msgspec.msgpack.decode(data)["v"] == 3
    event = codec.decode(data)
    assert isinstance(event, GameFinished)
    assert event.v == 5 and event.full_search == [] and len(event.root_values) == len(event.moves)
    assert np.array_equal(policy_array(event), np.full((9, 9), 0.1, np.float32))
    assert event.root_values[0] == -0.4  # recorded values survive the upgrade
    assert codec.decode(codec.encode(event)) == event


def test_v3_upgrader_is_pure_and_keeps_recorded_flags():
    base = {"type": "game.finished", "v": 3, "outcome": 1}
    out = upgrade_game_finished_v3(base)
    assert base == {"type": "game.finished", "v": 3, "outcome": 1}
    assert out == {**base, "v": 4, "full_search": []}
    assert upgrade_game_finished_v3({**base, "full_search": [True]})["full_search"] == [True]


def test_stored_v4_game_finished_is_upcast_on_read_with_packed_policies():
    data = (FIXTURES / "game_finished_v4.msgpack").read_bytes()
    raw = msgspec.msgpack.decode(data)
    assert raw["v"] == 4 and "policy_f32" not in raw
    event = codec.decode(data)
    assert isinstance(event, GameFinished)
    assert event.v == 5 and event.policies == [] and event.policy_width == 9
    policies = policy_array(event)
    assert policies.dtype == np.float32 and policies.shape == (4, 9)
    assert np.array_equal(policies, np.asarray(raw["policies"], np.float32))
    assert event.full_search == raw["full_search"] and event.root_values == raw["root_values"]
    assert codec.decode(codec.encode(event)) == event


def test_v4_upgrader_is_pure_and_packs_row_major_little_endian_float32():
    base = {"type": "game.finished", "v": 4, "policies": [[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]]}
    out = upgrade_game_finished_v4(base)
    assert base["policies"] == [[0.25, 0.75], [1.0, 0.0], [0.5, 0.5]] and base["v"] == 4
    assert out["v"] == 5 and out["policies"] == [] and out["policy_width"] == 2
    assert out["policy_f32"] == np.array([0.25, 0.75, 1.0, 0.0, 0.5, 0.5], "<f4").tobytes()
    empty = upgrade_game_finished_v4({"type": "game.finished", "v": 4, "policies": []})
    assert empty["policy_f32"] == b"" and empty["policy_width"] == 0
    with pytest.raises(ValueError):
        upgrade_game_finished_v4({**base, "policies": [[0.5, 0.5], [1.0]]})


def test_a_v4_game_with_ragged_policies_is_a_decode_error():
    raw = msgspec.msgpack.decode((FIXTURES / "game_finished_v4.msgpack").read_bytes())
    raw["policies"][1] = raw["policies"][1][:-1]
    with pytest.raises(DecodeError, match="upgrade from v4"):
        codec.decode(msgspec.msgpack.encode(raw))


def _finished(**fields) -> GameFinished:
    return GameFinished(id="g", time=0.0, run="r", game_id="g", game="tictactoe", moves=[4],
                        outcome=0, model_id="m0", **fields)


def test_policy_array_reads_the_packed_policies_and_refuses_malformed_ones():
    rows = [[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]]
    packed = pack_policies(rows)
    data, width = packed["policy_f32"], packed["policy_width"]
    got = policy_array(_finished(**packed))
    assert np.array_equal(got, np.asarray(rows, np.float32)) and got.dtype == np.float32
    assert policy_array(_finished()).shape == (0, 0)
    for bad in (
        _finished(policy_f32=data[:-4], policy_width=width),  # not whole rows
        _finished(policy_f32=data, policy_width=0),
        _finished(policy_f32=data, policy_width=-3),
        _finished(policies=[[1.0]]),  # a current event never carries unpacked policies
    ):
        with pytest.raises(ValueError):
            policy_array(bad)


def test_upgrader_is_pure_and_maps_every_result():
    base = {"type": "game.finished", "v": 1, "result": "1-0"}
    out = upgrade_game_finished_v1(base)
    assert base == {"type": "game.finished", "v": 1, "result": "1-0"}
    assert out["outcome"] == 1 and out["v"] == 2 and "result" not in out
    assert upgrade_game_finished_v1({**base, "result": "0-1"})["outcome"] == -1
    with pytest.raises(ValueError):
        upgrade_game_finished_v1({**base, "result": "2-0"})


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff\x00garbage", msgspec.msgpack.encode([1, 2, 3]),
     msgspec.msgpack.encode({"type": "loop.halted", "id": 5}),
     msgspec.msgpack.encode({"type": "game.finished", "v": 9, "id": "x"})],
)
def test_poison_is_a_decode_error(payload):
    with pytest.raises(DecodeError):
        codec.decode(payload)


def test_unknown_type_decodes_to_a_placeholder():
    event = codec.decode(msgspec.msgpack.encode({"type": "from.the_future", "id": "a", "run": "r"}))
    assert isinstance(event, codec.UnknownEvent) and event.type == "from.the_future"

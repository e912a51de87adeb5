"""The matchmaking protocol: every message round-trips; every malformed frame gets its code."""

from __future__ import annotations

import msgspec
import pytest

from handlers.matchmaking import protocol as p

CLIENT = [
    p.Hello(v=1), p.Hello(v=1, token="h-0123456789abcdef.sig", name="ann"),
    p.Seek(game="connect4", opponent="ai", level=3, seat=0), p.Seek(game="tictactoe", opponent="human"),
    p.Cancel(seek="s1"), p.Exhibition(game="connect4", levels=[1, 8]),
    p.Exhibition(game="tictactoe", models=["m-1", "m-2"]),
    p.Exhibition(game="connect4", models=["a", "b"], levels=[2, 3]),
    p.Move(game_id="g", move=3, version=4), p.Resign(game_id="g"), p.DrawOffer(game_id="g"),
    p.DrawAccept(game_id="g"), p.Claim(game_id="g"), p.Watch(game_id="g"), p.Games(), p.Ping(t=1.5),
]


@pytest.mark.parametrize("message", CLIENT, ids=lambda m: type(m).__name__)
def test_client_messages_round_trip(message):
    assert p.decode_client(p.encode(message)) == message
    assert p.decode_client(p.encode(message).decode()) == message  # text frames too


def test_server_messages_round_trip():
    rating = p.RatingView(rating=1500.0, rd=350.0, volatility=0.06, provisional=True)
    state = p.StateView(game_id="g", game="tictactoe", version=2, moves=[4, 0], board=[[2, 0, 0], [0, 1, 0],
                        [0, 0, 0]], to_move=0, legal=[1, 2, 3, 5, 6, 7, 8], status="playing")
    player = p.PlayerView(id="ai-1", name="AI level 1", kind="ai", level=1, rating=1400.0)
    messages = [
        p.Welcome(v=1, player="h-1", token="t", name="n", rating=rating, games=["g"]),
        p.Seeking(seek="s", game="connect4", range=[1400.0, 1600.0]), p.Cancelled(seek="s"),
        p.OfferAi(seek="s", level=4),
        p.Start(game_id="g", game="tictactoe", players=[player, player], seat=None, state=state),
        state, p.Over(game_id="g", result="draw", reason="agreement", ratings=[rating, None]),
        p.Over(game_id="g", result=1, reason="resign", ratings=[None, None]),
        p.GamesList(games=[p.GameSummary(game_id="g", game="connect4", players=[player], moves=3,
                                         status="playing")]),
        p.Error(code="bad_json", message="m", ref=None), p.Pong(t=None),
    ]
    for message in messages:
        assert p.decode_server(p.encode(message)) == message
        assert msgspec.json.decode(p.encode(message))["type"] == type(message).__struct_config__.tag


@pytest.mark.parametrize("frame, code, ref", [
    (b"{not json", "bad_json", None),
    (b"", "bad_json", None),
    (b"[1, 2]", "bad_json", None),
    (b'"hello"', "bad_json", None),
    (b"{}", "missing_field", None),
    (b'{"type": "teleport"}', "unknown_type", "teleport"),
    (b'{"type": 7}', "unknown_type", None),
    (b'{"type": "move", "game_id": "g", "version": 0}', "missing_field", "move"),
    (b'{"type": "hello"}', "missing_field", "hello"),
    (b'{"type": "cancel"}', "missing_field", "cancel"),
    (b'{"type": "move", "game_id": "g", "move": "e4", "version": 0}', "bad_field", "move"),
    (b'{"type": "move", "game_id": "g", "move": -1, "version": 0}', "bad_field", "move"),
    (b'{"type": "seek", "game": "chess", "opponent": "ai"}', "bad_field", "seek"),
    (b'{"type": "seek", "game": "connect4", "opponent": "ai", "level": 9}', "bad_field", "seek"),
    (b'{"type": "seek", "game": "connect4", "opponent": "ai", "seat": 2}', "bad_field", "seek"),
    (b'{"type": "exhibition", "game": "connect4", "levels": [1]}', "bad_field", "exhibition"),
    (b'{"type": "exhibition", "game": "connect4"}', "missing_field", "exhibition"),
    (b'{"type": "exhibition", "game": "connect4", "models": ["m-1"]}', "bad_field", "exhibition"),
    (b'{"type": "hello", "v": 2}', "bad_field", "hello"),
    (b'{"type": "watch", "game_id": ""}', "bad_field", "watch"),
])
def test_malformed_frames_get_their_code(frame, code, ref):
    error = p.decode_client(frame)
    assert isinstance(error, p.ProtocolError), error
    assert (error.code, error.ref) == (code, ref)
    assert error.message and "\n" not in error.message
    if code == "missing_field" and ref is not None:
        assert "missing field" in error.message


def test_unknown_fields_are_ignored_for_newer_clients():
    assert p.decode_client(b'{"type": "ping", "t": 2, "extra": true}') == p.Ping(t=2)

"""The matchmaking wire protocol, version 1 (``docs/matchmaking-protocol.md``): every message a
msgspec Struct, a tagged union on ``"type"``, and ONE decode point for client frames.

``decode_client(frame)`` turns any text or bytes into a client message or a ``ProtocolError``
naming the problem with a stable code (``bad_json``, ``unknown_type``, ``missing_field``,
``bad_field``); it never raises. ``encode`` writes any message; ``decode_server`` reads a server
message back (clients and tests).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "CLIENT_TYPES",
    "GAMES",
    "PROTOCOL_VERSIONS",
    "ClientMessage",
    "Error",
    "ProtocolError",
    "ServerMessage",
    "decode_client",
    "decode_server",
    "encode",
]

PROTOCOL_VERSIONS = (1,)
GAMES = ("connect4", "tictactoe")

GameName = Literal["connect4", "tictactoe"]
Level = Annotated[int, msgspec.Meta(ge=1, le=8)]
Seat = Literal[0, 1]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Result = int | str | None  # 0 | 1 | "draw" | None


class _Client(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=False):
    pass


class Hello(_Client, frozen=True, kw_only=True, tag="hello"):
    v: int
    token: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=40)] | None = None


class Seek(_Client, frozen=True, kw_only=True, tag="seek"):
    game: GameName
    opponent: Literal["ai", "human"]
    level: Level | None = None
    seat: Seat | None = None


class Cancel(_Client, frozen=True, kw_only=True, tag="cancel"):
    seek: Id


class Exhibition(_Client, frozen=True, kw_only=True, tag="exhibition"):
    """Two AIs play, the sender watches: the champion at two ``levels``, or two registry
    ``models`` (each at the level of the same index in ``levels``; without ``levels``, 8)."""

    game: GameName
    levels: Annotated[list[Level], msgspec.Meta(min_length=2, max_length=2)] | None = None
    models: Annotated[list[Id], msgspec.Meta(min_length=2, max_length=2)] | None = None


class Move(_Client, frozen=True, kw_only=True, tag="move"):
    game_id: Id
    move: Annotated[int, msgspec.Meta(ge=0, le=1000)]
    version: Annotated[int, msgspec.Meta(ge=0)]


class Resign(_Client, frozen=True, kw_only=True, tag="resign"):
    game_id: Id


class DrawOffer(_Client, frozen=True, kw_only=True, tag="draw_offer"):
    game_id: Id


class DrawAccept(_Client, frozen=True, kw_only=True, tag="draw_accept"):
    game_id: Id


class Claim(_Client, frozen=True, kw_only=True, tag="claim"):
    game_id: Id


class Watch(_Client, frozen=True, kw_only=True, tag="watch"):
    game_id: Id


class Games(_Client, frozen=True, kw_only=True, tag="games"):
    pass


class Ping(_Client, frozen=True, kw_only=True, tag="ping"):
    t: float | None = None


ClientMessage = (Hello | Seek | Cancel | Exhibition | Move | Resign | DrawOffer | DrawAccept | Claim
                 | Watch | Games | Ping)
CLIENT_TYPES: dict[str, type] = {
    t.__struct_config__.tag: t for t in ClientMessage.__args__  # type: ignore[attr-defined]
}


# -- server -> client -----------------------------------------------------------------------


class _Server(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class RatingView(msgspec.Struct, frozen=True, kw_only=True):
    rating: float
    rd: float
    volatility: float
    provisional: bool


class PlayerView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    kind: Literal["human", "ai"]
    level: int | None = None
    rating: float | None = None
    model: str | None = None  # the registry model an AI plays (an exhibition between models)


class Welcome(_Server, frozen=True, kw_only=True, tag="welcome"):
    v: int
    player: str
    token: str
    name: str
    rating: RatingView
    games: list[str] = []


class Seeking(_Server, frozen=True, kw_only=True, tag="seeking"):
    seek: str
    game: str
    range: list[float]


class Cancelled(_Server, frozen=True, kw_only=True, tag="cancelled"):
    seek: str


class OfferAi(_Server, frozen=True, kw_only=True, tag="offer_ai"):
    seek: str
    level: int


class StateView(_Server, frozen=True, kw_only=True, tag="state"):
    game_id: str
    game: str
    version: int
    moves: list[int]
    board: list[list[int]]
    to_move: int | None
    legal: list[int]
    status: Literal["playing", "over"]
    result: Result = None
    reason: str = ""
    draw_offer: int | None = None
    clocks: list[int] | None = None
    abandoned: int | None = None


class Start(_Server, frozen=True, kw_only=True, tag="start"):
    game_id: str
    game: str
    players: list[PlayerView]
    seat: int | None
    state: StateView


class Over(_Server, frozen=True, kw_only=True, tag="over"):
    game_id: str
    result: Result
    reason: str
    ratings: list[RatingView | None]


class GameSummary(msgspec.Struct, frozen=True, kw_only=True):
    game_id: str
    game: str
    players: list[PlayerView]
    moves: int
    status: str


class GamesList(_Server, frozen=True, kw_only=True, tag="games"):
    games: list[GameSummary]


class Error(_Server, frozen=True, kw_only=True, tag="error"):
    code: str
    message: str
    ref: str | None = None


class Pong(_Server, frozen=True, kw_only=True, tag="pong"):
    t: float | None = None


ServerMessage = (Welcome | Seeking | Cancelled | OfferAi | Start | StateView | Over | GamesList | Error
                 | Pong)


class ProtocolError(msgspec.Struct, frozen=True, kw_only=True):
    """A client frame that is not a valid message: what ``decode_client`` returns for it."""

    code: str
    message: str
    ref: str | None = None

    def error(self) -> Error:
        return Error(code=self.code, message=self.message, ref=self.ref)


_client_decoder = msgspec.json.Decoder(ClientMessage)
_any_decoder = msgspec.json.Decoder()
_server_decoder = msgspec.json.Decoder(ServerMessage)
_encoder = msgspec.json.Encoder()
_MISSING = re.compile(r"missing required field `([^`]+)`")


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def decode_server(frame: bytes | str) -> Any:
    return _server_decoder.decode(frame)


def decode_client(frame: bytes | str) -> ClientMessage | ProtocolError:
    """The one decode point of client frames: a message, or the error naming what is wrong."""
    try:
        message = _client_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _classify(frame, exc)
    if isinstance(message, Hello) and message.v not in PROTOCOL_VERSIONS:
        return ProtocolError(code="bad_field", ref="hello",
                             message=f"hello.v {message.v} is not spoken here; versions: "
                                     f"{', '.join(map(str, PROTOCOL_VERSIONS))}")
    if isinstance(message, Exhibition) and message.levels is None and message.models is None:
        return ProtocolError(code="missing_field", ref="exhibition",
                             message="missing field: an exhibition names two `levels` or two `models`")
    return message


def _classify(frame: bytes | str, exc: Exception) -> ProtocolError:
    try:
        data = _any_decoder.decode(frame)
    except msgspec.DecodeError as bad:
        return ProtocolError(code="bad_json", message=f"the frame is not valid JSON: {bad}")
    if not isinstance(data, dict):
        return ProtocolError(code="bad_json",
                             message=f"a frame is one JSON object, not a {type(data).__name__}")
    kind = data.get("type")
    if kind is None:
        return ProtocolError(code="missing_field", message="the frame has no \"type\"")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        return ProtocolError(code="unknown_type", ref=kind if isinstance(kind, str) else None,
                             message=f"unknown message type {kind!r}; known: {', '.join(CLIENT_TYPES)}")
    text = str(exc)
    missing = _MISSING.search(text)
    if missing:
        return ProtocolError(code="missing_field", ref=kind,
                             message=f"{kind}: missing field {missing.group(1)!r}")
    return ProtocolError(code="bad_field", ref=kind, message=f"{kind}: {text}")

"""What the server shows of its games, as protocol messages (``handlers.matchmaking.protocol``).

Pure: a room (``handlers.matchmaking.games.Room``) becomes a ``state``, a ``start`` or a
``games`` entry; a Glicko-2 rating becomes a ``RatingView``; the seats become the
``p2p.game_started`` seats and back.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.glicko2 import Rating
from handlers.matchmaking import games as rules
from handlers.matchmaking.protocol import GameSummary, PlayerView, RatingView, Start, StateView
from streams.matchmaking_events import P2pSeat

__all__ = ["event_seats", "player_view", "rating_view", "room_seats", "start_view", "state_view", "summary"]


def state_view(room: rules.Room, now: float | None = None) -> StateView:
    """The room as a ``state``; its ``clocks`` as they stand at ``now`` (the seat to move's
    running), or as of the turn's start without it."""
    clocks = rules.clock_left(room, now) if now is not None else (list(room.clocks) if room.clocks else None)
    return StateView(
        game_id=room.game_id, game=room.game, version=room.version, moves=list(room.moves),
        board=rules.board(room), to_move=rules.to_move(room), legal=rules.legal(room),
        status=room.status, result=room.result, reason=room.reason, draw_offer=room.draw_offer,
        clocks=clocks, abandoned=room.abandoned,
    )


def player_view(seat: rules.Seat, rating: float | None) -> PlayerView:
    return PlayerView(id=seat.id, name=seat.name, kind=seat.kind, level=seat.level,
                      rating=None if rating is None else round(rating, 1), model=seat.model or None)


def start_view(room: rules.Room, seat: int | None, rating_of: Callable[[rules.Seat], float | None],
               now: float | None = None) -> Start:
    return Start(game_id=room.game_id, game=room.game, seat=seat, state=state_view(room, now),
                 players=[player_view(s, rating_of(s)) for s in room.seats])


def summary(room: rules.Room, rating_of: Callable[[rules.Seat], float | None]) -> GameSummary:
    return GameSummary(game_id=room.game_id, game=room.game, moves=len(room.moves), status=room.status,
                       players=[player_view(s, rating_of(s)) for s in room.seats])


def rating_view(rating: Rating, provisional_rd: float) -> RatingView:
    return RatingView(rating=round(rating.rating, 2), rd=round(rating.rd, 2),
                      volatility=round(rating.volatility, 6), provisional=rating.provisional(provisional_rd))


def event_seats(room: rules.Room) -> list[P2pSeat]:
    return [P2pSeat(id=s.id, name=s.name, kind=s.kind, level=s.level, model=s.model) for s in room.seats]


def room_seats(seats: list[P2pSeat] | tuple[P2pSeat, ...]) -> tuple[rules.Seat, rules.Seat]:
    first, second = (rules.Seat(id=s.id, name=s.name, kind="ai" if s.kind == "ai" else "human",
                                level=s.level, model=s.model) for s in seats)
    return first, second

"""Server-authoritative game state, pure: a versioned ``Room`` and the changes a player may make.

Every function takes a room and returns the next room (its ``version`` one more) or a
``Refusal`` (a protocol error code and one line naming the problem) leaving the room as it was.
The rules are the engine's (``engine.games``); the board is drawn from the moves. Seats: 0 moves
first. Results: ``0`` / ``1`` (the winning seat) or ``"draw"``.

Clocks (optional, a ``TimeControl``): ``clocks`` is each seat's ms left as of ``turn_started``
(seconds, the caller's clock), when the seat to move began its turn; only that seat's clock runs.
A move charges the time since, then adds the increment. Time is always passed in (``now``): a
seat whose clock has run out loses with reason ``timeout`` (``flag``), at its next move or when
the server's timer (``flag_deadline``) calls.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import msgspec

from engine.errors import IllegalMove
from engine.games import Game, get_game
from engine.games.base import State

__all__ = [
    "Refusal",
    "Room",
    "Seat",
    "accept_draw",
    "board",
    "TimeControl",
    "claim",
    "clock_left",
    "finish",
    "flag",
    "flag_deadline",
    "move_budget_ms",
    "legal",
    "new_room",
    "offer_draw",
    "play",
    "replay",
    "resign",
    "set_absent",
    "to_move",
]

Result = int | str | None


class Seat(msgspec.Struct, frozen=True, kw_only=True):
    """Who sits in a seat: a human player id, or an AI level (``id`` ``ai-<level>``; with
    ``model``, the model id)."""

    id: str
    name: str
    kind: Literal["human", "ai"]
    level: int | None = None
    model: str = ""  # an AI playing a named registry model (an exhibition); "": the champion


class Room(msgspec.Struct, frozen=True, kw_only=True):
    game_id: str
    game: str
    seats: tuple[Seat, Seat]
    moves: tuple[int, ...] = ()
    version: int = 0
    status: Literal["playing", "over"] = "playing"
    result: Result = None
    reason: str = ""
    draw_offer: int | None = None
    abandoned: int | None = None  # the seat whose abandonment timer runs
    abandon_deadline: float | None = None  # when the opponent may claim the win
    rated: bool = True
    clocks: tuple[int, int] | None = None  # ms left per seat as of turn_started; None: no clocks
    increment_ms: int = 0  # added to a seat's clock after each of its moves
    turn_started: float = 0.0  # when the seat to move began its turn (seconds)


class TimeControl(msgspec.Struct, frozen=True, kw_only=True):
    """A game's clock: ``initial_ms`` per seat, ``increment_ms`` added after each move."""

    initial_ms: int
    increment_ms: int = 0


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


@cache
def engine_game(name: str) -> Game:
    return get_game(name)


def new_room(game_id: str, game: str, seats: tuple[Seat, Seat], *, rated: bool = True,
             clock: TimeControl | None = None, now: float = 0.0) -> Room:
    """A new game; with ``clock``, seat 0's clock runs from ``now``."""
    engine_game(game)  # UnknownGame for a name the engine does not know
    if clock is None:
        return Room(game_id=game_id, game=game, seats=seats, rated=rated)
    return Room(game_id=game_id, game=game, seats=seats, rated=rated,
                clocks=(clock.initial_ms, clock.initial_ms), increment_ms=clock.increment_ms,
                turn_started=now)


def clock_left(room: Room, now: float) -> list[int] | None:
    """Each seat's ms left at ``now`` (the seat to move's clock running), or None: no clocks."""
    if room.clocks is None:
        return None
    left = list(room.clocks)
    seat = to_move(room)
    if seat is not None:
        left[seat] = max(0, left[seat] - int(1000.0 * max(0.0, now - room.turn_started)))
    return left


def flag_deadline(room: Room) -> float | None:
    """When the seat to move runs out of time (the caller's clock), or None: no clock runs."""
    seat = to_move(room)
    if room.clocks is None or seat is None:
        return None
    return room.turn_started + room.clocks[seat] / 1000.0


MOVES_LEFT_GUESS = 30  # a clocked AI spends 1/30 of its time left per move, plus most of its increment


def move_budget_ms(room: Room, now: float) -> int | None:
    """What the seat to move can spend on this move without flagging (None: no clocks)."""
    left = clock_left(room, now)
    seat = to_move(room)
    if left is None or seat is None:
        return None
    return max(1, left[seat] // MOVES_LEFT_GUESS + room.increment_ms * 3 // 4)


def flag(room: Room, now: float) -> Room | None:
    """The game lost on time (reason ``timeout``) if the seat to move has run out at ``now``."""
    deadline = flag_deadline(room)
    if deadline is None or now < deadline:
        return None
    seat = to_move(room)
    assert seat is not None
    return finish(room, 1 - seat, "timeout", now)


STATES_KEPT = 8192  # engine states remembered by (game, moves): a live game's is always there
_states: dict[tuple[str, tuple[int, ...]], State] = {}


def _state(room: Room) -> State:
    """The engine's state after the room's moves: remembered, so a move costs one ``play``
    rather than a replay of the game (states are immutable)."""
    key = (room.game, room.moves)
    state = _states.get(key)
    if state is None:
        state = _remember(key, engine_game(room.game).from_moves(room.moves))
    return state


def _remember(key: tuple[str, tuple[int, ...]], state: State) -> State:
    _states[key] = state
    if len(_states) > STATES_KEPT:
        del _states[next(iter(_states))]  # the oldest: a finished or long-idle game's
    return state


def to_move(room: Room) -> int | None:
    return None if room.status == "over" else len(room.moves) % 2


def legal(room: Room) -> list[int]:
    return [] if room.status == "over" else _state(room).legal_moves()


def board(room: Room) -> list[list[int]]:
    """Rows from the top; 0 empty, 1 the first seat's stone, 2 the second's."""
    if room.game == "tictactoe":
        cells = [0] * 9
        for ply, move in enumerate(room.moves):
            cells[move] = 1 + ply % 2
        return [cells[r * 3:r * 3 + 3] for r in range(3)]
    game = engine_game(room.game)
    width, height = game.width, game.height  # type: ignore[attr-defined]
    grid = [[0] * width for _ in range(height)]
    filled = [0] * width
    for ply, column in enumerate(room.moves):
        grid[height - 1 - filled[column]][column] = 1 + ply % 2
        filled[column] += 1
    return grid


def _next(room: Room, **changes) -> Room:
    return msgspec.structs.replace(room, version=room.version + 1, **changes)


def _playing(room: Room) -> Refusal | None:
    if room.status == "over":
        return Refusal(code="game_over", message=f"game {room.game_id} is over ({room.reason})")
    return None


def play(room: Room, seat: int, move: int, version: int | None = None,
         now: float | None = None) -> Room | Refusal:
    """``seat`` plays ``move`` (at the state ``version`` it saw, when given) at ``now`` (for the
    clocks; without it no time is charged). A move after the mover's flag fell loses on time."""
    if (refused := _playing(room)) is not None:
        return refused
    if seat != to_move(room):
        return Refusal(code="not_your_turn", message=f"it is seat {to_move(room)}'s move, not seat {seat}'s")
    if version is not None and version != room.version:
        return Refusal(code="stale_version",
                       message=f"move made at version {version}; the game is at version {room.version}")
    try:
        after = _state(room).play(move)
    except IllegalMove as exc:
        return Refusal(code="illegal_move", message=str(exc))
    _remember((room.game, (*room.moves, move)), after)
    clocks = room.clocks
    if clocks is not None and now is not None:
        if (flagged := flag(room, now)) is not None:
            return flagged
        left = clock_left(room, now)
        assert left is not None
        left[seat] += room.increment_ms
        clocks = (left[0], left[1])
        room = msgspec.structs.replace(room, clocks=clocks, turn_started=now)
    moves = (*room.moves, move)
    draw_offer = None if room.draw_offer is not None and room.draw_offer != seat else room.draw_offer
    if after.is_terminal():
        outcome = after.outcome()
        result: Result = "draw" if outcome == 0 else (0 if outcome == 1 else 1)
        return _next(room, moves=moves, status="over", result=result,
                     reason="draw" if result == "draw" else "win", draw_offer=None, abandoned=None,
                     abandon_deadline=None)
    return _next(room, moves=moves, draw_offer=draw_offer)


def finish(room: Room, result: Result, reason: str, now: float | None = None) -> Room:
    """The game over; with ``now``, the clocks stopped as they stand then."""
    left = clock_left(room, now) if now is not None else None
    if left is not None and now is not None:
        room = msgspec.structs.replace(room, clocks=(left[0], left[1]), turn_started=now)
    return _next(room, status="over", result=result, reason=reason, draw_offer=None, abandoned=None,
                 abandon_deadline=None)


def resign(room: Room, seat: int, now: float | None = None) -> Room | Refusal:
    if (refused := _playing(room)) is not None:
        return refused
    return finish(room, 1 - seat, "resign", now)


def offer_draw(room: Room, seat: int, now: float | None = None) -> Room | Refusal:
    if (refused := _playing(room)) is not None:
        return refused
    if room.draw_offer == seat:
        return Refusal(code="not_allowed", message="your draw offer already stands")
    if room.draw_offer == 1 - seat:
        return accept_draw(room, seat, now)
    return _next(room, draw_offer=seat)


def accept_draw(room: Room, seat: int, now: float | None = None) -> Room | Refusal:
    if (refused := _playing(room)) is not None:
        return refused
    if room.draw_offer != 1 - seat:
        return Refusal(code="not_allowed", message="there is no draw offer from your opponent to accept")
    return finish(room, "draw", "agreement", now)


def set_absent(room: Room, seat: int | None, deadline: float | None) -> Room:
    """Start (``seat``, ``deadline``) or stop (None) the abandonment timer."""
    if room.status == "over" or (room.abandoned == seat and room.abandon_deadline == deadline):
        return room
    return _next(room, abandoned=seat, abandon_deadline=None if seat is None else deadline)


def claim(room: Room, seat: int, now: float) -> Room | Refusal:
    """``seat`` claims the win: only once the opponent's abandonment timer has run out."""
    if (refused := _playing(room)) is not None:
        return refused
    if room.abandoned != 1 - seat or room.abandon_deadline is None:
        return Refusal(code="not_allowed", message="your opponent has not left the game")
    if now < room.abandon_deadline:
        return Refusal(code="not_allowed",
                       message=f"your opponent may still come back: claim in "
                               f"{room.abandon_deadline - now:.0f} s")
    return finish(room, seat, "abandoned", now)


def replay(room: Room, moves: tuple[int, ...] | list[int], clocks: tuple[int, int] | None = None,
           now: float = 0.0) -> Room:
    """``room`` after ``moves`` (as recorded: each legal, in turn); IllegalMove on a bad record.
    With clocks, ``clocks`` are the ms left as recorded after the last move, and the seat to
    move's clock starts again at ``now``."""
    for move in moves:
        after = play(room, len(room.moves) % 2, int(move))
        if isinstance(after, Refusal):
            raise IllegalMove(f"game {room.game_id}: recorded move {move}: {after.message}")
        room = after
    if room.clocks is not None:
        room = msgspec.structs.replace(room, clocks=clocks or room.clocks, turn_started=now)
    return room

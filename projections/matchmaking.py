"""Matchmaking read model: the live games (rebuilt move by move), every player's name, and the
Glicko-2 ratings of every human and every AI level.

A rating is what the last ``p2p.game_finished`` recorded for that player (the server computes it
with :func:`rating_changes`, the one place the rating math is applied, from this state); the fold
takes it as written, so a change of settings never rewrites history. ``current`` is a rating as
of a time: the recorded one with the RD grown by each idle rating period since (Glicko-2 step
6). An AI level that has not played yet starts from its calibrated Elo, centred on 1500
(:func:`level_start`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from engine.glicko2 import Rating, idle, rate
from projections import persistent
from projections.base import BaseProjection
from streams import matchmaking_events as mm

__all__ = [
    "LiveGame",
    "MatchmakingProjection",
    "MatchmakingState",
    "PlayerRating",
    "ai_player",
    "current",
    "level_start",
    "rating_changes",
]


class LiveGame(msgspec.Struct, frozen=True, kw_only=True):
    game_id: str
    game: str
    seats: tuple[mm.P2pSeat, ...]
    moves: tuple[int, ...] = ()
    started: float = 0.0
    rated: bool = True
    exhibition: bool = False
    clock_initial_ms: int = 0  # the time control (0: no clocks)
    clock_increment_ms: int = 0
    clocks: tuple[int, ...] = ()  # ms left per seat as recorded after the last move


class PlayerRating(msgspec.Struct, frozen=True, kw_only=True):
    rating: float = 1500.0
    rd: float = 350.0
    volatility: float = 0.06
    games: int = 0
    last_time: float = 0.0  # when the rating was last changed

    def glicko(self) -> Rating:
        return Rating(rating=self.rating, rd=self.rd, volatility=self.volatility)


class MatchmakingState(msgspec.Struct, frozen=True, kw_only=True):
    live: persistent.Levels[str, LiveGame | None] = ()  # game id -> LiveGame; None once finished
    ratings: persistent.Levels[str, PlayerRating] = ()  # player id -> PlayerRating
    names: persistent.Levels[str, str] = ()  # player id -> last name seen
    started: int = 0
    finished: int = 0

    def live_games(self) -> list[LiveGame]:
        return [g for g in persistent.View(self.live).values() if g is not None]

    def game(self, game_id: str) -> LiveGame | None:
        return persistent.get(self.live, game_id)

    def rating(self, player: str) -> PlayerRating | None:
        return persistent.get(self.ratings, player)

    def name(self, player: str) -> str | None:
        return persistent.get(self.names, player)

    def all_ratings(self) -> dict[str, PlayerRating]:
        return dict(persistent.View(self.ratings).items())


def ai_player(level: int) -> str:
    return f"ai-{level}"


def level_start(elos: Mapping[int, float | None]) -> dict[int, float]:
    """Each AI level's first rating: its calibrated Elo centred on 1500, or (uncalibrated)
    200 points a level around 1500."""
    known = {n: e for n, e in elos.items() if e is not None}
    if known and len(known) == len(elos):
        mean = sum(known.values()) / len(known)
        return {n: 1500.0 + e - mean for n, e in known.items()}
    middle = (min(elos) + max(elos)) / 2 if elos else 0
    return {n: 1500.0 + 200.0 * (n - middle) for n in elos}


def current(state: MatchmakingState, player: str, now: float, *, period_s: float, tau: float,
            start: float = 1500.0) -> Rating:
    """``player``'s rating as of ``now``: the recorded one, its RD grown by idle periods."""
    known = state.rating(player)
    if known is None:
        return Rating(rating=start)
    periods = int(max(0.0, now - known.last_time) // period_s)
    return idle(known.glicko(), periods, tau) if periods else known.glicko()


def rating_changes(
    state: MatchmakingState,
    seats: Sequence[mm.P2pSeat],
    result: str,
    now: float,
    *,
    period_s: float,
    tau: float,
    starts: Mapping[int, float],
) -> list[mm.P2pRatingChange]:
    """Both seats' rating changes after a game ending ``result`` (``"0"``, ``"1"``, ``"draw"``):
    each side rated by one Glicko-2 period against the other as it stood before the game."""
    before = [current(state, s.id, now, period_s=period_s, tau=tau,
                      start=starts.get(s.level or 0, 1500.0) if s.kind == "ai" else 1500.0) for s in seats]
    scores = (0.5, 0.5) if result == "draw" else ((1.0, 0.0) if result == "0" else (0.0, 1.0))
    changes = []
    for i, seat in enumerate(seats):
        after = rate(before[i], [(before[1 - i], scores[i])], tau)
        changes.append(mm.P2pRatingChange(
            player=seat.id, rating=after.rating, rd=after.rd, volatility=after.volatility,
            before_rating=before[i].rating, before_rd=before[i].rd, before_volatility=before[i].volatility,
        ))
    return changes


class MatchmakingProjection(BaseProjection[MatchmakingState]):
    name = "matchmaking"
    state_type = MatchmakingState
    version = 1

    def initial(self) -> MatchmakingState:
        return MatchmakingState()

    def on_p2p_game_started(self, state: MatchmakingState, event: mm.P2pGameStarted) -> MatchmakingState:
        if state.game(event.game_id) is not None:
            return state
        live = LiveGame(game_id=event.game_id, game=event.game, seats=tuple(event.seats),
                        started=event.time, rated=event.rated, exhibition=event.exhibition,
                        clock_initial_ms=event.clock_initial_ms, clock_increment_ms=event.clock_increment_ms)
        names = state.names
        for seat in event.seats:
            if seat.kind == "human" and seat.name:
                names = persistent.put(names, seat.id, seat.name)
        return msgspec.structs.replace(state, live=persistent.put(state.live, event.game_id, live),
                                       names=names, started=state.started + 1)

    def on_p2p_move_played(self, state: MatchmakingState, event: mm.P2pMovePlayed) -> MatchmakingState:
        game = state.game(event.game_id)
        if game is None or event.ply != len(game.moves):  # a finished game, or a move already folded
            return state
        moved = msgspec.structs.replace(game, moves=(*game.moves, event.move),
                                        clocks=tuple(event.clocks) or game.clocks)
        return msgspec.structs.replace(state, live=persistent.put(state.live, event.game_id, moved))

    def on_p2p_game_finished(self, state: MatchmakingState, event: mm.P2pGameFinished) -> MatchmakingState:
        if state.game(event.game_id) is None:
            return state
        ratings = state.ratings
        for change in event.ratings:
            if change is None:
                continue
            known = state.rating(change.player)
            ratings = persistent.put(ratings, change.player, PlayerRating(
                rating=change.rating, rd=change.rd, volatility=change.volatility,
                games=(known.games if known else 0) + 1, last_time=event.time))
        return msgspec.structs.replace(state, live=persistent.put(state.live, event.game_id, None),
                                       ratings=ratings, finished=state.finished + 1)

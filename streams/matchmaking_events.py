"""Events of the matchmaking surface (``handlers/matchmaking``) on the ``EVENTS`` stream.

Each game's events live on its own aggregate (``names.p2p_game_aggregate``): ``p2p.game_started``
(the seats), one ``p2p.move_played`` per move, and ``p2p.game_finished`` (the result and each
rated player's rating change). A game in progress is rebuilt from them at server start. Ids are
derived from the game id (``streams.envelope.derived_id``), so a retried append is deduplicated.
New fields get defaults; types never change.
"""

from __future__ import annotations

import msgspec

from streams import names
from streams.envelope import Event


class P2pSeat(msgspec.Struct, frozen=True, kw_only=True):
    """Who sits in a seat: a human (``kind`` human, id ``h-...``) or an AI level (``ai-<n>``)."""

    id: str
    name: str = ""
    kind: str = "human"  # human | ai
    level: int | None = None
    model: str = ""  # an AI playing a named registry model (an exhibition); "": the champion


class P2pRatingChange(msgspec.Struct, frozen=True, kw_only=True):
    """One player's Glicko-2 rating before and after a game."""

    player: str
    rating: float
    rd: float
    volatility: float
    before_rating: float = 1500.0
    before_rd: float = 350.0
    before_volatility: float = 0.06


class _P2pGame(Event, frozen=True, kw_only=True):
    game_id: str

    def aggregate(self) -> str:
        return names.p2p_game_aggregate(self.game_id)


class P2pGameStarted(_P2pGame, frozen=True, kw_only=True, tag="p2p.game_started"):
    game: str
    seats: list[P2pSeat]
    rated: bool = True
    exhibition: bool = False
    clock_initial_ms: int = 0  # the time control; 0: no clocks
    clock_increment_ms: int = 0


class P2pMovePlayed(_P2pGame, frozen=True, kw_only=True, tag="p2p.move_played"):
    ply: int  # 0 for the first move
    move: int
    seat: int
    think_ms: float = 0.0  # an AI's thinking time
    model_id: str = ""  # the net an AI played
    clocks: list[int] = []  # with clocks: ms left per seat after the move (increment included)


class P2pGameFinished(_P2pGame, frozen=True, kw_only=True, tag="p2p.game_finished"):
    result: str  # "0" | "1" (the winning seat) | "draw"
    reason: str  # win | draw | resign | agreement | abandoned | timeout | deserted
    plies: int = 0
    ratings: list[P2pRatingChange | None] = []  # per seat; None for an unrated side


class P2pCalibratedLevel(msgspec.Struct, frozen=True, kw_only=True):
    """One AI level as calibrated: its settings and its Elo (± the 95% half-width) relative
    to the random player."""

    number: int
    kind: str  # raw_policy | search
    temperature: float = 0.0
    blunder_rate: float = 0.0
    simulations: int = 0
    think_ms: int = 0
    elo: float = 0.0
    ci95: float = 0.0


class P2pLevelsCalibrated(Event, frozen=True, kw_only=True, tag="p2p.levels_calibrated"):
    """``jetzero p2p calibrate``: the level table written to the config, from a Bradley–Terry
    ladder of the levels and the reference players (random at 0 Elo, pure MCTS)."""

    game: str
    model_id: str
    levels: list[P2pCalibratedLevel]
    references: dict[str, float] = {}  # reference player -> Elo
    games: int = 0  # games the final ladder was fitted on
    rounds: int = 1  # measure-and-respace rounds
    config_path: str = ""

    def aggregate(self) -> str:
        return names.P2P_LEVELS_AGGREGATE

MatchmakingEvent = P2pGameStarted | P2pMovePlayed | P2pGameFinished | P2pLevelsCalibrated

"""The matchmaking settings (``config/p2p.yaml``): server, pools, ratings, AI, levels.

``P2PConfig`` is a frozen msgspec Struct read with :func:`load_p2p_config` (the one loader,
``streams.config.load_config``: unknown keys and bad values refused with ``ConfigError`` naming
the field). The log the server writes to is the loop config's ``nats:`` and ``run:`` (their one
home), as for every other command. The ``ai:`` section is ``handlers.matchmaking.ai.AiSettings``
and the ``levels:`` table is ``handlers.matchmaking.levels.LevelSettings`` (rewritten by
``jetzero p2p calibrate``). ``clock:`` (and ``game_clocks:`` per game) is the optional time
control, absent by default: no clocks. Every knob is commented in the shipped YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from handlers.matchmaking.ai import AiSettings
from handlers.matchmaking.games import TimeControl, engine_game
from handlers.matchmaking.levels import DEFAULT_LEVELS, LevelSettings, levels_by_number
from streams.config import load_config

__all__ = [
    "ClockSettings",
    "DEFAULT_P2P_PATH",
    "P2PConfig",
    "PoolSettings",
    "RatingSettings",
    "ServerSettings",
    "load_p2p_config",
]

DEFAULT_P2P_PATH = Path("config/p2p.yaml")


def _positive(where: str, *values: float) -> None:
    for value in values:
        if not value > 0:
            raise ValueError(f"{where} must be positive, got {value}")


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    # Origins allowed to open the socket (the page's own origin is added automatically);
    # "*" allows any; a client sending no Origin (not a browser) is always allowed.
    allowed_origins: list[str] = []
    max_frame_bytes: int = 4096  # a larger frame is answered `too_large` (64x larger closes: 1009)
    max_connections: int = 2000
    rate_soft_per_s: int = 20  # frames per second past which frames are answered `rate_limited`
    rate_hard_per_s: int = 60  # frames per second past which the connection is closed (1008)
    ping_interval_s: float = 20.0  # WebSocket keepalive pings
    ping_timeout_s: float = 20.0
    hello_timeout_s: float = 30.0  # a connection that sends no hello in this time is closed
    idle_s: float = 600.0  # a connection silent this long is closed (the idle broom)
    broom_every_s: float = 5.0
    abandon_s: float = 60.0  # after a player left a game, the opponent may claim the win
    deserted_s: float = 3600.0  # a game every human player has left this long ends unrated (`deserted`)
    token_secret: str | None = None  # JETZERO_P2P_SECRET wins; neither: generated next to nats data

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be 0..65535 (0: any free port), got {self.port}")
        _positive("max_frame_bytes, max_connections, rate limits", self.max_frame_bytes,
                  self.max_connections, self.rate_soft_per_s, self.rate_hard_per_s)
        if self.rate_hard_per_s < self.rate_soft_per_s:
            raise ValueError("rate_hard_per_s must be at least rate_soft_per_s")
        _positive("ping_interval_s, ping_timeout_s, hello_timeout_s, idle_s, broom_every_s, abandon_s, "
                  "deserted_s", self.ping_interval_s, self.ping_timeout_s, self.hello_timeout_s, self.idle_s,
                  self.broom_every_s, self.abandon_s, self.deserted_s)


class PoolSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Lichess-style waves: the rating range starts at ``initial_range`` and grows by ``step``
    every ``every_s`` seconds of waiting, up to ``max_range``."""

    initial_range: float = 100.0
    step: float = 50.0
    every_s: float = 5.0
    max_range: float = 500.0
    offer_ai_after_s: float = 30.0  # then the nearest AI level is offered instead
    tick_s: float = 1.0  # how often the pool is paired

    def __post_init__(self) -> None:
        _positive("pools: initial_range, every_s, offer_ai_after_s, tick_s", self.initial_range,
                  self.every_s, self.offer_ai_after_s, self.tick_s)
        if self.step < 0 or self.max_range < self.initial_range:
            raise ValueError("pools: step must be >= 0 and max_range >= initial_range")


class RatingSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tau: float = 0.5  # Glicko-2 system constant (volatility's rate of change)
    period_s: float = 86400.0  # a rating period: each idle one grows the RD
    provisional_rd: float = 110.0  # provisional while RD is above this (lichess)

    def __post_init__(self) -> None:
        _positive("ratings: tau, period_s, provisional_rd", self.tau, self.period_s, self.provisional_rd)


class ClockSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A time control: ``initial_s`` per seat, ``increment_s`` added after each move."""

    initial_s: float
    increment_s: float = 0.0

    def __post_init__(self) -> None:
        _positive("clock: initial_s", self.initial_s)
        if self.increment_s < 0:
            raise ValueError(f"clock: increment_s must be >= 0, got {self.increment_s}")

    def time_control(self) -> TimeControl:
        return TimeControl(initial_ms=round(1000 * self.initial_s),
                           increment_ms=round(1000 * self.increment_s))


class P2PConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    server: ServerSettings = ServerSettings()
    pools: PoolSettings = PoolSettings()
    ratings: RatingSettings = RatingSettings()
    ai: AiSettings = AiSettings()
    levels: list[LevelSettings] = msgspec.field(default_factory=lambda: list(DEFAULT_LEVELS))
    clock: ClockSettings | None = None  # every game's time control; None: no clocks
    game_clocks: dict[str, ClockSettings | None] = {}  # per game (connect4, ...), overriding `clock`

    def __post_init__(self) -> None:
        levels_by_number(self.levels)  # exactly 1-8, each once
        for name in self.game_clocks:
            try:
                engine_game(name)
            except ValueError as exc:  # UnknownGame
                raise ValueError(f"game_clocks: {exc}") from None

    def time_control(self, game: str) -> TimeControl | None:
        """The clock of a new ``game``: its own, else the global one, else None (no clocks)."""
        chosen = self.game_clocks[game] if game in self.game_clocks else self.clock
        return None if chosen is None else chosen.time_control()


def load_p2p_config(path: str | Path = DEFAULT_P2P_PATH,
                    overrides: dict[str, Any] | None = None) -> P2PConfig:
    return load_config(path, P2PConfig, overrides)

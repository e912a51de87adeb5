"""The games: the interface (``Game``, ``State``, ``Player``) and a registry by name.

``get_game("connect4", width=7, height=6)`` builds a game from the name and parameters
that configs and events carry; ``GAMES`` lists the names it knows.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.errors import EngineError
from engine.games.base import Game, Player, State
from engine.games.connect4 import ConnectFour, ConnectFourState
from engine.games.tictactoe import TicTacToe, TicTacToeState

__all__ = [
    "GAMES",
    "ConnectFour",
    "ConnectFourState",
    "Game",
    "Player",
    "State",
    "TicTacToe",
    "TicTacToeState",
    "UnknownGame",
    "get_game",
]

_FACTORIES: dict[str, tuple[Callable[..., Game], frozenset[str]]] = {
    "tictactoe": (TicTacToe, frozenset()),
    "connect4": (ConnectFour, frozenset({"width", "height"})),
}
GAMES: tuple[str, ...] = tuple(_FACTORIES)


class UnknownGame(EngineError, ValueError):
    """A game name that is not in the registry, or parameters that game does not take."""


def get_game(name: str, **params: int) -> Game:
    """The game called ``name`` built with ``params`` (connect4: ``width``, ``height``)."""
    try:
        factory, accepted = _FACTORIES[name]
    except (KeyError, TypeError):
        raise UnknownGame(f"unknown game {name!r}; known games: {', '.join(GAMES)}") from None
    unexpected = sorted(set(params) - accepted)
    if unexpected:
        raise UnknownGame(
            f"game {name!r} takes no parameter(s) {', '.join(unexpected)}; "
            f"it accepts: {', '.join(sorted(accepted)) or 'none'}"
        )
    return factory(**params)

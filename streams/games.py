"""Events of the ``GAMES`` stream: finished selfplay games, the raw training data.

``game.finished`` is at schema version 4. Version 1 stored ``result`` as a string
("1-0", "0-1", "1/2-1/2") and had no curriculum ``stage``; version 2 had no
``root_values``; version 3 had no ``full_search`` (every move was fully searched).
The ``upgrade_game_finished_v*`` functions turn such payloads into the next version on read
(the log is never rewritten).
"""

from __future__ import annotations

from typing import Any, ClassVar

from streams import names
from streams.envelope import Event


class GameFinished(Event, frozen=True, kw_only=True, tag="game.finished"):
    v: int = 4
    game_id: str
    game: str
    moves: list[int]
    policies: list[list[float]]  # the search's visit distribution at every move
    root_values: list[float] = []  # the search's root value (side to move) at every move
    # per searched move: full search (a training sample) or fast (playout cap randomization);
    # empty: every move was fully searched
    full_search: list[bool] = []
    outcome: int  # +1 first player won, -1 second player won, 0 draw
    model_id: str
    generation: int = 0
    stage: str = ""
    search: dict[str, Any] = {}
    worker: str = ""

    STREAM: ClassVar[str] = names.GAMES

    def aggregate(self) -> str:
        return self.worker or "selfplay"


_RESULTS_V1 = {"1-0": 1, "0-1": -1, "1/2-1/2": 0}


def upgrade_game_finished_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 → 2: ``result`` string becomes the integer ``outcome``; ``stage`` added."""
    out = {k: v for k, v in payload.items() if k != "result"}
    result = payload.get("result")
    if result not in _RESULTS_V1:
        raise ValueError(f"game.finished v1 has unknown result {result!r}")
    out["outcome"] = _RESULTS_V1[result]
    out.setdefault("stage", "")
    out["v"] = 2
    return out


def upgrade_game_finished_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 2 → 3: ``root_values`` added (empty: the search values were not recorded)."""
    return {**payload, "root_values": payload.get("root_values", []), "v": 3}


def upgrade_game_finished_v3(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 3 → 4: ``full_search`` added (empty: every move was fully searched)."""
    return {**payload, "full_search": payload.get("full_search", []), "v": 4}


GamesEvent = GameFinished

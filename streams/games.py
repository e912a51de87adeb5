"""Events of the ``GAMES`` stream: finished selfplay games, the raw training data.

``game.finished`` is at schema version 5. Version 1 stored ``result`` as a string
("1-0", "0-1", "1/2-1/2") and had no curriculum ``stage``; version 2 had no
``root_values``; version 3 had no ``full_search`` (every move was fully searched); version 4
stored the search policies as ``policies``, one list of floats per searched move (hundreds of
float objects to build for every game read), where version 5 packs them into ``policy_f32``
(little-endian float32, row-major, searched moves × ``policy_width`` actions) and leaves
``policies`` empty. The ``upgrade_game_finished_v*`` functions turn such payloads into the next
version on read (the log is never rewritten). Readers get the policies from ``policy_array``
only; writers pack them with ``pack_policies``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from streams import names
from streams.envelope import Event


class GameFinished(Event, frozen=True, kw_only=True, tag="game.finished"):
    v: int = 5
    game_id: str
    game: str
    moves: list[int]
    # the search's visit distribution at every searched move, packed: little-endian float32,
    # row-major [searched moves, policy_width]; read it with ``policy_array``
    policy_f32: bytes = b""
    policy_width: int = 0  # actions per policy row (the game's action count)
    policies: list[list[float]] = []  # version 4 and older: the same, unpacked (empty since v5)
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


_F32 = np.dtype("<f4")


def pack_policies(rows: Sequence[Sequence[float]] | np.ndarray) -> dict[str, Any]:
    """The ``game.finished`` fields (``policy_f32``, ``policy_width``) holding a game's search
    policies, one row per searched move: ``GameFinished(..., **pack_policies(rows))``."""
    array = np.asarray(rows, dtype=_F32)
    if array.size == 0:
        return {"policy_f32": b"", "policy_width": int(array.shape[1]) if array.ndim == 2 else 0}
    if array.ndim != 2:
        raise ValueError(f"policies must be rows of equal length, got shape {array.shape}")
    return {"policy_f32": array.tobytes(), "policy_width": int(array.shape[1])}


def policy_array(event: GameFinished) -> np.ndarray:
    """The game's search policies: a read-only float32 array [searched moves, actions], read
    without copying from the packed field. ``ValueError`` says what is malformed."""
    if event.policies:
        raise ValueError(f"game.finished v{event.v} carries unpacked policies")
    width, data = event.policy_width, event.policy_f32
    if width < 0 or (width == 0 and data) or (width and len(data) % (_F32.itemsize * width)):
        raise ValueError(f"{len(data)} policy bytes are not rows of {width} float32 values")
    if not data:
        return np.empty((0, width), _F32)
    return np.frombuffer(data, _F32).reshape(-1, width)


def upgrade_game_finished_v4(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 4 → 5: ``policies`` (a list of float lists) packed into ``policy_f32``."""
    return {**payload, **pack_policies(payload.get("policies", [])), "policies": [], "v": 5}


GamesEvent = GameFinished

"""The data snapshot a trained candidate learns from: a run's finished selfplay games as JSON lines.

A snapshot is what ``jetzero events export --stream GAMES --run RUN [--until SEQ]`` writes (one
``{"seq", "subject", "stored_at", "event"}`` object per line, the event as plain data): the one
exporter, so a snapshot can be made by hand, committed beside a test, or exported by the
pipeline for a validation. The same log range exports the same bytes; ``digest`` (sha256 of
the file) names the data a candidate was trained on.

``read_snapshot(path, game)`` decodes it with the codec's upcasting (old ``game.finished``
versions read as today's) and checks every game the way sync does before a game becomes
training data (``check_record``). Lines of other event types are skipped. A missing, empty or
corrupt file, or one without a single game of ``game``, raises ``InvalidSnapshot`` naming the
file and the line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import msgspec

from engine.games.base import Game
from engine.selfplay import GameRecord, InvalidGameRecord, check_record
from handlers.loop.sync import record_of
from streams.codec import upcast
from streams.errors import DecodeError, JetzeroError
from streams.games import GameFinished

__all__ = ["InvalidSnapshot", "Snapshot", "read_snapshot", "snapshot_digest"]

GAME_FINISHED = "game.finished"
HOW_TO_EXPORT = "jetzero events export --stream GAMES --run RUN > FILE"


class InvalidSnapshot(JetzeroError):
    """A data snapshot that is missing, empty, corrupt, or holds no game of the validation's game."""


@dataclass(frozen=True)
class Snapshot:
    path: str
    digest: str  # sha256 hex of the file's bytes
    records: tuple[GameRecord, ...]  # the games, in the file's (log) order
    first_seq: int
    last_seq: int

    @property
    def games(self) -> int:
        return len(self.records)


def snapshot_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _game_of(line: bytes, where: str) -> tuple[int, GameFinished] | None:
    """The line's (seq, game), or None for another event type; ``InvalidSnapshot`` if corrupt."""
    try:
        item = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise InvalidSnapshot(f"{where}: not JSON ({exc})") from None
    event = item.get("event") if isinstance(item, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise InvalidSnapshot(f"{where}: not an exported event (a line of `{HOW_TO_EXPORT}`)")
    if event["type"] != GAME_FINISHED:
        return None
    try:
        game = upcast(event, GameFinished)
    except DecodeError as exc:
        raise InvalidSnapshot(f"{where}: {exc}") from None
    seq = item.get("seq")
    return (seq if isinstance(seq, int) else 0), game  # type: ignore[return-value]


def read_snapshot(path: str | Path, game: Game) -> Snapshot:
    """The games of ``game`` in the snapshot at ``path`` (see the module docstring)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidSnapshot(f"snapshot {path}: {exc.strerror or exc}") from None
    records: list[GameRecord] = []
    seqs: list[int] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"snapshot {path} line {number}"
        found = _game_of(line, where)
        if found is None:
            continue
        seq, event = found
        if event.game != game.name:
            raise InvalidSnapshot(f"{where}: a {event.game} game, but the validation is of {game.name}")
        try:
            record = record_of(event)
            check_record(game, record)
        except InvalidGameRecord as exc:
            raise InvalidSnapshot(f"{where}: invalid game record: {exc}") from None
        records.append(record)
        seqs.append(seq)
    if not records:
        what = "is empty" if not data.strip() else "holds no game.finished event"
        raise InvalidSnapshot(f"snapshot {path} {what}: export a run's games with `{HOW_TO_EXPORT}`")
    return Snapshot(path=str(path), digest=snapshot_digest(data), records=tuple(records),
                    first_seq=min(seqs), last_seq=max(seqs))

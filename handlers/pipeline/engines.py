"""The client side of the engine protocol: an engine process per side, started from a checkout.

``EngineSide`` names a side (its label, the root of its checkout, its model file);
``EngineProcess`` starts ``python -m handlers.pipeline.engine_process`` in that root (that
checkout's code, not the orchestrator's), says hello, checks that the engine really runs from
that root, sets game, threads, seed and model, and then asks for moves (``go``: several
positions in one request, searched together) and for speed figures (``bench``). A reader thread
turns stdout into lines with a deadline; an engine that exits, hangs or answers out of turn
raises ``EngineFailed`` with the tail of its stderr. ``close`` says ``quit`` and kills it if it
does not go; engines die with the orchestrator (``die_with_parent``).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec

from handlers.pipeline.protocol import (
    HELLO,
    MODULE,
    BenchFigures,
    ProtocolError,
    format_position,
    parse_bench,
    parse_bestmove,
)
from streams.errors import JetzeroError
from streams.server import die_with_parent

__all__ = ["EngineFailed", "EngineMissing", "EngineProcess", "EngineSide", "ModelInfo"]


class EngineFailed(JetzeroError):
    """An engine process exited, hung, or broke the protocol (the message has its stderr's tail)."""


class EngineMissing(JetzeroError):
    """A checkout has no engine module (a base ref older than the pipeline)."""


class EngineSide(msgspec.Struct, frozen=True, kw_only=True):
    label: str  # candidate | base
    root: str  # the checkout whose code this side runs
    model: str  # checkpoint file


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    model_id: str
    digest: str
    arch: str


def engine_module_path(root: str | Path) -> Path:
    return Path(root) / (MODULE.replace(".", "/") + ".py")


class EngineProcess:
    """One running engine (use as a context manager, or ``close()``)."""

    def __init__(self, side: EngineSide, game_line: str, *, threads: int = 1, seed: int = 0,
                 timeout: float = 120.0, python: str = sys.executable):
        self.side = side
        self.timeout = timeout
        if not engine_module_path(side.root).is_file():
            raise EngineMissing(
                f"the {side.label} checkout ({side.root}) has no {MODULE}: its code predates the "
                f"engine protocol, so the pipeline cannot play it")
        self._stderr = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "PYTHONPATH": side.root, "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(
            [python, "-m", MODULE], cwd=side.root, env=env, text=True, bufsize=1,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"engine-{side.label}").start()
        try:
            self._hello()
            self.request(game_line, "ok game")
            self.request(f"setoption threads {threads}", "ok threads")
            self.request(f"setoption seed {seed}", "ok seed")
            self.model = self._model(side.model)
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def stderr_tail(self, chars: int = 600) -> str:
        try:
            self._stderr.seek(0)
            return " | ".join(self._stderr.read()[-chars:].strip().splitlines()[-6:])
        except (OSError, ValueError):
            return ""

    def _fail(self, what: str) -> EngineFailed:
        tail = self.stderr_tail()
        return EngineFailed(f"{self.side.label} engine ({self.side.root}): {what}"
                            + (f"; stderr: {tail}" if tail else ""))

    def send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._fail(f"exited (code {self.proc.poll()}) before {line.split()[0]!r}") from None

    def readline(self) -> str:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise self._fail(f"no answer within {self.timeout:g} s") from None
        if line is None:
            raise self._fail(f"exited (code {self.proc.wait()})")
        return line

    def request(self, line: str, expect: str) -> str:
        """Send ``line`` and return the one answer starting with ``expect`` (``error`` raises)."""
        self.send(line)
        answer = self.readline()
        if not answer.startswith(expect):
            raise self._fail(f"{line.split()[0]!r} answered {answer!r}")
        return answer

    def _hello(self) -> None:
        self.send(HELLO)
        fields: dict[str, str] = {}
        while (line := self.readline()) != "ready":
            words = line.split(maxsplit=2)
            if words[:1] != ["id"] or len(words) < 3:
                raise self._fail(f"hello answered {line!r}")
            fields[words[1]] = words[2]
        root = Path(fields.get("root", "?")).resolve()
        if root != Path(self.side.root).resolve():
            raise self._fail(f"runs the code of {root}, not of its checkout {self.side.root}")

    def _model(self, path: str) -> ModelInfo:
        words = self.request(f"model {path}", "ok model").split()
        return ModelInfo(model_id=words[2], digest=words[4], arch=words[6] if len(words) > 6 else "")

    def best_moves(self, positions: Sequence[tuple[str, Sequence[int]]], simulations: int) -> list[int]:
        """One move per ``(game id, moves so far)``, the positions searched together."""
        for game_id, moves in positions:
            self.send(format_position(moves, game_id))
        self.send(f"go simulations {simulations}")
        return self.read_moves(positions)

    def read_moves(self, positions: Sequence[tuple[str, Sequence[int]]]) -> list[int]:
        moves = []
        for game_id, _ in positions:
            try:
                move, answered = parse_bestmove(self.readline())
            except ProtocolError as exc:
                raise self._fail(str(exc)) from None
            if answered != game_id:
                raise self._fail(f"answered for game {answered}, expected {game_id}")
            moves.append(move)
        return moves

    def forget(self, game_id: str) -> None:
        self.send(f"forget game {game_id}")

    def bench(self, seconds: float, games: int, simulations: int) -> BenchFigures:
        self.send(f"bench seconds {seconds} games {games} simulations {simulations}")
        try:
            return parse_bench(self.readline())
        except ProtocolError as exc:
            raise self._fail(str(exc)) from None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=5)
            except (EngineFailed, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

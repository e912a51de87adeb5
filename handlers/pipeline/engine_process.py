"""The engine process: one side of a validation, answering the line protocol on stdin/stdout.

    python -m handlers.pipeline.engine_process        (from the root of a checkout)

It knows the game, loads a model (weights only, digest checked), and searches positions with
that checkout's own ``engine.mcts``: a patch to the search is played as a patch to the search.
Several staged positions (one per game id) are searched together in one ``BatchedSearch``, one
slot per game, each game's tree kept between its moves. ``bench`` runs that checkout's
selfplay driver for a while and reports its evaluations and simulations. The words are in
docs/engine-protocol.md; every bad request gets one ``error ...`` line and the engine goes on.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import zlib
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from handlers.pipeline.protocol import HELLO, VERSION, ProtocolError, parse_position

ROOT = Path(__file__).resolve().parents[2]  # the checkout this engine runs from


class Engine:
    """The protocol state: game, model, search slots by game id, staged positions, bench driver."""

    def __init__(self, out: TextIO):
        self.out = out
        # engine objects, imported lazily (the protocol's hello answers without torch)
        self.game: Any = None
        self.evaluator: Any = None
        self.seed = 0
        self.search: Any = None
        self.slot_of: dict[str, int] = {}
        self.staged: list[tuple[str, tuple[int, ...]]] = []
        self.staging_error = ""
        self.driver: Any = None
        self.driver_key: tuple[int, int] | None = None

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def handle(self, line: str) -> bool:
        """Answer one request; False after ``quit``."""
        words = line.split()
        if not words:
            return True
        try:
            return self._dispatch(words)
        except (ProtocolError, ValueError, OSError) as exc:
            self.say(f"error {' '.join(str(exc).split())}")
        except Exception as exc:  # engine errors (CheckpointError, IllegalMove): one line, go on
            self.say(f"error {type(exc).__name__}: {' '.join(str(exc).split())}")
        return True

    def _dispatch(self, words: list[str]) -> bool:
        match words[0]:
            case "jetzero-engine":
                if " ".join(words) != HELLO:
                    raise ProtocolError(f"this engine speaks {HELLO!r}")
                self.say("id name jetzero-engine")
                self.say(f"id protocol {VERSION}")
                self.say(f"id root {ROOT}")
                self.say("ready")
            case "isready":
                self.say("readyok")
            case "quit":
                return False
            case "game":
                self._game(words)
            case "model":
                self._model(words)
            case "setoption":
                self._setoption(words)
            case "position":
                self._stage(words)
            case "forget":
                self._forget(words)
            case "go":
                self._go(words)
            case "bench":
                self._bench(words)
            case _:
                raise ProtocolError(f"unknown request {words[0]!r}")
        return True

    def _game(self, words: list[str]) -> None:
        from engine.games import get_game

        if len(words) < 2:
            raise ProtocolError("game NAME [key=value ...]")
        params = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        self.game = get_game(words[1], **{k: int(v) for k, v in params.items()})
        self.search, self.slot_of, self.driver = None, {}, None
        self.say(f"ok game {self.game.name}")

    def _model(self, words: list[str]) -> None:
        from engine.checkpoint import load_checkpoint_file
        from engine.network import NetworkEvaluator

        if self.game is None:
            raise ProtocolError("model before game")
        if len(words) != 2:
            raise ProtocolError("model PATH (no spaces in the path)")
        net, meta = load_checkpoint_file(words[1], expect_game=self.game)
        self.evaluator = NetworkEvaluator(net, device="cpu")
        self.search, self.slot_of, self.driver = None, {}, None
        arch = meta.architecture
        self.say(f"ok model {meta.model_id} digest {meta.digest} arch {arch.blocks}x{arch.channels}")

    def _setoption(self, words: list[str]) -> None:
        from engine.network import set_torch_threads

        if len(words) != 3:
            raise ProtocolError("setoption NAME VALUE")
        name, value = words[1], int(words[2])
        if name == "threads":
            set_torch_threads(value)
        elif name == "seed":
            self.seed = value
        else:
            raise ProtocolError(f"unknown option {name!r} (threads, seed)")
        self.say(f"ok {name} {value}")

    def _stage(self, words: list[str]) -> None:
        try:
            self.staged.append(parse_position(words))
        except ProtocolError as exc:  # answered at the next go, which expects an answer
            self.staging_error = self.staging_error or str(exc)

    def _forget(self, words: list[str]) -> None:
        game_id = words[2] if words[1:2] == ["game"] and len(words) == 3 else None
        if game_id is None:
            raise ProtocolError("forget game ID")
        slot = self.slot_of.pop(game_id, None)
        if slot is not None and self.search is not None:
            self.search.clear(slot)

    def _ready(self) -> None:
        if self.game is None or self.evaluator is None:
            raise ProtocolError("game and model first")

    def _go(self, words: list[str]) -> None:
        staged, self.staged = self.staged, []
        error, self.staging_error = self.staging_error, ""
        if error:
            raise ProtocolError(error)
        self._ready()
        if words[1:2] != ["simulations"] or len(words) != 3:
            raise ProtocolError("go simulations N")
        sims = int(words[2])
        if sims < 1 or not staged:
            raise ProtocolError("go needs simulations >= 1 and at least one position")
        states = [(gid, self.game.from_moves(moves)) for gid, moves in staged]
        staged_moves = dict(staged)
        for gid, state in states:
            if state.is_terminal():
                raise ProtocolError(f"game {gid}: the position is finished")
        slots = self._place(states)
        self.search.run(np.random.default_rng(self.seed), slots=slots, simulations=sims)  # no root noise
        for (gid, _), slot in zip(states, slots, strict=True):
            visits = self.search.visit_counts(slot)
            best = np.flatnonzero(visits == visits.max())
            move = int(best[0]) if len(best) == 1 else int(self._tie_break(staged_moves[gid]).choice(best))
            self.say(f"bestmove {move}" + ("" if gid == "0" else f" game {gid}"))

    def _tie_break(self, moves: tuple[int, ...]) -> np.random.Generator:
        """Ties between equally visited moves: drawn from the seed and the position alone, so
        equal engines play equal games whatever the game id or batch."""
        return np.random.default_rng([self.seed, zlib.crc32(" ".join(map(str, moves)).encode())])

    def _place(self, states) -> list[int]:
        """A search slot per staged game, its tree kept when the position follows from it."""
        from engine.mcts import BatchedSearch, SearchSettings

        needed = len(set(self.slot_of) | {gid for gid, _ in states})
        if self.search is None or needed > self.search.slots:
            kept = {gid: self.search.root_state(s) for gid, s in self.slot_of.items()} if self.search else {}
            size = max(needed, 2 * (self.search.slots if self.search else 8))
            settings = SearchSettings(simulations=1, dirichlet_fraction=0.0)
            self.search = BatchedSearch(self.game, self.evaluator, settings, slots=size)
            self.slot_of = {}
            for gid, state in kept.items():
                self.slot_of[gid] = len(self.slot_of)
                self.search.reset(self.slot_of[gid], state)
        free = sorted(set(range(self.search.slots)) - set(self.slot_of.values()), reverse=True)
        slots = []
        for gid, state in states:
            if gid not in self.slot_of:
                self.slot_of[gid] = free.pop()
                self.search.reset(self.slot_of[gid], state)
            slot = self.slot_of[gid]
            old = self.search.root_state(slot).moves
            if state.moves[: len(old)] != old:
                self.search.reset(slot, state)
            else:
                for move in state.moves[len(old):]:
                    self.search.advance(slot, move)
            slots.append(slot)
        return slots

    def _bench(self, words: list[str]) -> None:
        """``bench seconds S [games G] [simulations N]``: selfplay steps for S seconds."""
        from engine.mcts import SearchSettings
        from engine.selfplay import SelfplayDriver, SelfplaySettings

        self._ready()
        opts = dict(zip(words[1::2], words[2::2], strict=False))
        seconds = float(opts.get("seconds", 1.0))
        games, sims = int(opts.get("games", 16)), int(opts.get("simulations", 32))
        if self.driver is None or self.driver_key != (games, sims):
            search = SearchSettings(simulations=sims, dirichlet_fraction=0.25, temperature_moves=10)
            settings = SelfplaySettings(search=search, games_in_flight=games)
            rng = np.random.default_rng(self.seed)
            self.driver = SelfplayDriver(self.game, self.evaluator, settings, rng)
            self.driver_key = (games, sims)
            self.driver.step()  # warm-up: root expansions and the first search, not counted
        stats = self.driver.stats
        evals0, moves0 = stats.evaluations, stats.positions
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            self.driver.step()
        self.say(f"bench evals {stats.evaluations - evals0} sims {(stats.positions - moves0) * sims} "
                 f"seconds {elapsed:.6f}")


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator ends us (quit, or kill)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    engine = Engine(sys.stdout)
    for line in sys.stdin:
        if not engine.handle(line):
            break


if __name__ == "__main__":
    main()

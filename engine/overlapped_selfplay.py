"""Several batches in flight: one part of the games searches while another's batch is evaluated.

``OverlappedSelfplay`` splits the games in flight (and the game budget) between ``batches``
``SelfplayDriver``s, each with its own slots and its own generator (spawned from the caller's),
and steps them on as many threads. A network call gives up the GIL while the device computes
(torch runs its kernels, and waits for the GPU, without it), so one part's search, which is
Python and numpy and holds the GIL, runs while the other part's batch is on the device: the GPU
is handed its next batch as soon as it is done with one, instead of idling through a search.
Each part plays exactly the games a plain driver with its slots and generator would (tested).
It has the driver's interface (``step``, ``finished``, ``stop_starting``, ``stats``), so a
worker takes either; ``selfplay_driver`` picks one for a number of batches.
"""

from __future__ import annotations

import threading
from dataclasses import fields

import msgspec
import numpy as np

from engine.games.base import Game
from engine.mcts import Evaluator
from engine.selfplay import GameRecord, SelfplayDriver, SelfplaySettings, SelfplayStats


def _split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` near-equal shares, larger first (``_split(5, 2) == [3, 2]``)."""
    return [total // parts + (i < total % parts) for i in range(parts)]


class OverlappedSelfplay:
    """Selfplay as ``batches`` drivers stepped on as many threads (see the module's text)."""

    def __init__(
        self,
        game: Game,
        evaluator: Evaluator,
        settings: SelfplaySettings,
        rng: np.random.Generator,
        n_games: int | None = None,
        *,
        batches: int = 2,
    ):
        if batches < 1:
            raise ValueError(f"batches must be >= 1, got {batches}")
        parts = min(batches, settings.games_in_flight)
        if n_games is not None:
            parts = max(1, min(parts, n_games))
        budgets = [None] * parts if n_games is None else _split(n_games, parts)
        self.drivers = [
            SelfplayDriver(game, evaluator, msgspec.structs.replace(settings, games_in_flight=slots),
                           part_rng, budget)
            for slots, part_rng, budget in zip(
                _split(settings.games_in_flight, parts), rng.spawn(parts), budgets, strict=True)
        ]

    @property
    def finished(self) -> bool:
        return all(driver.finished for driver in self.drivers)

    @property
    def stats(self) -> SelfplayStats:
        """The parts' totals, summed (a fresh object at each read)."""
        return SelfplayStats(**{
            f.name: sum(getattr(d.stats, f.name) for d in self.drivers) for f in fields(SelfplayStats)
        })

    def stop_starting(self) -> None:
        for driver in self.drivers:
            driver.stop_starting()

    def step(self) -> list[GameRecord]:
        """One step of every part still playing, the parts on their own threads (the first on
        the caller's); the records of the games that ended, part by part. An error in a part
        is raised once every part's step is over."""
        live = [driver for driver in self.drivers if not driver.finished]
        if len(live) <= 1:
            return live[0].step() if live else []
        results: list[list[GameRecord]] = [[] for _ in live]
        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                results[i] = live[i].step()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,), name=f"selfplay-batch-{i}", daemon=True)
                   for i in range(1, len(live))]
        for thread in threads:
            thread.start()
        run(0)
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [record for part in results for record in part]


def selfplay_driver(
    game: Game,
    evaluator: Evaluator,
    settings: SelfplaySettings,
    rng: np.random.Generator,
    n_games: int | None = None,
    *,
    batches: int = 1,
) -> SelfplayDriver | OverlappedSelfplay:
    """A plain driver for one batch in flight, an ``OverlappedSelfplay`` for more."""
    if batches <= 1:
        return SelfplayDriver(game, evaluator, settings, rng, n_games)
    return OverlappedSelfplay(game, evaluator, settings, rng, n_games, batches=batches)

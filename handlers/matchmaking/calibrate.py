"""``jetzero p2p calibrate``: the AI levels' Elo, and settings respaced toward even steps.

The levels play each other (neighbours) and the fixed references (``random``, anchored at
0 Elo, and pure MCTS with random rollouts) in colour-swapped pairs from short random
openings, all games together (``engine.batched_arena``: the search levels' moves batched
per level); a Bradley–Terry ladder (``engine.ladder``) is fitted to the results.

Respacing, to aim at even Elo steps: levels 1 and 8 keep their settings (the hottest
sampler, the full search) and fix the range; each level between gets the target
``elo_1 + (k − 1)(elo_8 − elo_1) / 7``. The measured levels, in order, make a piecewise
curve of Elo over settings (made monotone by a running maximum); the target is found on a
segment between two measured levels and the settings are interpolated there: temperature
and blunder rate linearly, simulations log-linearly, thinking time linearly; on the segment
where the kind changes (raw policy → search) the nearer end's settings are taken. The
respaced table is measured again (``rounds``), and the table written is the last one with
the Elo measured for exactly those settings.

``run_calibration`` is the command's I/O: the run's champion for the game (from the object
store through ``PlayersCache``, digest verified) or the initial network before there is
one, the games in a thread, the ``levels:`` section of config/p2p.yaml rewritten (the rest
of the file kept byte for byte, the result re-read and checked before it replaces the
file), and ``p2p.levels_calibrated`` appended.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np

from engine.arena import random_opening
from engine.batched_arena import BatchedGames, GameJob
from engine.games import get_game
from engine.games.base import Game, Player
from engine.ladder import Result, fit_ladder
from engine.network import NetworkEvaluator, PolicyValueNet
from engine.players import PureMCTSPlayer, RandomPlayer
from handlers.matchmaking.config import load_p2p_config
from handlers.matchmaking.levels import LevelSettings, initial_network, level_player, levels_by_number
from handlers.promotion.players_cache import PlayersCache
from projections.models import ModelRegistryProjection
from projections.runner import ProjectionRunner
from streams.config import NatsSettings
from streams.connection import connect
from streams.envelope import new_id
from streams.matchmaking_events import P2pCalibratedLevel, P2pLevelsCalibrated
from streams.store import EventStore

__all__ = [
    "RANDOM",
    "Calibration",
    "CalibrationSettings",
    "LevelFit",
    "calibrate",
    "fit_levels",
    "level_name",
    "play_calibration",
    "render_levels",
    "respace",
    "run_calibration",
    "write_levels",
]

RANDOM = "random"


class CalibrationSettings(msgspec.Struct, frozen=True, kw_only=True):
    pairs: int = 8  # colour-swapped game pairs per pairing
    pure_mcts_iterations: int = 200  # the pure MCTS reference's iterations per move
    opening_plies: int = 2  # random plies before each pair (both games from the same opening)
    rounds: int = 2  # measure, respace, measure again ...
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pairs < 1 or self.rounds < 1 or self.pure_mcts_iterations < 1 or self.opening_plies < 0:
            raise ValueError("pairs, rounds and pure_mcts_iterations must be >= 1, opening_plies >= 0")


class LevelFit(msgspec.Struct, frozen=True, kw_only=True):
    """The ladder of one measurement: Elo and ± 95% per level number and per reference."""

    levels: dict[int, float]
    ci95: dict[int, float]
    references: dict[str, float]
    games: int


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    levels: list[LevelSettings]  # the final table, each with its measured ``elo``
    fit: LevelFit  # the final measurement
    first_fit: LevelFit  # the measurement of the table given
    rounds: int

    def steps(self, fit: LevelFit | None = None) -> list[float]:
        """Elo gaps between neighbouring levels (1→2, ..., 7→8)."""
        elo = (fit or self.fit).levels
        return [elo[k + 1] - elo[k] for k in range(1, 8)]


def level_name(number: int) -> str:
    return f"level-{number}"


def _pure_name(settings: CalibrationSettings) -> str:
    return f"pure-mcts-{settings.pure_mcts_iterations}"


# -- playing and fitting ---------------------------------------------------------------------


def _pairings(settings: CalibrationSettings) -> list[tuple[str, str]]:
    names = [level_name(k) for k in range(1, 9)]
    references = [RANDOM, _pure_name(settings)]
    neighbours = list(zip(names, names[1:], strict=False))
    return [*neighbours, *((n, r) for n in names for r in references), (references[0], references[1])]


def play_calibration(
    game: Game, net: PolicyValueNet, levels: Sequence[LevelSettings], settings: CalibrationSettings
) -> list[Result]:
    """Every pairing's games, played together; results as ``(a, b, wins_a, draws, wins_b)``."""
    by_number = levels_by_number(levels)
    evaluator = NetworkEvaluator(net)  # one inference copy: search levels batch per level
    seeds = iter(range(settings.seed * 1_000_003, settings.seed * 1_000_003 + 10**6))

    def player(name: str) -> Player:
        seed = next(seeds)
        if name == RANDOM:
            return RandomPlayer(seed=seed, name=name)
        if name == _pure_name(settings):
            return PureMCTSPlayer(iterations=settings.pure_mcts_iterations, seed=seed, name=name)
        return level_player(by_number[int(name.rsplit("-", 1)[1])], net, seed, evaluator=evaluator, name=name)

    rng = np.random.default_rng(settings.seed)
    jobs, names = [], []
    for a, b in _pairings(settings):
        for _ in range(settings.pairs):
            opening = random_opening(game, settings.opening_plies, rng)
            jobs += [GameJob(player(a), player(b), opening), GameJob(player(b), player(a), opening)]
            names += [(a, b), (b, a)]
    games = BatchedGames(game, jobs)
    while not games.finished:
        games.step()
    results: list[Result] = []
    for (first, second), result in zip(names, games.results, strict=True):
        assert result is not None  # every game was played to its end
        outcome = result.outcome
        results.append((first, second, int(outcome > 0), int(outcome == 0), int(outcome < 0)))
    return results


def fit_levels(results: Sequence[Result], levels: Sequence[LevelSettings] = ()) -> LevelFit:
    """The Bradley–Terry ladder of ``results`` with ``random`` at 0: each level's Elo (named
    ``level-<n>``) and the other references'. ``levels`` (if given) must all have played."""
    ladder = fit_ladder(results, RANDOM)
    elo: dict[int, float] = {}
    ci: dict[int, float] = {}
    references: dict[str, float] = {}
    for name in ladder:
        rating = ladder[name]
        if name.startswith("level-"):
            number = int(name.rsplit("-", 1)[1])
            elo[number], ci[number] = rating.elo, rating.ci95
        else:
            references[name] = rating.elo
    missing = sorted({level.number for level in levels} - set(elo))
    if missing:
        raise ValueError(f"levels {missing} played no games")
    return LevelFit(levels=elo, ci95=ci, references=references,
                    games=sum(w + d + lo for _, _, w, d, lo in results))


# -- respacing -------------------------------------------------------------------------------


def _lerp(a: float, b: float, f: float) -> float:
    return a + (b - a) * f


def _between(a: LevelSettings, b: LevelSettings, f: float, number: int) -> LevelSettings:
    """Settings a fraction ``f`` of the way from ``a`` to ``b`` (same kind), or the nearer one."""
    if a.kind != b.kind:
        return msgspec.structs.replace(a if f < 0.5 else b, number=number, elo=None)
    simulations = a.simulations
    if a.kind == "search":
        simulations = max(1, round(math.exp(_lerp(math.log(a.simulations), math.log(b.simulations), f))))
    return LevelSettings(
        number=number,
        kind=a.kind,
        temperature=round(_lerp(a.temperature, b.temperature, f), 3),
        blunder_rate=round(min(1.0, max(0.0, _lerp(a.blunder_rate, b.blunder_rate, f))), 3),
        simulations=simulations,
        think_ms=round(_lerp(a.think_ms, b.think_ms, f)),
    )


def respace(levels: Sequence[LevelSettings], elo: dict[int, float]) -> list[LevelSettings]:
    """The levels' settings moved toward even Elo steps between levels 1 and 8 (see the
    module doc); levels 1 and 8 are kept."""
    ordered = [levels_by_number(levels)[k] for k in range(1, 9)]
    curve = np.maximum.accumulate([elo[k] for k in range(1, 9)])
    low, high = curve[0], curve[-1]
    out = [ordered[0]]
    for k in range(2, 8):
        target = low + (k - 1) * (high - low) / 7
        j = int(np.searchsorted(curve, target, side="left"))  # curve[j - 1] < target <= curve[j]
        j = min(max(j, 1), 7)
        span = curve[j] - curve[j - 1]
        f = float((target - curve[j - 1]) / span) if span > 0 else 0.0
        out.append(_between(ordered[j - 1], ordered[j], min(max(f, 0.0), 1.0), k))
    out.append(ordered[7])
    return [msgspec.structs.replace(level, elo=None) for level in out]


def calibrate(
    game: Game, net: PolicyValueNet, levels: Sequence[LevelSettings], settings: CalibrationSettings
) -> Calibration:
    """Measure ``levels``, then ``rounds − 1`` times respace and measure again."""
    current = [msgspec.structs.replace(level, elo=None) for level in levels]
    first = fit = fit_levels(play_calibration(game, net, current, settings), current)
    for round_ in range(1, settings.rounds):
        current = respace(current, fit.levels)
        round_settings = msgspec.structs.replace(settings, seed=settings.seed + round_)
        fit = fit_levels(play_calibration(game, net, current, round_settings), current)
    table = [msgspec.structs.replace(level, elo=round(fit.levels[level.number], 1)) for level in current]
    return Calibration(levels=table, fit=fit, first_fit=first, rounds=settings.rounds)


# -- the config file -------------------------------------------------------------------------


def render_levels(levels: Sequence[LevelSettings]) -> str:
    """The ``levels:`` section, one flow mapping per level (fields at their defaults left out)."""
    lines = ["levels:"]
    for level in sorted(levels, key=lambda lv: lv.number):
        fields = msgspec.to_builtins(level)  # omits nothing: drop the defaults by hand
        shown = {k: v for k, v in fields.items()
                 if k in ("number", "kind") or v != getattr(_DEFAULTS, k, None)}
        body = ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in shown.items())
        lines.append(f"  - {{{body}}}")
    return "\n".join(lines) + "\n"


_DEFAULTS = LevelSettings(number=1, kind="raw_policy")


def _yaml_scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_levels(path: str | Path, levels: Sequence[LevelSettings]) -> None:
    """Replace the top-level ``levels:`` section of ``path`` (appended if absent), keeping every
    other line; the new file is read back with the matchmaking config loader before it
    replaces the old one (a ``ConfigError`` leaves the old file in place)."""
    p = Path(path)
    lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("levels:")), None)
    section = render_levels(levels)
    if start is None:
        text = "".join(lines) + ("" if not lines or lines[-1].endswith("\n") else "\n") + section
    else:
        end = _section_end(lines, start)
        text = "".join(lines[:start]) + section + "".join(lines[end:])
    tmp = p.with_name(f".{p.name}.calibrating")
    tmp.write_text(text, encoding="utf-8")
    try:
        loaded = load_p2p_config(tmp)
        if sorted(loaded.levels, key=lambda lv: lv.number) != sorted(levels, key=lambda lv: lv.number):
            raise ValueError(f"{p}: the rewritten levels did not read back as written")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def _section_end(lines: list[str], start: int) -> int:
    """The line after the section starting at ``start``: it runs through indented lines and
    list items; blank lines and column-0 comments belong to it only when more of it follows."""
    end = start + 1
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            continue
        if line[0] in " \t-":
            end = i + 1
        else:
            break
    return end


# -- the command -----------------------------------------------------------------------------


async def run_calibration(
    *,
    nats: NatsSettings,
    run: str,
    game_name: str,
    config_path: str | Path,
    settings: CalibrationSettings | None = None,
    levels: Sequence[LevelSettings] | None = None,
) -> tuple[Calibration, P2pLevelsCalibrated]:
    """Calibrate the levels of ``config_path`` (or ``levels``) on ``game_name`` with the run's
    champion (the initial network when the run has none of this game), rewrite the config's
    ``levels:`` and record ``p2p.levels_calibrated``."""
    game = get_game(game_name)
    settings = settings or CalibrationSettings()
    if levels is None:
        levels = load_p2p_config(config_path).levels
    conn = await connect(nats, name="jetzero-p2p-calibrate", long_lived=False)
    try:
        store = EventStore(conn)
        registry = ProjectionRunner(store, ModelRegistryProjection(), run)
        state = await registry.catch_up()
        champion = state.champion
        record = state.model(champion.model_id) if champion is not None else None
        if record is not None and record.game in ("", game.name):
            net = await PlayersCache(conn, game, registry).net(record.model_id)
            model_id = record.model_id
        else:
            net, model_id = initial_network(game), f"initial-{game.name}"
        calibration = await asyncio.to_thread(calibrate, game, net, levels, settings)
        await asyncio.to_thread(write_levels, config_path, calibration.levels)
        event = P2pLevelsCalibrated(
            id=new_id(), time=time.time(), run=run, game=game.name, model_id=model_id,
            levels=[P2pCalibratedLevel(
                number=lv.number, kind=lv.kind, temperature=lv.temperature, blunder_rate=lv.blunder_rate,
                simulations=lv.simulations, think_ms=lv.think_ms, elo=calibration.fit.levels[lv.number],
                ci95=calibration.fit.ci95[lv.number],
            ) for lv in calibration.levels],
            references=calibration.fit.references, games=calibration.fit.games,
            rounds=calibration.rounds, config_path=str(config_path),
        )
        await store.append(event)
        return calibration, event
    finally:
        await conn.close()

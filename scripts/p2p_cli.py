"""``jetzero p2p ...``: the matchmaking server (``serve``), its ratings and its live games.

``serve`` runs ``handlers.matchmaking.service.serve`` (the page at ``http://HOST:PORT/``, the
socket at ``/ws``); ``ratings`` and ``games`` read the matchmaking projection of the run. The log
and the run are the loop config's (``--config``); the server's own settings are
``config/p2p.yaml`` (``--p2p-config``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import typer

from handlers.matchmaking.config import DEFAULT_P2P_PATH, load_p2p_config
from projections.matchmaking import (
    MatchmakingProjection,
    MatchmakingState,
    PlayerRating,
    ai_player,
    current,
    level_start,
)
from projections.runner import ProjectionRunner
from scripts.common import DEFAULT_CONFIG, echo_json, fmt_time, guarded, loop_config, run_async, with_store

app = typer.Typer(help="Matchmaking: play the AIs and each other in the browser; ratings, live games.",
                  no_args_is_help=True)

ConfigOption = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="the loop's config: nats and run")
P2POption = typer.Option(DEFAULT_P2P_PATH, "--p2p-config", help="the matchmaking settings")
JsonOption = typer.Option(False, "--json", help="machine-readable output")


@app.command()
def serve(
    config: Path = ConfigOption,
    p2p_config: Path = P2POption,
    host: str = typer.Option(None, "--host", help="override server.host"),
    port: int = typer.Option(None, "--port", help="override server.port"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve the page and the WebSocket until Ctrl-C."""
    from handlers.matchmaking.service import serve as serve_forever

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = loop_config(config)
    p2p = guarded(lambda: load_p2p_config(p2p_config), code=2)

    def ready(server) -> None:
        typer.echo(f"matchmaking on http://{server.host}:{server.port}/ (run {cfg.run}); Ctrl-C stops it")

    guarded(lambda: run_async(lambda: serve_forever(p2p, cfg.nats, cfg.run, host=host, port=port,
                                                    ready=ready)), code=2)


def _view(config: Path) -> tuple[Any, MatchmakingState]:
    cfg = loop_config(config)

    async def work(store) -> MatchmakingState:
        return await ProjectionRunner(store, MatchmakingProjection(), cfg.run, use_snapshots=False).catch_up()

    return cfg, with_store(cfg, work)


@app.command()
def ratings(config: Path = ConfigOption, p2p_config: Path = P2POption, json: bool = JsonOption) -> None:
    """Glicko-2 ratings of every human and every AI level, best first (RD grown by idle time)."""
    p2p = guarded(lambda: load_p2p_config(p2p_config), code=2)
    _, view = _view(config)
    r, now = p2p.ratings, time.time()
    starts = level_start({lv.number: lv.elo for lv in p2p.levels})
    rows: list[dict[str, Any]] = []
    players: dict[str, PlayerRating | None] = dict(view.all_ratings())
    for number in starts:
        players.setdefault(ai_player(number), None)
    for player, recorded in players.items():
        level = int(player[3:]) if player.startswith("ai-") else None
        now_rating = current(view, player, now, period_s=r.period_s, tau=r.tau,
                             start=starts.get(level or 0, 1500.0))
        rows.append({
            "player": player, "name": f"AI level {level}" if level else (view.name(player) or player),
            "kind": "ai" if level else "human", "rating": round(now_rating.rating, 1),
            "rd": round(now_rating.rd, 1), "volatility": round(now_rating.volatility, 6),
            "provisional": now_rating.provisional(r.provisional_rd),
            "games": recorded.games if recorded else 0,
        })
    rows.sort(key=lambda row: -row["rating"])
    if json:
        echo_json(rows)
        return
    typer.echo(f"{'player':<20} {'name':<20} {'rating':>8} {'rd':>6} {'games':>6}")
    for row in rows:
        mark = "?" if row["provisional"] else " "
        typer.echo(f"{row['player']:<20} {row['name'][:20]:<20} {row['rating']:>7.1f}{mark} "
                   f"{row['rd']:>6.1f} {row['games']:>6}")


@app.command()
def games(config: Path = ConfigOption, json: bool = JsonOption) -> None:
    """The games in progress, and how many were started and finished."""
    _, view = _view(config)
    live: list[dict[str, Any]] = [{
        "game_id": g.game_id, "game": g.game, "moves": len(g.moves), "started": g.started,
        "players": [s.name or s.id for s in g.seats], "exhibition": g.exhibition,
    } for g in view.live_games()]
    if json:
        echo_json({"live": live, "started": view.started, "finished": view.finished})
        return
    typer.echo(f"{len(live)} live game(s); {view.started} started, {view.finished} finished")
    for g in live:
        typer.echo(f"{g['game_id']}  {g['game']:<10} {' vs '.join(g['players']):<40} "
                   f"{g['moves']:>3} moves  since {fmt_time(g['started'])}")


@app.command()
def calibrate(
    config: Path = ConfigOption,
    p2p_config: Path = P2POption,
    game: str | None = typer.Option(None, "--game", help="the game to calibrate on (default: the run's)"),
    pairs: int = typer.Option(8, "--pairs", min=1, help="colour-swapped game pairs per pairing"),
    rounds: int = typer.Option(2, "--rounds", min=1, help="measure, respace to even steps, measure again"),
    pure_mcts: int = typer.Option(200, "--pure-mcts", min=1, help="the pure MCTS reference's iterations"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads"),
    json: bool = JsonOption,
) -> None:
    """Play the levels against each other and the references (random, pure MCTS), fit the
    Bradley–Terry ladder, write the table into the p2p config's ``levels:`` and record it."""
    from engine.games import UnknownGame, get_game
    from engine.network import set_torch_threads
    from handlers.matchmaking.calibrate import CalibrationSettings, run_calibration
    from scripts.common import fail

    cfg = loop_config(config)
    game = game or cfg.game.name
    try:
        get_game(game)
    except UnknownGame as exc:
        fail(str(exc), 2)
    guarded(lambda: load_p2p_config(p2p_config), code=2)  # a broken file is refused before any game
    set_torch_threads(threads)
    settings = CalibrationSettings(pairs=pairs, rounds=rounds, pure_mcts_iterations=pure_mcts, seed=seed)
    calibration, event = guarded(lambda: run_async(lambda: run_calibration(
        nats=cfg.nats, run=cfg.run, game_name=game, config_path=p2p_config,
        settings=settings)), code=2)
    if json:
        echo_json({"model_id": event.model_id, "game": event.game, "games": event.games,
                   "references": event.references, "steps": [round(s, 1) for s in calibration.steps()],
                   "levels": [{"number": lv.number, "kind": lv.kind, "temperature": lv.temperature,
                               "blunder_rate": lv.blunder_rate, "simulations": lv.simulations,
                               "think_ms": lv.think_ms, "elo": lv.elo, "ci95": lv.ci95}
                              for lv in event.levels]})
        return
    typer.echo(f"{event.game}, {event.model_id}: {event.games} games, {event.rounds} round(s); "
               f"references {', '.join(f'{k} {v:+.0f}' for k, v in event.references.items())}")
    typer.echo(f"{'level':>5} {'kind':<10} {'temp':>5} {'blunder':>7} {'sims':>5} {'think':>6} {'Elo':>8}")
    for lv in event.levels:
        typer.echo(f"{lv.number:>5} {lv.kind:<10} {lv.temperature:>5.2f} {lv.blunder_rate:>7.2f} "
                   f"{lv.simulations:>5} {lv.think_ms:>6} {lv.elo:>+8.1f} ± {lv.ci95:.0f}")
    typer.echo(f"steps {', '.join(f'{s:+.0f}' for s in calibration.steps())}; written to {p2p_config}")

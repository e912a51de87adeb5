"""``jetzero selfplay``: run a selfplay worker standalone (before or beside the full loop)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from scripts.common import DEFAULT_CONFIG, guarded, run_async

app = typer.Typer(help="Selfplay: the champion plays itself; games go to the GAMES stream.")


@app.callback(invoke_without_command=True)
def selfplay(
    games: int = typer.Option(None, "--games", "-n", min=1,
                              help="stop after N games (default: until Ctrl-C)"),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c"),
    index: int = typer.Option(0, "--index", help="worker index (seeds and names the worker)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Play games with the current champion (generation 0 is created if there is none)."""
    from handlers.loop.config import load_loop_config
    from handlers.loop.selfplay import play
    from handlers.runtime.service import run_service
    from streams.server import start_if_needed

    cfg = guarded(lambda: load_loop_config(config))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    temporary = guarded(lambda: start_if_needed(cfg.nats))
    result = {}

    async def body(ctx):
        ctx.extra["index"] = index
        result["totals"] = await play(ctx, cfg, max_games=games)

    try:
        guarded(lambda: run_async(lambda: run_service("selfplay-cli", cfg.nats, cfg.run, body)))
    finally:
        if temporary is not None:
            temporary.stop()
    totals = result.get("totals")
    if totals is not None:
        rates = totals.rates()
        typer.echo(f"{totals.games} games, {totals.positions} positions, "
                   f"{rates['games_per_minute']:.1f} games/min, {rates['evals_per_s']:.0f} evals/s")

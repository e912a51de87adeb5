"""``jetzero loop ...``: start, foreground, stop, status, halt, resume (the unified AI loop)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from scripts.common import DEFAULT_CONFIG, echo_json, guarded, run_async

app = typer.Typer(help="The unified AI loop: selfplay → sync → train → evaluate → promote.",
                  no_args_is_help=True)
LoopConfigOption = typer.Option(DEFAULT_CONFIG, "--config", "-c",
                                help="the loop's config file")
ReasonOption = typer.Option("", "--reason", help="why (recorded in the event)")


def _config(path: Path):
    from handlers.loop.config import load_loop_config

    return guarded(lambda: load_loop_config(path))


@app.command()
def start(config: Path = LoopConfigOption) -> None:
    """Start the loop in the background; returns once it is up and says where its logs are."""
    from handlers.loop.config import load_in_force
    from handlers.loop.control import start_background

    in_force = guarded(lambda: load_in_force(config))  # both files checked before anything starts
    typer.echo(guarded(lambda: run_async(lambda: start_background(in_force.loop, config))))


@app.command()
def foreground(config: Path = LoopConfigOption,
               verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the loop in this terminal (Ctrl-C stops it gracefully)."""
    from handlers.loop.config import load_in_force
    from handlers.loop.supervisor import supervise

    in_force = guarded(lambda: load_in_force(config))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    guarded(lambda: run_async(lambda: supervise(in_force, verbose=verbose)))


@app.command()
def stop(config: Path = LoopConfigOption, reason: str = ReasonOption) -> None:
    """Stop gracefully: running games and training steps finish or are abandoned."""
    from handlers.loop.control import stop as stop_loop

    cfg = _config(config)
    typer.echo(guarded(lambda: run_async(lambda: stop_loop(cfg, reason or "cli stop"))))


@app.command()
def halt(config: Path = LoopConfigOption, reason: str = ReasonOption) -> None:
    """Emergency halt: recorded directly in the log (also when halted already); every process
    pauses at its next check."""
    from handlers.loop.control import halt as halt_loop

    cfg = _config(config)
    typer.echo(guarded(lambda: run_async(lambda: halt_loop(cfg, reason or "emergency halt"))))


@app.command()
def resume(config: Path = LoopConfigOption, reason: str = ReasonOption) -> None:
    """Resume after a halt: lifts the latest halt recorded now (a halt recorded after this keeps
    the loop halted); decided by the controller, or here if no loop runs."""
    from handlers.loop.control import resume as resume_loop

    cfg = _config(config)
    typer.echo(guarded(lambda: run_async(lambda: resume_loop(cfg, reason or "cli resume"))))


@app.command()
def status(config: Path = LoopConfigOption,
           as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """Where the loop stands, from the projections (works with the loop stopped)."""
    from handlers.loop.config import shown_config
    from handlers.loop.control import open_store
    from handlers.loop.status import collect_status, format_status

    cfg = _config(config)

    async def work():
        async with open_store(cfg.nats) as store:
            return await collect_status(store, await shown_config(store, cfg))

    report = guarded(lambda: run_async(work))
    if as_json:
        echo_json(report)
    else:
        typer.echo(format_status(report))


"""``jetzero server start|stop|status``: the embedded nats-server."""

from __future__ import annotations

from pathlib import Path

import typer

from scripts.common import ConfigOption, guarded, load_target
from streams.server import EmbeddedServer, ServerStatus, ensure_server, host_port, port_open

app = typer.Typer(help="The embedded nats-server (started only when nats.url is not set).",
                  no_args_is_help=True)


@app.command()
def start(config: Path = ConfigOption) -> None:
    """Start the embedded server in the background (or check the configured nats.url)."""
    target = guarded(lambda: load_target(config))
    status = guarded(lambda: ensure_server(target.nats, detach=True))
    typer.echo(status.describe())


@app.command()
def stop(config: Path = ConfigOption) -> None:
    """Stop the embedded server gracefully."""
    target = guarded(lambda: load_target(config))
    if target.nats.url:
        typer.echo(f"nats.url is set ({target.nats.url}): jetzero did not start that server")
        return
    stopped = EmbeddedServer(target.nats).stop()
    typer.echo("stopped" if stopped else "not running")


@app.command()
def status(config: Path = ConfigOption) -> None:
    """Is the server up? One line; exit 1 when it is not running or does not answer."""
    target = guarded(lambda: load_target(config))
    if target.nats.url:
        host, port = host_port(target.nats.url)
        st = ServerStatus(port_open(host, port), target.nats.url, None, "", False)
    else:
        st = EmbeddedServer(target.nats).status()
    typer.echo(st.describe())
    if not st.running:
        raise typer.Exit(1)

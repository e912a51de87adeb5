"""``jetzero agent``: the node agent, the one process to start on every machine of a cluster.

    jetzero agent --roles selfplay,eval --connect nats://host1:4222,nats://host2:4222 \\
                  --creds node-a1.creds.json [--run main] [--name a1]

It joins the run (refused below the cluster's ``min_version``), plays selfplay games and
evaluation units on the config in force, follows the champion (digest verified) and
heartbeats into the nodes KV until Ctrl-C / SIGTERM (``handlers.cluster.agent``).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import typer

from scripts.common import guarded, run_async

app = typer.Typer(help="Node agent: selfplay and evaluation work for a run on a JetStream cluster.")


@app.callback(invoke_without_command=True)
def agent(
    roles: str = typer.Option("selfplay,eval", "--roles", help="comma-separated: selfplay, eval; "
                              "train, sync, promote (singletons, under fenced leases)"),
    connect: str = typer.Option(..., "--connect", help="server URL(s), comma-separated"),
    creds: Path = typer.Option(None, "--creds", help="this node's jetzero credentials file (0600)"),
    run: str = typer.Option("main", "--run", help="the run to work for"),
    name: str = typer.Option(None, "--name", help="node name (default: this host's name)"),
    ping_interval: float = typer.Option(1.0, "--ping-interval", help="seconds between pings; a "
                                        "silent server is left after 2 unanswered"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Join the run and work until stopped."""
    from handlers.cluster.agent import AgentOptions, run_agent
    from streams.config import NatsSettings

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node = name or socket.gethostname().split(".")[0]
    options = guarded(lambda: AgentOptions(name=node, roles=tuple(r.strip() for r in roles.split(",")
                                                                    if r.strip())), code=2)
    settings = guarded(lambda: NatsSettings(url=connect, credentials=str(creds) if creds else None,
                                            ping_interval_s=ping_interval, max_outstanding_pings=2), code=2)
    guarded(lambda: run_async(lambda: run_agent(settings, run, options)), code=2)

"""``jetzero cluster credentials|up|down|status|heal``: the JetStream cluster of ``config/cluster.yaml``.

``up`` / ``down`` start and stop the embedded servers (``nats.embedded: 3``) in the background;
with ``nats.urls`` they only check the servers. ``status`` (``--json``) shows every server,
each stream's leader and its replicas' health, and the live nodes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from handlers.cluster import credentials
from handlers.cluster.config import DEFAULT_CONFIG_PATH, ClusterConfig, load_cluster_config
from handlers.cluster.status import cluster_status, render_status
from handlers.cluster.up import bring_up, heal_round, nodes_of
from scripts.common import echo_json, guarded, run_async

app = typer.Typer(help="The JetStream cluster: servers, per-role credentials, status.",
                  no_args_is_help=True)
ClusterConfigOption = typer.Option(DEFAULT_CONFIG_PATH, "--config", "-c",
                                   help="cluster config (config/cluster.yaml)")


def _config(path: Path) -> ClusterConfig:
    return guarded(lambda: load_cluster_config(path), code=2)


@app.command("credentials")
def credentials_cmd(
    config: Path = ClusterConfigOption,
    out: Path = typer.Option(None, "--out", help="folder (default: <nats.data_dir>/credentials)"),
    replace: bool = typer.Option(False, "--replace", help="new passwords for every login"),
) -> None:
    """Write the servers' authorization include and one credentials file per role and node."""
    cfg = _config(config)
    folder = out or cfg.credentials_dir
    written = guarded(lambda: credentials.write(folder, nodes_of(cfg), replace=replace))
    typer.echo(f"wrote {folder / credentials.INCLUDE_FILE} (include it in each nats-server config)")
    for user in written.users:
        typer.echo(f"  {user.name:<14} {credentials.role_file(folder, user.name)}")


@app.command()
def up(config: Path = ClusterConfigOption) -> None:
    """Start the embedded servers in the background (nats.urls: start nothing), wait until
    healthy, and apply the streams, buckets and object stores at the configured replicas."""
    cfg = _config(config)
    if not cfg.nats.embedded:
        typer.echo(f"nats.urls is set: jetzero starts no servers ({', '.join(cfg.nats.urls)})")
    for line in guarded(lambda: run_async(lambda: bring_up(cfg))):
        typer.echo(line)


@app.command()
def down(config: Path = ClusterConfigOption) -> None:
    """Stop the ssh nodes' agents, then the embedded servers (their stores stay)."""
    cfg = _config(config)
    from handlers.cluster.launch import stop_agents

    for line in guarded(lambda: run_async(lambda: stop_agents(cfg))):
        typer.echo(line)
    if not cfg.nats.embedded:
        typer.echo("nats.urls is set: jetzero did not start those servers")
        return
    from handlers.cluster.servers import LocalCluster

    stopped = LocalCluster(cfg.nats).stop()
    typer.echo(f"stopped {stopped} server(s)" if stopped else "not running")


@app.command()
def status(
    config: Path = ClusterConfigOption,
    as_json: bool = typer.Option(False, "--json", help="machine-readable"),
) -> None:
    """Servers, stream leaders and replicas' health, live nodes. Exit 1 if a server is down."""
    cfg = _config(config)
    report = guarded(lambda: run_async(lambda: cluster_status(cfg)))
    if as_json:
        echo_json(report)
    else:
        typer.echo(render_status(report))
    if not all(s["healthy"] for s in report["servers"]):
        raise typer.Exit(1)


@app.command()
def heal(
    config: Path = ClusterConfigOption,
    timeout: float = typer.Option(10.0, "--timeout", help="seconds to wait for the resyncs"),
) -> None:
    """Tell agents on another model than the champion to resync; restart the unreachable
    where their launch method allows. Prints what it did."""
    cfg = _config(config)

    async def main() -> list[str]:
        from streams.connection import connect
        from streams.store import EventStore

        conn = await connect(cfg.settings_for("admin"), name="jetzero-cluster-heal",
                             long_lived=False, ensure=False)
        try:
            return await heal_round(EventStore(conn), cfg, timeout)
        finally:
            await conn.close()

    for line in guarded(lambda: run_async(main)):
        typer.echo(line)

"""The ``jetzero`` command: one typer app of sub-apps, each in its own module.

``SUBAPPS`` is the explicit list of sub-apps; each module is imported here, so a sub-app that
fails to import fails the command loudly instead of quietly going missing.
"""

from __future__ import annotations

import typer

from scripts import (
    agent_cli,
    bench_cli,
    cluster_cli,
    events_cli,
    loop_cli,
    models_cli,
    p2p_cli,
    pipeline_cli,
    promotion_cli,
    report_cli,
    selfplay_cli,
    server_cli,
    stats,
)

app = typer.Typer(
    name="jetzero",
    help="AlphaZero-style self-improvement for board games; every action an event on JetStream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SUBAPPS: dict[str, typer.Typer] = {
    "server": server_cli.app,
    "events": events_cli.app,
    "stats": stats.app,
    "selfplay": selfplay_cli.app,
    "bench": bench_cli.app,
    "loop": loop_cli.app,
    "promotion": promotion_cli.app,
    "models": models_cli.app,
    "p2p": p2p_cli.app,
    "pipeline": pipeline_cli.app,
    "cluster": cluster_cli.app,
    "report": report_cli.app,
    "agent": agent_cli.app,
}

for _name, _app in SUBAPPS.items():
    app.add_typer(_app, name=_name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

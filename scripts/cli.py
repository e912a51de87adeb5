"""The ``jetzero`` command: one typer app of sub-apps, each in its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="jetzero",
    help="AlphaZero-style self-improvement for board games; every action an event on JetStream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_SUBAPPS = {
    "server": "scripts.server_cli",
    "events": "scripts.events_cli",
    "stats": "scripts.stats",
    "selfplay": "scripts.selfplay_cli",
    "bench": "scripts.bench_cli",
    "loop": "scripts.loop_cli",
    "promotion": "scripts.promotion_cli",
}

for _name, _module in _SUBAPPS.items():
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        continue
    app.add_typer(_mod.app, name=_name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""What every CLI command shares: reading the config's ``nats``/``run``, running async code
on uvloop, and turning jetzero errors into one clear line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import typer
import uvloop
import yaml

from streams.config import NatsSettings, convert_config
from streams.errors import ConfigError, JetzeroError

T = TypeVar("T")
DEFAULT_CONFIG = Path("config/unified_loop.yaml")

ConfigOption = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", help="config file whose nats: and run: sections are used"
)
RunOption = typer.Option(None, "--run", help="run name (default: the config's run)")


class Target(msgspec.Struct, frozen=True):
    nats: NatsSettings
    run: str


def load_target(config: Path, run: str | None = None) -> Target:
    """The ``nats:`` section and ``run`` name of a config file (defaults when it is absent)."""
    data: dict[str, Any] = {}
    if config.exists():
        try:
            data = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config}: not valid YAML: {exc}") from None
    elif config != DEFAULT_CONFIG:
        raise ConfigError(f"config file {config} does not exist")
    nats = convert_config(data.get("nats", {}), NatsSettings, f"{config}: nats")
    return Target(nats=nats, run=run or str(data.get("run", "main")))


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on a uvloop event loop (no event-loop policies)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable[[], T], *, code: int = 1) -> T:
    """Call ``fn``; a ``JetzeroError`` becomes one line on stderr and exit ``code``."""
    try:
        return fn()
    except JetzeroError as exc:
        fail(str(exc), 2 if isinstance(exc, ConfigError) else code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise AssertionError("unreachable")


def parse_point(text: str) -> tuple[int | None, float | None]:
    """``SEQ`` (digits) or a time (ISO 8601, or unix seconds with a dot) → (seq, time)."""
    t = text.strip()
    if t.isdigit():
        return int(t), None
    try:
        return None, float(t)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a sequence number nor a time (ISO 8601 like 2026-11-24T10:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return None, when.timestamp()


def fmt_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def echo_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.encode(data).decode() + "\n")

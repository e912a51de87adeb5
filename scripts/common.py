"""What every CLI command shares: the ``--config`` / ``--run`` options and the target they
name (read with the one loop-config loader, so a bad file is refused the same way
everywhere), running async code on uvloop, and turning jetzero errors into one clear line and
a non-zero exit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import typer
import uvloop

from handlers.loop.config import DEFAULT_CONFIG_PATH, load_loop_config
from streams.config import NatsSettings
from streams.errors import ConfigError, JetzeroError

T = TypeVar("T")
DEFAULT_CONFIG = DEFAULT_CONFIG_PATH  # every command's --config default

ConfigOption = typer.Option(
    DEFAULT_CONFIG, "--config", "-c", help="config file whose nats: and run: sections are used"
)
RunOption = typer.Option(None, "--run", help="run name (default: the config's run)")


class Target(msgspec.Struct, frozen=True):
    nats: NatsSettings
    run: str


def load_target(config: Path, run: str | None = None) -> Target:
    """The ``nats:`` settings and run of a loop config file (``run`` overrides its ``run:``).

    The whole file is decoded and checked, and ``run`` with it (``$.run``): a file that is
    missing, empty or wrong anywhere is refused, never replaced by defaults.
    """
    cfg = load_loop_config(config, {"run": run} if run is not None else None)
    return Target(nats=cfg.nats, run=cfg.run)


def loop_config(path: Path):
    """The loop config at ``path``, or one line on stderr and exit 2."""
    return guarded(lambda: load_loop_config(path), code=2)


def with_store(cfg, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """``await work(store)`` on a store opened with ``cfg.nats``; a jetzero error exits 2."""
    from handlers.loop.control import open_store

    async def main():
        async with open_store(cfg.nats) as store:
            return await work(store)

    return guarded(lambda: run_async(main), code=2)


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


def parse_point(text: str, param_hint: str | None = None) -> tuple[int | None, float | None]:
    """``SEQ`` (digits) or a time (ISO 8601, or unix seconds with a dot) → (seq, time).

    A time that is not a finite number of seconds since 1970 (``nan``, ``inf``, ``-5``) is
    refused like any other bad value (``typer.BadParameter``, naming ``param_hint``).
    """
    t = text.strip()
    if t.isdigit():
        return int(t), None
    try:
        seconds = float(t)
    except ValueError:
        try:
            when = dt.datetime.fromisoformat(t)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r} is neither a sequence number nor a time (ISO 8601 like 2026-11-24T10:00)",
                param_hint=param_hint,
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp()
    if not (math.isfinite(seconds) and seconds >= 0):
        raise typer.BadParameter(
            f"{text!r}: not a sequence or a time after 1970", param_hint=param_hint
        )
    return None, seconds


def fmt_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def echo_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.encode(data).decode() + "\n")

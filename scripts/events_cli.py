"""``jetzero events ...``: tail, show, replay a projection to a point, export, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import typer

from scripts.common import (
    ConfigOption,
    RunOption,
    echo_json,
    fmt_time,
    guarded,
    load_target,
    parse_point,
    run_async,
)
from scripts.progress import tracker
from streams import codec, names
from streams.connection import connect
from streams.errors import DecodeError
from streams.store import EventStore, Stored

app = typer.Typer(help="Read the log: tail, show, replay to a point, export, stats.",
                  no_args_is_help=True)
_ENVELOPE = {"id", "time", "run", "v", "causation_id", "correlation_id", "type"}
StreamOption = typer.Option(names.EVENTS, "--stream", help="EVENTS, GAMES, COMMANDS or WORK")
QuietOption = typer.Option(False, "--quiet", "-q", help="no progress bar (none when not at a terminal)")


def _check_stream(stream: str) -> str:
    s = stream.upper()
    if s not in names.STREAM_PREFIX:
        raise typer.BadParameter(f"unknown stream {stream!r}; one of {', '.join(names.STREAM_PREFIX)}")
    return s


def _summary(item: Stored, width: int = 110) -> str:
    event = item.event
    tag = getattr(event, "tag", None) or getattr(event, "type", "?")
    fields: dict[str, Any] = {
        k: v for k, v in msgspec.to_builtins(event).items() if k not in _ENVELOPE
    } if not isinstance(event, codec.UnknownEvent) else {}
    text = " ".join(f"{k}={_short(v)}" for k, v in fields.items())
    line = f"{item.seq:>7}  {fmt_time(item.time)}  {tag:<22} {text}"
    return line if len(line) <= width else line[: width - 1] + "…"


def _short(v: Any) -> str:
    s = msgspec.json.encode(v).decode()
    return s if len(s) <= 24 else s[:21] + "..."


def _as_dict(item: Stored) -> dict[str, Any]:
    return {"seq": item.seq, "subject": item.subject, "stored_at": item.time,
            "event": msgspec.to_builtins(item.event)}


async def _with_store(target, work):
    log = await connect(target.nats, name="jetzero-cli", long_lived=False)
    try:
        return await work(EventStore(log))
    finally:
        await log.close()


async def last_matching(store: EventStore, stream: str, subject: str, count: int, end: int,
                        window: int = 1000) -> list[Stored]:
    """The last ``count`` events on ``subject`` up to sequence ``end``, searching back in
    windows that double until enough are found or the stream's start is reached."""
    found: list[Stored] = []
    high = end
    while count > 0 and high >= 1 and len(found) < count:
        low = max(1, high - window + 1)
        found = [item async for item in store.read(stream, subject_filter=subject, start_seq=low,
                                                   end_seq=high)] + found
        high, window = low - 1, window * 2
    return found[-count:] if count > 0 else []


@app.command()
def tail(
    type: str = typer.Option(None, "--type", help="only this event type, e.g. loop.halted"),
    run: str = RunOption,
    last: int = typer.Option(20, "-n", help="how many past events to show"),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new events"),
    stream: str = StreamOption,
    config: Path = ConfigOption,
) -> None:
    """The last events (of a run, of a type), and new ones with --follow."""
    if last < 0:
        raise typer.BadParameter(f"must be 0 or more, got {last}", param_hint="-n")
    target = guarded(lambda: load_target(config, run))
    stream = _check_stream(stream)
    subject = names.tag_filter(stream, target.run, type) if type else names.run_filter(
        stream, target.run)

    async def work(store: EventStore) -> None:
        end = await store.last_seq(stream)
        for item in await last_matching(store, stream, subject, last, end):
            typer.echo(_summary(item))
        if follow:
            async for item in store.read(stream, subject_filter=subject, start_seq=end + 1,
                                         follow=True):
                typer.echo(_summary(item))

    guarded(lambda: run_async(lambda: _with_store(target, work)))


@app.command()
def show(seq: int, stream: str = StreamOption, config: Path = ConfigOption) -> None:
    """One event in full, as JSON."""
    target = guarded(lambda: load_target(config))
    stream = _check_stream(stream)

    async def work(store: EventStore) -> None:
        echo_json(_as_dict(await store.get(seq, stream)))

    guarded(lambda: run_async(lambda: _with_store(target, work)))


@app.command()
def replay(
    projection: str = typer.Option(..., "--projection", "-p", help="which read model"),
    until: str = typer.Option(None, "--until", help="SEQ or TIME (ISO 8601); default: now"),
    run: str = RunOption,
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    config: Path = ConfigOption,
    quiet: bool = QuietOption,
) -> None:
    """A projection's state as of a sequence or a time (debug a run by replaying it)."""
    from handlers.loop.config import LoopConfig, load_loop_config
    from projections import PROJECTIONS, build_projection
    from projections.runner import states_as_of

    if projection not in PROJECTIONS:
        raise typer.BadParameter(
            f"unknown projection {projection!r}; known: {', '.join(sorted(PROJECTIONS))}",
            param_hint="--projection",
        )
    seq, when = parse_point(until, "--until") if until else (None, None)
    target = guarded(lambda: load_target(config, run))
    # the loop config gives the projections their settings (the curriculum its stages)
    loop_config = guarded(lambda: load_loop_config(config) if config.exists() else LoopConfig())

    async def work(store: EventStore):
        chosen = build_projection(projection, loop_config)
        with tracker(quiet=quiet) as bars:
            end = seq or await store.last_seq(chosen.stream)
            (state,), position = await states_as_of(
                store, [chosen], target.run, seq=seq, time=when,
                on_progress=lambda at: bars.update("replay", completed=at, total=end,
                                                   description=f"replay {chosen.stream}"))
            if bars.tasks:
                bars.update("replay", completed=position, total=end)
        return state, position

    state, position = guarded(lambda: run_async(lambda: _with_store(target, work)))
    data = msgspec.to_builtins(state)
    if as_json:
        echo_json({"projection": projection, "run": target.run, "position": position,
                   "state": data})
        return
    typer.echo(f"{projection} of run {target.run} as of sequence {position}")
    for key, value in (data.items() if isinstance(data, dict) else [("state", data)]):
        typer.echo(f"  {key:<22} {_short(value) if not isinstance(value, str) else value}")


@app.command()
def export(
    jsonl: bool = typer.Option(True, "--jsonl", help="one JSON object per line (the only format)"),
    start: str = typer.Option(None, "--from", help="SEQ or TIME to start at"),
    until: str = typer.Option(None, "--until", help="SEQ or TIME to stop at"),
    run: str = typer.Option(None, "--run", help="only this run (default: every run)"),
    stream: str = StreamOption,
    config: Path = ConfigOption,
    quiet: bool = QuietOption,
) -> None:
    """Every event in a range as JSON lines on stdout."""
    stream = _check_stream(stream)
    start_seq, start_time = parse_point(start, "--from") if start else (1, None)
    end_seq, end_time = parse_point(until, "--until") if until else (None, None)
    target = guarded(lambda: load_target(config))

    async def work(store: EventStore) -> None:
        with tracker(quiet=quiet) as bars:
            end, last = end_seq or await store.last_seq(stream), 0
            async for item in store.read(stream, subject_filter=names.run_filter(stream, run),
                                         start_seq=start_seq or 1, start_time=start_time,
                                         end_seq=end_seq, end_time=end_time):
                echo_json(_as_dict(item))
                if item.seq % 500 == 0:
                    bars.update("export", completed=item.seq, total=end, description=f"export {stream}")
                last = item.seq
            if bars.tasks:
                bars.update("export", completed=last, total=end)

    guarded(lambda: run_async(lambda: _with_store(target, work)))


UNDECODABLE = "(undecodable)"


def decoded_type(data: bytes) -> str:
    """What a stored message is, by its decoded type (never by the subject it came on):
    its tag, ``unknown:<type>`` for a type this build does not know, or ``UNDECODABLE``."""
    try:
        event = codec.decode(data)
    except DecodeError:
        return UNDECODABLE
    return f"unknown:{event.type}" if isinstance(event, codec.UnknownEvent) else event.tag


@app.command()
def stats(config: Path = ConfigOption) -> None:
    """Counts per event type (as decoded) and the size of every stream."""
    target = guarded(lambda: load_target(config))

    async def work(store: EventStore) -> None:
        for stream in names.STREAM_PREFIX:
            st = await store.stream_state(stream)
            typer.echo(f"{stream:<9} {st.messages:>10} msgs {st.bytes / 1e6:>10.2f} MB  "
                       f"seq {st.first_seq}..{st.last_seq}")
            if stream == names.WORK or not st.messages:
                continue
            counts: dict[str, int] = {}

            def count(seq: int, subject: str, ts: float, data: bytes, counts=counts) -> None:
                tag = decoded_type(data)
                counts[tag] = counts.get(tag, 0) + 1

            await store.replay(stream, count)
            for tag, n in sorted(counts.items()):
                typer.echo(f"    {tag:<24} {n:>10}")

    guarded(lambda: run_async(lambda: _with_store(target, work)))

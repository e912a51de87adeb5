"""Sending a command and waiting for its outcome (accepted / rejected) by correlation id."""

from __future__ import annotations

import asyncio

from streams import codec, names
from streams.commands import Command
from streams.errors import CommandTimeout
from streams.events import CommandAccepted, CommandRejected
from streams.store import EventStore


async def send_command(
    store: EventStore, command: Command, *, timeout: float = 10.0
) -> CommandAccepted | CommandRejected:
    """Append ``command`` to COMMANDS and wait for the controller's answer."""
    answer: asyncio.Future[CommandAccepted | CommandRejected] = (
        asyncio.get_running_loop().create_future()
    )

    async def on_msg(msg) -> None:
        try:
            event = codec.decode(msg.data)
        except Exception:  # noqa: BLE001 - someone else's poison is not our answer
            return
        if (
            isinstance(event, (CommandAccepted, CommandRejected))
            and event.command_id == command.id
            and not answer.done()
        ):
            answer.set_result(event)

    subject = names.aggregate_filter(names.EVENTS, command.run, names.AGG_COMMANDS)
    sub = await store.nc.subscribe(subject, cb=on_msg)
    try:
        await store.append(command)
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise CommandTimeout(
                f"no controller answered '{command.name}' in {timeout:.0f} s: is the loop running? "
                f"(the command is recorded and will be handled when it starts)"
            ) from None
    finally:
        await sub.unsubscribe()

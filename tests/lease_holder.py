"""A process that holds a singleton role and writes under its fence, for the lease tests.

    python -m tests.lease_holder --url URLS --creds FILE --run RUN --role trainer --node a

Holds ``--role`` once (``handlers.cluster.leases.hold_role``): while it holds it, appends a
fenced ``training.started`` every ``--every`` seconds through ``RoleLease.append``, checking
its stop between writes, never its lease (a paused holder does not know it is paused: the
fence is what must stop it). Prints one JSON line per fact (taken, wrote, refused, lost) and
exits 0 when the holding ends (taken over, or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from handlers.cluster.leases import RoleLease, hold_role
from streams import events as ev
from streams.config import NatsSettings
from streams.connection import connect
from streams.errors import FenceLost
from streams.store import EventStore


def say(**fact) -> None:
    print(json.dumps(fact), flush=True)


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    settings = NatsSettings(url=args.url, credentials=args.creds, replicas=3, ping_interval_s=0.5,
                            max_outstanding_pings=2)
    conn = await connect(settings, name=f"lease-holder-{args.node}", ensure=False)
    store = EventStore(conn)

    async def body(held: RoleLease, role_stop: asyncio.Event) -> None:
        say(taken=held.fence, owner=held.owner, seq=held.taken_seq)
        index = 0
        while not role_stop.is_set():
            index += 1
            event = ev.TrainingStarted.new(args.run, trainer=held.owner, parent_model="m0",
                                           shards=[], window_positions=index, samples_planned=1)
            try:
                seq = await held.append(event)
            except FenceLost as exc:
                say(refused=held.fence, error=str(exc))
                return
            say(wrote=seq, fence=held.fence)
            await asyncio.sleep(args.every)  # the write pace

    try:
        await hold_role(store, args.run, args.role, body, stop=stop, node=args.node, once=True)
        say(ended=True)
    finally:
        await conn.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser()
    for flag in ("--url", "--creds", "--run", "--role", "--node"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--every", type=float, default=0.1)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))

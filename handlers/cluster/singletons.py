"""The singleton services a node agent runs for its node's roles, each under its fenced lease.

A node whose roles (``config/cluster.yaml``) include ``train``, ``sync`` or ``promote`` competes
for the matching singleton roles (``ROLE_SERVICES``): the loop's own services
(``handlers.loop.process.SERVICES``), each run by ``handlers.cluster.leases.hold_role`` on
whichever node holds the role, through a ``FencedStore`` (every event it appends carries the
role's fence and is refused once another node took the role over). A node that loses a role
stops that service and waits to take it again; a dead node's role is taken over once its
lease expires (``lease_ttl_s``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib

import msgspec

from handlers.cluster.leases import FencedStore, RoleLease, hold_role
from handlers.loop.config import ConfigInForce
from handlers.loop.process import SERVICES, service_arguments
from handlers.runtime.service import ServiceContext

__all__ = ["ROLE_SERVICES", "serve_singleton", "singletons_of"]

# A node role → the singleton services (role leases) it competes for.
ROLE_SERVICES: dict[str, tuple[str, ...]] = {
    "train": ("trainer",),
    "sync": ("sync",),
    "promote": ("promoter", "evaluator"),
}


def singletons_of(roles: tuple[str, ...] | list[str]) -> list[str]:
    """The singleton services of a node with ``roles``."""
    return [service for role in roles for service in ROLE_SERVICES.get(role, ())]


async def serve_singleton(ctx: ServiceContext, service: str, in_force: ConfigInForce, *,
                          node: str) -> None:
    """Run ``service`` whenever this node holds its role, until ``ctx.stop``."""
    module = importlib.import_module(SERVICES[service])
    config = msgspec.structs.replace(in_force.loop, nats=ctx.log.settings)

    async def body(held: RoleLease, role_stop: asyncio.Event) -> None:
        fenced = dataclasses.replace(ctx, name=f"{node}-{service}", store=FencedStore(held),
                                     stop=role_stop, extra={**ctx.extra, "node": f"{node}-{service}"})
        await module.serve(fenced, config, **service_arguments(module.serve, in_force))

    await hold_role(ctx.store, ctx.run, service, body, stop=ctx.stop, node=node)

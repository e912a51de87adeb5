"""Bringing the cluster up: the embedded servers started (or ``nats.urls`` checked), the
credentials written where missing, every stream, KV bucket and object store applied at the
configured replicas (as admin), and the config's ``min_version`` / ``max_model_lag`` recorded
in the log as the policy agents obey (``handlers.cluster.policy``; again at each heal, so an
edited config takes effect); and keeping the embedded servers running.
"""

from __future__ import annotations

import asyncio
import time

from handlers.cluster import credentials
from handlers.cluster.config import ClusterConfig
from handlers.cluster.servers import LocalCluster
from streams.config import NatsSettings
from streams.errors import CredentialsError, JetzeroError, NotAuthorized

__all__ = ["apply_definitions", "apply_with_retry", "bring_up", "heal_round", "nodes_of",
           "record_config_policy", "restart_dead_servers"]


def nodes_of(cfg: ClusterConfig) -> dict[str, list[str]]:
    """Node name → its roles (each node gets a login of its own)."""
    return {node.name: list(node.roles) for node in cfg.nodes}


async def apply_definitions(cfg: ClusterConfig, timeout: float = 30.0) -> None:
    """Streams, buckets and object stores at ``cfg.replicas``, as admin; retried while the
    cluster has no meta leader or is catching up (its API times out then)."""
    await apply_with_retry(cfg.settings_for("admin"), timeout)


async def apply_with_retry(settings: NatsSettings, timeout: float = 30.0) -> None:
    from streams.connection import connect

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await connect(settings, name="jetzero-cluster-up", long_lived=False)
            await conn.close()
            return
        except (JetzeroError, TimeoutError) as exc:
            if time.monotonic() > deadline or isinstance(exc, (NotAuthorized, CredentialsError)):
                raise
            await asyncio.sleep(0.2)  # the election's pace, not a synchronisation


async def record_config_policy(store, cfg: ClusterConfig, by: str) -> list[str]:
    """Record the config's policy when it differs from the one in force; a line if it did."""
    from handlers.cluster.policy import record_policy

    event = await record_policy(store, cfg.run, min_version=cfg.min_version,
                                max_model_lag=cfg.max_model_lag, by=by)
    if event is None:
        return []
    return [f"policy recorded: min_version {event.min_version}, max_model_lag {event.max_model_lag}"]


async def bring_up(cfg: ClusterConfig, *, detach: bool = True) -> list[str]:
    """Start what is not running, wait until healthy, apply the definitions; lines saying what."""
    lines = []
    if cfg.nats.embedded:
        cluster = LocalCluster(cfg.nats, nodes=nodes_of(cfg))
        cluster.start(detach=detach)
        lines += [f"{s.name} {s.url} pid {s.pid()} store {s.directory}" for s in cluster.servers]
    elif not cfg.nats.credentials:
        credentials.ensure(cfg.credentials_dir, nodes_of(cfg))
    await apply_definitions(cfg)
    lines.append(f"cluster up: {len(cfg.nats.server_urls())} servers, replicas {cfg.replicas}; "
                 f"clients: {','.join(cfg.nats.server_urls())}")
    from streams.connection import connect
    from streams.store import EventStore

    conn = await connect(cfg.settings_for("admin"), name="jetzero-cluster-up", long_lived=False, ensure=False)
    try:
        lines += await record_config_policy(EventStore(conn), cfg, "cluster up")
    finally:
        await conn.close()
    from handlers.cluster.launch import start_agents  # noqa: PLC0415 - the ssh nodes' agents

    return lines + await start_agents(cfg)


def restart_dead_servers(cfg: ClusterConfig) -> list[str]:
    """Start again every embedded server whose process is gone (on its store)."""
    if not cfg.nats.embedded:
        return []
    cluster = LocalCluster(cfg.nats, nodes=nodes_of(cfg))
    done = []
    for i, server in enumerate(cluster.servers):
        if server.pid() is None:
            cluster.start_server(i, detach=True)
            done.append(f"restarted {server.name} (its process was gone)")
    return done


async def heal_round(store, cfg: ClusterConfig, timeout: float, *, quiet: bool = False) -> list[str]:
    """One heal (``handlers.cluster.heal``): resync lagging agents, restart the unreachable
    where their launch method allows; what it did, as lines (``quiet``: none when every agent
    is in step)."""
    from handlers.cluster import heal
    from handlers.cluster.launch import SshLauncher, restart_stopped

    policy = await record_config_policy(store, cfg, "cluster heal")
    report = await heal.heal(store, cfg.run, timeout=timeout, by="cluster heal")
    lines = policy + await heal.restart_unreachable(report, {n.name: n.launch for n in cfg.nodes},
                                           SshLauncher(cfg).restart)
    restarted = {a.node for a in report.of(heal.UNREACHABLE)}
    lines += [line for line in await restart_stopped(cfg) if line.split(":")[0] not in restarted]
    if quiet and not lines and all(a.outcome == heal.IN_STEP for a in report.actions):
        return []
    return [*report.lines(), *lines]

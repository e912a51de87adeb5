"""``cluster status``: every server, each stream's leader and replicas' health, live nodes, the
singleton roles' leases and the policy in force.

A plain dict (what ``--json`` prints) built from the servers' ``/healthz`` (embedded) or their
client ports (``nats.urls``), JetStream stream info (``streams.cluster_info``) as admin, the
nodes KV (``handlers.cluster.nodes.live_nodes``), the locks KV with each role's fence
(``handlers.cluster.leases.held_roles``; each node lists the roles it holds) and the run's
``cluster.policy_set`` (``handlers.cluster.policy``). A part that cannot be read says why in
its ``error`` instead of failing the whole report.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from handlers.cluster.config import ClusterConfig
from streams import definitions, names
from streams.errors import JetzeroError
from streams.server import host_port, port_open

__all__ = ["cluster_status", "render_status", "stream_names"]


def stream_names(cfg: ClusterConfig) -> list[str]:
    """Every stream jetzero defines: the four, then the KV buckets' and object stores'."""
    settings = cfg.settings_for("admin")
    return ([c.name for c in definitions.stream_configs(settings) if c.name]
            + [names.kv_stream(c.bucket) for c in definitions.kv_configs(settings)]
            + [f"OBJ_{b}" for b in definitions.OBJECT_BUCKETS])


def servers_status(cfg: ClusterConfig) -> list[dict[str, Any]]:
    if cfg.nats.embedded:
        from handlers.cluster.servers import LocalCluster

        out = []
        for server in LocalCluster(cfg.nats).servers:
            healthy, detail = server.healthz()
            out.append({"name": server.name, "url": server.url, "pid": server.pid(),
                        "running": server.running(), "healthy": healthy, "detail": detail})
        return out
    out = []
    for url in cfg.nats.urls:
        host, port = host_port(url)
        up = port_open(host, port, timeout=1.0)
        out.append({"name": url, "url": url, "pid": None, "running": up, "healthy": up,
                    "detail": "reachable" if up else "unreachable"})
    return out


async def cluster_status(cfg: ClusterConfig) -> dict[str, Any]:
    """The whole report (see the module docstring)."""
    from handlers.cluster.leases import held_roles
    from handlers.cluster.nodes import live_nodes
    from handlers.cluster.policy import current_policy
    from streams.cluster_info import placement
    from streams.connection import connect
    from streams.store import EventStore

    report: dict[str, Any] = {"run": cfg.run, "replicas": cfg.replicas,
                              "servers": servers_status(cfg), "streams": [], "nodes": [],
                              "leases": [], "policy": None, "time": time.time()}
    if not any(s["running"] for s in report["servers"]):
        report["error"] = "no server is running"
        return report
    try:
        conn = await connect(cfg.settings_for("admin"), name="jetzero-cluster-status",
                             long_lived=False, ensure=False)
    except JetzeroError as exc:
        report["error"] = str(exc)
        return report
    try:
        for name in stream_names(cfg):
            try:
                report["streams"].append((await placement(conn.js, name)).as_dict())
            except JetzeroError as exc:
                report["streams"].append({"stream": name, "error": str(exc)})
        try:
            nodes = await live_nodes(conn, cfg.run)
            report["nodes"] = [msgspec.to_builtins(s) for _, s in sorted(nodes.items())]
        except Exception as exc:  # noqa: BLE001 - the report says why, the rest still shows
            report["nodes_error"] = f"{exc.__class__.__name__}: {exc}"
        store = EventStore(conn)
        try:
            report["leases"] = [msgspec.to_builtins(h) for h in await held_roles(store, cfg.run)]
            policy = await current_policy(store, cfg.run)
            report["policy"] = ({"min_version": policy.min_version, "max_model_lag": policy.max_model_lag,
                                 "by": policy.by} if policy.id else None)
        except Exception as exc:  # noqa: BLE001 - as above
            report["leases_error"] = f"{exc.__class__.__name__}: {exc}"
        for node in report["nodes"]:
            node["leases"] = [h["role"] for h in report["leases"] if h["node"] == node["node"]]
    finally:
        await conn.close()
    return report


def render_status(report: dict[str, Any]) -> str:
    lines = [f"run {report['run']}, replicas {report['replicas']}", "servers:"]
    for s in report["servers"]:
        state = "healthy" if s["healthy"] else ("running, " + s["detail"] if s["running"] else "down")
        lines.append(f"  {s['name']:<4} {s['url']:<24} {state}")
    if report.get("error"):
        lines.append(f"streams: unavailable ({report['error']})")
    if report["streams"]:
        lines.append("streams (leader; followers):")
    for st in report["streams"]:
        if "error" in st:
            lines.append(f"  {st['stream']:<16} {st['error']}")
            continue
        followers = ", ".join(f"{f['name']} {f['health']}" for f in st["followers"]) or "-"
        lines.append(f"  {st['stream']:<16} R{st['replicas']} leader {st['leader'] or 'NONE'}; "
                     f"{followers}; {st['messages']} msgs")
    lines.append(f"nodes: {len(report['nodes'])} live")
    for node in report["nodes"]:
        lines.append("  " + " ".join(f"{k}={v}" for k, v in node.items() if v not in ("", [], {})))
    if report.get("nodes_error"):
        lines.append(f"  nodes unavailable: {report['nodes_error']}")
    if report.get("leases_error"):
        lines.append(f"leases unavailable: {report['leases_error']}")
    else:
        lines.append(f"leases: {len(report['leases'])} held")
        for held in report["leases"]:
            lines.append(f"  {held['role']:<10} {held['node']:<12} fence {held['fence']} "
                         f"(entry revision {held['revision']})")
    policy = report.get("policy")
    if policy:
        lines.append(f"policy: min_version {policy['min_version']}, max_model_lag {policy['max_model_lag']}"
                     f" (by {policy['by'] or '?'})")
    elif not report.get("leases_error") and not report.get("error"):
        lines.append("policy: none recorded (no version or model-lag limits)")
    return "\n".join(lines)

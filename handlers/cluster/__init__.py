"""Cluster: many machines on one JetStream cluster — servers, per-role credentials, node agents,
fenced leases for singleton roles, model sync, version-skew healing, status."""

__all__ = [  # each module adds its name here
    "config", "credentials", "servers", "status", "up",
    "agent", "heal", "model_sync", "nodes", "policy", "sync_report",
    "launch", "leases", "singletons",
]

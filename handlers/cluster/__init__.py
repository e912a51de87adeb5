"""Cluster: many machines on one JetStream cluster — servers, per-role credentials, node agents,
fenced leases for singleton roles, model sync, version-skew healing, status."""

__all__ = []  # type: ignore[var-annotated]  # each module adds its name here

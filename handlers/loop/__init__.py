"""The unified loop: its typed config, the supervisor and its processes, and every handler
and worker of the loop (controller, selfplay, sync, trainer, health, metrics, status)."""

__all__ = [
    "checkpoints", "config", "control", "controller", "figures", "health", "metrics", "process",
    "selfplay", "status", "supervisor", "sync", "trainer", "training_plan",
]

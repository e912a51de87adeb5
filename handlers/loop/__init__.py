"""The unified loop: its typed config, the supervisor and its processes, and every handler
and worker of the loop (controller, selfplay, sync, trainer, health, metrics, status, the run report)."""

__all__ = [
    "charts", "checkpoints", "config", "control", "controller", "figures", "health", "metrics", "process",
    "report", "report_charts", "selfplay", "status", "supervisor", "sync", "trainer", "training_plan",
]

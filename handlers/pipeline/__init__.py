"""CI pipeline: validate a pull request by playing its code and model against the base's —
engines over a line protocol, quality / match / speed / test gates, JUnit and markdown reports."""

__all__ = [
    "bundle",
    "config",
    "engine_process",
    "engines",
    "history",
    "match",
    "model_checks",
    "protocol",
    "remote",
    "report",
    "snapshot",
    "speed",
    "tests_gate",
    "train",
    "train_process",
    "validate",
    "work_player",
    "worktree",
]

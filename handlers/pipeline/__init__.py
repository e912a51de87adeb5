"""CI pipeline: validate a pull request by playing its code and model against the base's —
engines over a line protocol, quality / match / speed / test gates, JUnit and markdown reports."""

__all__ = []  # type: ignore[var-annotated]  # each module adds its name here

"""Progress bars for long commands: one helper, rich underneath, quiet unless at a terminal.

``tracker(quiet=...)`` gives a ``Tracker`` whose bars are drawn on stderr only when both
stdout and stderr are terminals and ``quiet`` is not set; otherwise every call is a no-op, so
scripts, pipes and CI logs stay clean. A bar is named by a key (a player, a match, a stream):
``update`` creates it on first use and moves it; ``note`` is free text shown after the counts
(an SPRT's LLR between its bounds, say).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Tracker", "enabled", "tracker"]


def enabled(quiet: bool = False) -> bool:
    """Whether bars are drawn: not ``quiet``, and stdout and stderr are both terminals."""
    return not quiet and sys.stdout.isatty() and sys.stderr.isatty()


class Tracker:
    """Bars by key over one rich ``Progress`` (``None``: draws nothing)."""

    def __init__(self, progress: Any = None):
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    @property
    def active(self) -> bool:
        return self.progress is not None

    def update(self, key: str, *, completed: float, total: float | None = None, description: str = "",
               note: str = "") -> None:
        if self.progress is None:
            return
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = self.progress.add_task(description or key, total=total, note=note)
        self.progress.update(task, completed=completed, total=total, note=note,
                             **({"description": description} if description else {}))


@contextmanager
def tracker(*, quiet: bool = False) -> Iterator[Tracker]:
    """A ``Tracker`` drawing on stderr while the block runs (a no-op one when not ``enabled``)."""
    if not enabled(quiet):
        yield Tracker()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
        console=Console(file=sys.stderr), transient=False,
    )
    with progress:
        yield Tracker(progress)

"""The base ref's code in a temporary git worktree, always removed again.

``base_worktree(repo, ref)`` resolves ``ref`` to a commit (``BaseRefMissing`` when it names
none), checks it out detached into a temporary folder with ``git worktree add``, yields the
folder, and removes it (``git worktree remove --force``, then ``prune``) on the way out —
after an error, Ctrl-C (KeyboardInterrupt) or SIGTERM (``terminate_as_interrupt`` turns it
into KeyboardInterrupt so the same ``finally`` runs). ``merge_base`` gives the default base:
the merge base of HEAD with ``main``.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streams.errors import JetzeroError

__all__ = [
    "BaseRefMissing",
    "base_worktree",
    "git",
    "head_commit",
    "merge_base",
    "resolve_commit",
    "terminate_as_interrupt",
]

WORKTREE_PREFIX = "jetzero-base-"


class BaseRefMissing(JetzeroError):
    """The base ref names no commit of the repository (or the folder is not a git repository)."""


def git(repo: str | Path, *args: str, check: bool = True) -> str:
    """``git -C repo args...``'s stdout; ``BaseRefMissing`` with git's message on failure."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BaseRefMissing(f"git {' '.join(args)}: {exc}") from None
    if check and done.returncode != 0:
        message = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise BaseRefMissing(f"git {' '.join(args)}: {message[-1] if message else done.returncode}")
    return done.stdout.strip()


def resolve_commit(repo: str | Path, ref: str) -> str:
    """The full commit id ``ref`` names in ``repo``."""
    if not ref or ref.startswith("-"):
        raise BaseRefMissing(f"base ref {ref!r} is not a ref")
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except BaseRefMissing:
        raise BaseRefMissing(f"base ref {ref!r} names no commit in {repo}") from None


def head_commit(repo: str | Path) -> str:
    """HEAD's commit, with ``+dirty`` when the working tree has changes; ``""`` outside git."""
    try:
        head = git(repo, "rev-parse", "HEAD")
        dirty = git(repo, "status", "--porcelain", "--untracked-files=no")
    except BaseRefMissing:
        return ""
    return head + ("+dirty" if dirty else "")


def merge_base(repo: str | Path, branch: str = "main") -> str:
    """The merge base of HEAD with ``branch`` (the default base of a pull request)."""
    resolve_commit(repo, branch)
    return git(repo, "merge-base", "HEAD", branch)


@contextmanager
def base_worktree(repo: str | Path, ref: str) -> Iterator[tuple[Path, str]]:
    """``(folder, commit)``: ``ref`` checked out in a temporary worktree, removed on exit."""
    commit = resolve_commit(repo, ref)
    folder = Path(tempfile.mkdtemp(prefix=WORKTREE_PREFIX))
    try:
        git(repo, "worktree", "add", "--detach", "--force", str(folder), commit)
        yield folder, commit
    finally:
        git(repo, "worktree", "remove", "--force", str(folder), check=False)
        shutil.rmtree(folder, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt (so cleanup runs as on Ctrl-C)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

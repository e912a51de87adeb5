"""Waiting on a condition in tests: poll an async predicate until it holds, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(predicate: Callable[[], Awaitable[T]], timeout: float, what: str,
                poll: float = 0.2) -> T:
    """The first truthy value of ``predicate()``; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")

"""Waiting on conditions with deadlines: tests wait for what they expect, never for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def assert_eventually(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Wait until condition() holds, failing after timeout seconds: tests wait on conditions, never on sleeps."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def async_assert_eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


async def eventually_async(condition: Callable[[], Awaitable[bool]], within: float = 10.0, every: float = 0.05) -> None:
    """`async_assert_eventually` for a condition that has to call something (an API, a store) to know."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)

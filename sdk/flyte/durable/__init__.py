"""`flyte.durable`: time that survives a re-attempt (Flyte 2's module).

`time()` and `now()` are recorded as checkpoints of the calling action, like `@flyte.trace` results, so a later
attempt of the same action (after a crash, a lost worker or a retry) sees the same values in the same order.
`sleep(seconds)` records when it started: a re-attempt sleeps only what is left of the original interval, and
not at all when that has passed. Outside a task they are the plain clock and a plain sleep.

Each is called as `flyte.durable.sleep(5)` from sync code and `await flyte.durable.sleep.aio(5)` from async code.
While a durable sleep waits, the attempt still holds its worker.
"""

from __future__ import annotations

import asyncio
import time as _clock
from datetime import datetime

from .._trace import trace

__all__ = ["now", "sleep", "time"]


@trace
def _sleep_started() -> float:
    return _clock.time()


@trace
def _durable_time() -> float:
    return _clock.time()


@trace
def _durable_now() -> datetime:
    return datetime.now()


def _remaining(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError(f"flyte.durable.sleep: seconds={seconds!r} must be a number >= 0")
    return _sleep_started() + seconds - _clock.time()


class _Sleep:
    """Sleep `seconds` in all, counted from the first attempt that reached this call."""

    def __call__(self, seconds: float) -> None:
        remaining = _remaining(seconds)
        if remaining > 0:
            _clock.sleep(remaining)

    async def aio(self, seconds: float) -> None:
        remaining = _remaining(seconds)
        if remaining > 0:
            await asyncio.sleep(remaining)


class _Time:
    """Seconds since the epoch, as first seen by this call in this action."""

    def __call__(self) -> float:
        return _durable_time()

    async def aio(self) -> float:
        return _durable_time()


class _Now:
    """The local date and time, as first seen by this call in this action."""

    def __call__(self) -> datetime:
        return _durable_now()

    async def aio(self) -> datetime:
        return _durable_now()


sleep = _Sleep()
time = _Time()
now = _Now()

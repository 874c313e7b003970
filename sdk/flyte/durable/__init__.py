"""`flyte.durable`: time that survives a re-attempt (Flyte 2's module).

`time()` and `now()` are recorded as checkpoints of the calling action, like `@flyte.trace` results, so a later
attempt of the same action (after a crash, a lost worker or a retry) sees the same values in the same order.
`sleep(seconds)` records when it started: a re-attempt sleeps only what is left of the original interval, and
not at all when that has passed. Outside a task they are the plain clock and a plain sleep.

Each is called as `flyte.durable.sleep(5)` from sync code and `await flyte.durable.sleep.aio(5)` from async code.
Remotely, a durable sleep longer than `FLYTE_SUSPEND_AFTER` seconds (60 by default) holds no worker: the attempt
ends without a result (no retry spent) and the gateway places the action again when the sleep is over; the new
attempt replays its checkpoints up to the sleep, which then returns at once.
"""

from __future__ import annotations

import asyncio
import time as _clock
from datetime import datetime

from .._context import current_action
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


def _wake_at(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError(f"flyte.durable.sleep: seconds={seconds!r} must be a number >= 0")
    return _sleep_started() + seconds


class _Sleep:
    """Sleep `seconds` in all, counted from the first attempt that reached this call."""

    def __call__(self, seconds: float) -> None:
        wake_at = _wake_at(seconds)
        action = current_action.get()
        if action is None or _on_loop(action.controller.loop):
            # Outside a task, or a sync call on the task's own loop (which waiting there would deadlock).
            _clock.sleep(max(0.0, wake_at - _clock.time()))
            return
        controller = action.controller
        asyncio.run_coroutine_threadsafe(controller.sleep_until(action, wake_at), controller.loop).result()

    async def aio(self, seconds: float) -> None:
        wake_at = _wake_at(seconds)
        action = current_action.get()
        if action is None:
            await asyncio.sleep(max(0.0, wake_at - _clock.time()))
            return
        await action.controller.sleep_until(action, wake_at)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


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

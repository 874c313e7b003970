"""Time as a dependency: the `Clock` a part is given instead of calling `time.time()` itself.

Production code takes `SYSTEM_CLOCK`; a unit test takes a `ManualClock` and moves time by hand, so a lease, a
backoff or a queue limit expires exactly when the test says, with no sleeps. Imports nothing else of `flyte`: the
gateway and the agent both use it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock", "wait_event"]


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (what records store)."""
        ...

    def monotonic(self) -> float:
        """Seconds that only move forward (what durations are measured with)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """The machine's clocks and the event loop's sleep."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that moves only when `advance` is called; sleepers wake when it passes their deadline.

    Wall and monotonic time move together (`time()` is `start` plus the monotonic reading)."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._start = start
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._start + self._now

    def monotonic(self) -> float:
        return self._now

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (a test advances once the code under test is asleep)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleep whose deadline it reached (they run at the next loop turn)."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, not by {seconds}")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float | None) -> bool:
    """Wait until `event` is set (True) or `seconds` of `clock` pass (False); None waits for the event alone."""
    if seconds is None:
        await event.wait()
        return True
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()
    return event.is_set()

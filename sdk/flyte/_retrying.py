"""The one way a loop that retries waits: capped exponential backoff with full jitter.

Every reconnect and re-list loop (agents, workers, the dispatcher's watches, the etcd watch, the Kubernetes pod watch)
draws its delays here. Full jitter (a uniform draw between zero and the capped exponential) spreads out the retries of
many clients that failed together, say every agent and worker after a gateway restart, so they do not return in
waves that fail again. A task's own `retries` are a different thing: `flyte.Backoff`, deterministic per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

__all__ = ["RetryDelay", "capped_exponential"]


def capped_exponential(first: float, cap: float, failures: int) -> float:
    """`first * 2**failures`, at most `cap`: the most the wait after `failures` failures may be."""
    return min(cap, first * 2.0 ** min(failures, 62))


class RetryDelay:
    """Delays for one retrying loop: wait n is uniform in [0, min(cap, first * 2**n)]; `reset` after a success."""

    def __init__(self, first: float, cap: float, *, draw: Callable[[float], float] | None = None):
        if not 0 < first <= cap:
            raise ValueError(f"RetryDelay(first={first}, cap={cap}): need 0 < first <= cap")
        self.first = first
        self.cap = cap
        self._draw = draw or (lambda ceiling: random.uniform(0.0, ceiling))
        self._failures = 0

    @property
    def ceiling(self) -> float:
        """The most the next wait can be."""
        return capped_exponential(self.first, self.cap, self._failures)

    def next(self) -> float:
        """The next wait in seconds; each call counts one more failure."""
        delay = self._draw(self.ceiling)
        self._failures += 1
        return delay

    def reset(self) -> None:
        """The loop succeeded: the next failure starts again from `first`."""
        self._failures = 0

    async def sleep(self, stop: asyncio.Event | None = None) -> float:
        """Wait the next delay (cut short when `stop` is set); returns the delay drawn."""
        delay = self.next()
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not `wait_for`, which on 3.11 can swallow a cancel
                    await stop.wait()
        return delay

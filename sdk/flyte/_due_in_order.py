"""Keys each due a fixed delay after it was added, served by one event-loop timer.

The agent's `running` reports (an attempt still running 0.2 s after it started) and a pool worker's finish notices
(a result still unanswered 0.1 s after its report began) both wait a fixed delay per key, so keys fall due in the
order they were added. One timer at the oldest key's time serves them all: a timer per key cost a fan-out's agent
~8% of its CPU in the timer heap's Python-level comparisons, and every call of a chain ~20 Python calls of a pool
worker's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DueInOrder(Generic[T]):
    """Each key added is handed to `on_due(key, value)` `delay` seconds later, unless it is dropped first."""

    def __init__(self, delay: float, on_due: Callable[[str, T], None]) -> None:
        self._delay = delay
        self._on_due = on_due
        self._due: dict[str, tuple[float, T]] = {}
        """Keys waiting, oldest first, with when each is due (on the loop's clock) and its value."""
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: str, value: T) -> None:
        """`key` is due `delay` from now (a key added again moves to the back, so the order stays the due order)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self._delay
        self._due.pop(key, None)
        self._due[key] = (due, value)
        if self._timer is None:
            self._timer = loop.call_at(due, self._hand_due)

    def drop(self, key: str) -> bool:
        """`key` is not due any more; whether it was waiting."""
        return self._due.pop(key, None) is not None

    def _hand_due(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._due:
            key, (due, value) = next(iter(self._due.items()))
            if due > now:
                self._timer = loop.call_at(due, self._hand_due)
                return
            del self._due[key]
            self._on_due(key, value)

"""Time limits for a task: how long it may run and how long it may wait in a queue before it starts.

Also home of `to_timedelta`, the one place where "seconds or a timedelta" becomes a positive `timedelta`,
so every duration-taking value object accepts and rejects the same things.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Timeout", "TimeoutType", "normalize_timeout", "to_timedelta"]


def to_timedelta(value: object, where: str) -> timedelta:
    """`value` (int/float seconds or a timedelta) as a positive timedelta; `where` prefixes the error."""
    # bool is an int subclass, and `timeout=True` is a mistake rather than one second.
    if isinstance(value, bool):
        raise ValueError(f"{where}={value!r} is a bool, not a duration in seconds or a timedelta")
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError(f"{where}={value!r} must be > 0")
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{where}={value!r} must be a finite number of seconds")
        if value <= 0:
            raise ValueError(f"{where}={value!r} must be > 0")
        return timedelta(seconds=value)
    raise ValueError(f"{where}={value!r} is not a duration in seconds or a timedelta")


@dataclass(frozen=True)
class Timeout:
    """Upper bounds on an action's run time and queue time; exceeding either fails the attempt."""

    max_runtime: timedelta | int | float | None = None
    """Longest an attempt may run once started (seconds or a timedelta; stored as a timedelta); None: no limit."""

    max_queued_time: timedelta | int | float | None = None
    """Longest an action may wait to be scheduled (seconds or a timedelta), or None for no limit."""

    def __post_init__(self) -> None:
        if self.max_runtime is None and self.max_queued_time is None:
            raise ValueError("Timeout: give max_runtime, max_queued_time or both")
        if self.max_runtime is not None:
            object.__setattr__(self, "max_runtime", to_timedelta(self.max_runtime, "Timeout: max_runtime"))
        if self.max_queued_time is not None:
            queued = to_timedelta(self.max_queued_time, "Timeout: max_queued_time")
            object.__setattr__(self, "max_queued_time", queued)

    @property
    def max_runtime_seconds(self) -> float | None:
        """`max_runtime` in seconds, or None when run time is unbounded."""
        return None if self.max_runtime is None else _seconds(self.max_runtime)

    @property
    def max_queued_seconds(self) -> float | None:
        """`max_queued_time` in seconds, or None when queueing is unbounded."""
        return None if self.max_queued_time is None else _seconds(self.max_queued_time)

    def to_dict(self) -> dict[str, float | None]:
        """Seconds as floats, for the wire and for display."""
        return {"max_runtime": self.max_runtime_seconds, "max_queued_time": self.max_queued_seconds}


TimeoutType = Timeout | int | float | timedelta
"""What a task's `timeout=` accepts."""


def _seconds(value: timedelta | int | float) -> float:
    # After __post_init__ the fields are always timedeltas; the union is only the constructor's view.
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def normalize_timeout(value: int | float | timedelta | Timeout | None) -> Timeout | None:
    """The `timeout=` argument of a task as a `Timeout` (a bare duration is the max run time)."""
    if value is None or isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        raise ValueError(f"timeout={value!r} is not seconds, a timedelta or a Timeout")
    return Timeout(max_runtime=to_timedelta(value, "timeout"))

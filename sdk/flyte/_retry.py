"""How often a failed action is retried, and how long to wait between attempts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

__all__ = ["Backoff", "RetryStrategy", "normalize_retries"]


def _seconds(value: object, where: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    # bool is an int subclass; `base=True` is a slip, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where}={value!r} must be a finite number of seconds")
    return float(value)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: attempt n waits `min(cap, base * factor ** (n - 1))` seconds before retrying.

    Durations are seconds or `timedelta`s (Flyte 2 writes `Backoff(base=timedelta(seconds=10), ...)`); they are
    stored as float seconds. Unlike Flyte 2 (factor 1, no cap), the defaults grow: 1 s, 2 s, 4 s ... up to 60 s.
    """

    base: float | timedelta = 1.0
    """Time before the first retry (>= 0)."""

    factor: float = 2.0
    """Growth per further attempt (>= 1; 1 gives a constant delay)."""

    cap: float | timedelta | None = 60.0
    """The longest delay (>= base); None is allowed only with factor 1, as in Flyte 2, and means `base`."""

    def __post_init__(self) -> None:
        base = _seconds(self.base, "Backoff: base")
        factor = _seconds(self.factor, "Backoff: factor")
        if self.cap is None:
            if factor != 1:
                raise ValueError(f"Backoff: cap=None needs factor=1 (got factor={self.factor!r}); set a cap")
            cap = base
        else:
            cap = _seconds(self.cap, "Backoff: cap")
        if base < 0:
            raise ValueError(f"Backoff: base={self.base!r} must be >= 0")
        if factor < 1:
            raise ValueError(f"Backoff: factor={self.factor!r} must be >= 1")
        if cap < base:
            raise ValueError(f"Backoff: cap={self.cap!r} must be >= base ({self.base!r})")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "cap", cap)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first) before the next one."""
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"Backoff.delay: attempt={attempt!r} must be an int >= 1")
        base, cap = self.base_seconds, self.cap_seconds
        if base == 0:
            return 0.0
        try:
            grown = base * self.factor ** (attempt - 1)
        except OverflowError:
            # Far past the cap anyway; long-running retry loops must not crash on the arithmetic.
            return cap
        return min(cap, grown)

    def compute_delay(self, n: int) -> timedelta:
        """Flyte 2's form: the wait before retry `n`, counted from 0."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"Backoff.compute_delay: n={n!r} must be an int >= 0")
        return timedelta(seconds=self.delay(n + 1))

    def to_dict(self) -> dict[str, float]:
        """The normalised backoff, for the wire and for display."""
        return {"base": self.base_seconds, "factor": self.factor, "cap": self.cap_seconds}

    @property
    def base_seconds(self) -> float:
        """`base` as float seconds (it always is after construction; the union is the constructor's view)."""
        return _seconds(self.base, "Backoff: base")

    @property
    def cap_seconds(self) -> float:
        """`cap` as float seconds."""
        return _seconds(self.cap, "Backoff: cap")


@dataclass(frozen=True)
class RetryStrategy:
    """Up to `count` retries after the first attempt fails, spaced by `backoff`."""

    count: int = 0
    """Retries after the first attempt (>= 0), so at most count + 1 attempts in all."""

    backoff: Backoff = field(default_factory=Backoff)
    """The wait between attempts; None retries at once, as Flyte 2's `backoff=None` does (stored as a zero wait)."""

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"RetryStrategy: count={self.count!r} must be an int >= 0")
        given: object = self.backoff
        if given is None:
            object.__setattr__(self, "backoff", Backoff(base=0.0, factor=1.0, cap=0.0))
        if not isinstance(self.backoff, Backoff):
            raise ValueError(f"RetryStrategy: backoff={self.backoff!r} must be a Backoff")

    def to_dict(self) -> dict[str, object]:
        """The normalised strategy, for the wire and for display."""
        return {"count": self.count, "backoff": self.backoff.to_dict()}


def normalize_retries(value: int | RetryStrategy | None) -> RetryStrategy:
    """The `retries=` argument of a task as a `RetryStrategy`; None means no retries."""
    if value is None:
        return RetryStrategy()
    if isinstance(value, RetryStrategy):
        return value
    # `retries=True` has no obvious count, so it is refused rather than read as 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"retries={value!r} must be an int >= 0, a RetryStrategy or None")
    return RetryStrategy(count=value)

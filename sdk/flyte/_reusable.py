"""How a task environment keeps warm worker containers around and shares them between actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TypeGuard

from flyte._timeout import to_timedelta

__all__ = ["ReusePolicy"]


@dataclass(frozen=True)
class ReusePolicy:
    """Keep between `min_replicas` and `max_replicas` workers alive, each running `concurrency` actions."""

    replicas: int | tuple[int, int] = 2
    """A fixed worker count (>= 1), or a (min, max) range that autoscales; min may be 0 to scale to zero."""

    concurrency: int = 1
    """How many actions one worker runs at the same time (>= 1)."""

    idle_ttl: timedelta | int | float | None = None
    """How long a worker may sit without work before it is stopped (seconds or timedelta); None: never."""

    scaledown_ttl: timedelta | int | float | None = None
    """How long load must stay low before the pool shrinks (seconds or timedelta); None: backend default."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "replicas", _check_replicas(self.replicas))
        if not _is_count(self.concurrency) or self.concurrency < 1:
            raise ValueError(f"ReusePolicy: concurrency={self.concurrency!r} must be an int >= 1")
        for name in ("idle_ttl", "scaledown_ttl"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, to_timedelta(value, f"ReusePolicy: {name}"))

    @property
    def min_replicas(self) -> int:
        """The fewest workers kept alive."""
        return self.replicas if isinstance(self.replicas, int) else self.replicas[0]

    @property
    def max_replicas(self) -> int:
        """The most workers the pool grows to."""
        return self.replicas if isinstance(self.replicas, int) else self.replicas[1]

    @property
    def idle_ttl_seconds(self) -> float | None:
        """`idle_ttl` in seconds, or None."""
        return _seconds(self.idle_ttl)

    @property
    def scaledown_ttl_seconds(self) -> float | None:
        """`scaledown_ttl` in seconds, or None."""
        return _seconds(self.scaledown_ttl)

    def to_dict(self) -> dict[str, int | float | None]:
        """The normalised policy, for the wire and for display."""
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "concurrency": self.concurrency,
            "idle_ttl": self.idle_ttl_seconds,
            "scaledown_ttl": self.scaledown_ttl_seconds,
        }


def _is_count(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but `replicas=True` is a mistake, not one replica.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_replicas(value: object) -> int | tuple[int, int]:
    if _is_count(value):
        if value < 1:
            # Zero fixed replicas would leave a reusable environment with nowhere to run.
            raise ValueError(f"ReusePolicy: replicas={value!r} must be >= 1 (use (0, n) to scale to zero)")
        return value
    if isinstance(value, tuple | list) and len(value) == 2 and all(_is_count(v) for v in value):
        low, high = int(value[0]), int(value[1])
        if low < 0 or high < 1 or low > high:
            raise ValueError(f"ReusePolicy: replicas={value!r} must be (min, max) with 0 <= min <= max and max >= 1")
        return (low, high)
    raise ValueError(f"ReusePolicy: replicas={value!r} must be an int >= 1 or a (min, max) pair of ints")


def _seconds(value: timedelta | int | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)

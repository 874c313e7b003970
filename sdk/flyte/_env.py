"""Numeric settings read from environment variables, with a clear error for a value that is not one."""

from __future__ import annotations

import math
import os


class EnvSettingError(ValueError):
    """An environment variable holds what its setting cannot take. The CLI reports it on one line, exit code 2."""


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """`name` as a whole number of at least `minimum`; `default` when it is unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise EnvSettingError(
            f"{name}={raw!r} is not a whole number of at least {minimum}; "
            f"give one (the default is {default}) or unset it"
        )
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0, above: bool = True) -> float:
    """`name` as a number (seconds, usually) above `minimum` (or at least it, with `above=False`); `default` when it is
    unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (above and value == minimum):
        bound = f"above {minimum:g}" if above else f"of at least {minimum:g}"
        raise EnvSettingError(
            f"{name}={raw!r} is not a number {bound}; give one (the default is {default:g}) or unset it"
        )
    return value

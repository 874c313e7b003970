"""Settings read from environment variables (numbers and switches), with a clear error for a value that is not one."""

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


ON_WORDS = frozenset({"1", "true", "yes", "on"})
"""What a switch says to mean on, lower-cased: in the environment here, and on the command line (`flyte run`)."""
OFF_WORDS = frozenset({"0", "false", "no", "off"})


def env_switch(name: str, default: bool) -> bool:
    """`name` as on (`1`, `true`, `yes`, `on`) or off (`0`, `false`, `no`, `off`), in any case; `default` when it is
    unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in ON_WORDS:
        return True
    if raw.lower() in OFF_WORDS:
        return False
    raise EnvSettingError(
        f"{name}={raw!r} is neither on (1, true, yes, on) nor off (0, false, no, off); "
        f"give one (the default is {'on' if default else 'off'}) or unset it"
    )

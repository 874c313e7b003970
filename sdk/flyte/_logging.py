"""`flyte.logger` (for task code) and `flyte.system_logger` (the SDK's own), as Flyte 2 names them.

Both are standard `logging` loggers; `init(log_level=)` / `init_from_config(log_level=)` set their level.
"""

from __future__ import annotations

import logging

__all__ = ["logger", "set_log_level", "system_logger"]

system_logger = logging.getLogger("flyte")
"""The SDK's own messages."""

logger = logging.getLogger("flyte.user")
"""For the code of tasks: `flyte.logger.info("loaded %d rows", n)`."""


def set_log_level(level: int | str | None) -> None:
    """Set both loggers' level (an int such as `logging.DEBUG`, or its name); None leaves them as they are."""
    if level is None:
        return
    if isinstance(level, str):
        resolved = logging.getLevelName(level.upper())
        if not isinstance(resolved, int):
            raise ValueError(f"log_level={level!r} is not a logging level name such as 'INFO'")
        level = resolved
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValueError(f"log_level={level!r} must be a logging level (an int or a name)")
    system_logger.setLevel(level)
    logger.setLevel(level)

"""Work started and not awaited (a send, a cleanup, a watcher), held until it ends: the event loop keeps only weak
references to tasks, so a task nobody holds may be collected halfway through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

__all__ = ["Background"]

T = TypeVar("T")


class Background:
    """The tasks one owner started in the background and that are still running."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, work: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __iter__(self) -> Iterator[asyncio.Future[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

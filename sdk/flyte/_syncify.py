"""Flyte 2's calling convention for SDK functions: `f(...)` blocks, `await f.aio(...)` from async code."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Syncified(Generic[P, R]):
    """An async function callable both ways; the sync form runs it on a loop of its own."""

    def __init__(self, func: Callable[P, Coroutine[Any, Any, R]]):
        self._func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._func(*args, **kwargs))
        # Called from code that runs on a loop: blocking that loop's thread would deadlock anything the call
        # awaits there, so the call gets a thread and a loop of its own, with the caller's context.
        context = contextvars.copy_context()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = context.run(asyncio.run, self._func(*args, **kwargs))
            except BaseException as error:
                box["error"] = error

        thread = threading.Thread(target=run, name=f"flyte-{self._func.__name__}", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    async def aio(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._func(*args, **kwargs)


def syncify(func: Callable[P, Coroutine[Any, Any, R]]) -> Syncified[P, R]:
    """Make `func` callable as `func(...)` and `await func.aio(...)`."""
    return Syncified(func)

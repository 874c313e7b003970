"""`flyte.map`: run a task over iterables concurrently, results in input order.

Every call is named when the map starts, in input order, so the children's names do not depend on which finishes
first; `concurrency` bounds how many run at once. `flyte.map(...)` is a plain iterator for sync tasks,
`flyte.map.aio(...)` an async iterator for async ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from typing import Any

from ._context import current_action, group
from ._task import TaskTemplate


def _unwrap(func: Any) -> tuple[TaskTemplate[..., Any], tuple[Any, ...], dict[str, Any]]:
    if isinstance(func, functools.partial):
        task, args, kwargs = _unwrap(func.func)
        return task, (*args, *func.args), {**kwargs, **func.keywords}
    if isinstance(func, TaskTemplate):
        return func, (), {}
    raise TypeError(f"flyte.map expects a task or a functools.partial of one, not {func!r}")


def _validate(concurrency: int) -> None:
    if not isinstance(concurrency, int) or concurrency < 0:
        raise ValueError(f"flyte.map: concurrency={concurrency!r} must be an int >= 0 (0 means unbounded)")


class _Map:
    def __call__(
        self,
        func: Any,
        *iterables: Iterable[Any],
        group_name: str | None = None,
        concurrency: int = 0,
        return_exceptions: bool = False,
    ) -> Iterator[Any]:
        """Yield `func(*items)` for each tuple of items, in order, running up to `concurrency` at once; the calls
        form the group `group_name` when one is given (Flyte 2's argument)."""
        _validate(concurrency)
        task, fixed_args, fixed_kwargs = _unwrap(func)
        parent = current_action.get()
        if parent is None:
            return self._plain(task, fixed_args, fixed_kwargs, iterables, return_exceptions)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise TypeError("flyte.map blocks; from async code use `async for r in flyte.map.aio(...)`")
        calls = _submit_all(task, fixed_args, fixed_kwargs, iterables, group_name)
        loop = parent.controller.loop
        futures = asyncio.run_coroutine_threadsafe(_start(calls, concurrency), loop).result()
        return self._ordered(futures, loop, return_exceptions)

    @staticmethod
    def _plain(
        task: TaskTemplate[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        iterables: tuple[Iterable[Any], ...],
        return_exceptions: bool,
    ) -> Iterator[Any]:
        for items in zip(*iterables, strict=False):
            try:
                yield task.func(*args, *items, **kwargs)
            except Exception as error:
                if not return_exceptions:
                    raise
                yield error

    @staticmethod
    def _ordered(
        futures: list[asyncio.Future[Any]], loop: asyncio.AbstractEventLoop, return_exceptions: bool
    ) -> Iterator[Any]:
        async def result_of(future: asyncio.Future[Any]) -> Any:
            return await future

        try:
            for future in futures:
                try:
                    yield asyncio.run_coroutine_threadsafe(result_of(future), loop).result()
                except Exception as error:
                    if not return_exceptions:
                        raise
                    yield error
        finally:
            for future in futures:
                loop.call_soon_threadsafe(future.cancel)

    async def aio(
        self,
        func: Any,
        *iterables: Iterable[Any],
        group_name: str | None = None,
        concurrency: int = 0,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Any]:
        """`async for r in flyte.map.aio(task, xs)`: the async twin of `flyte.map`."""
        _validate(concurrency)
        task, fixed_args, fixed_kwargs = _unwrap(func)
        if current_action.get() is None:
            for result in self._plain(task, fixed_args, fixed_kwargs, iterables, return_exceptions):
                yield await result if asyncio.iscoroutine(result) else result
            return
        futures = await _start(_submit_all(task, fixed_args, fixed_kwargs, iterables, group_name), concurrency)
        try:
            for future in futures:
                try:
                    yield await future
                except Exception as error:
                    if not return_exceptions:
                        raise
                    yield error
        finally:
            for future in futures:
                future.cancel()


def _submit_all(
    task: TaskTemplate[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    iterables: tuple[Iterable[Any], ...],
    group_name: str | None,
) -> list[Coroutine[Any, Any, Any]]:
    # Calls take their name and group when submitted, so the group only needs to hold while they are made.
    with group(group_name) if group_name else contextlib.nullcontext():
        return [task.aio(*args, *items, **kwargs) for items in zip(*iterables, strict=False)]


async def _start(calls: list[Coroutine[Any, Any, Any]], concurrency: int) -> list[asyncio.Future[Any]]:
    if concurrency > 0:
        gate = asyncio.Semaphore(concurrency)

        async def gated(call: Coroutine[Any, Any, Any]) -> Any:
            async with gate:
                return await call

        calls = [gated(call) for call in calls]
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(call) for call in calls]
    for future in futures:
        # Results are read in order; a failure read later (or never, after a break) is not "unretrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return futures


map = _Map()

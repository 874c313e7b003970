"""A coroutine started in its caller's turn of the event loop, as Python 3.12's eager tasks start one.

A task's first step waits for a turn of the loop, behind everything that is ready then: a WebSocket frame given to
a writer task left the gateway only after the rest of the handler that sent it, and whatever else was ready (a chain
call's `here` and its parent's news each waited ~0.1-0.3 ms so). Sending is a coroutine in aiohttp, but one that
writes the frame to its socket at once and suspends only when the socket's buffer is full. Run up to its first
suspension where it is called, it sends there; only a send that has to wait for the socket becomes a task.

Only for coroutines that do not ask which task runs them nor set context variables: until it suspends, one runs as
part of its caller's task (an `asyncio.timeout` in it would cancel the caller).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start_eagerly(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T] | None:
    """Run `coro` up to its first suspension now; None if it finished (what it raised is raised here), else a task
    that finishes it."""
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, suspended_on))


@types.coroutine
def _finish(coro: Coroutine[Any, Any, T], suspended_on: Any) -> Generator[Any, Any, T]:
    """The rest of `coro`, in the task that awaits this: what it waits on is handed to the task as it was yielded,
    and what the task sends or throws back (a result, a cancellation) goes on to `coro`."""
    while True:
        try:
            value = yield suspended_on
        except BaseException as error:
            try:
                suspended_on = coro.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                suspended_on = coro.send(value)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

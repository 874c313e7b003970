"""Running one attempt of a task's body, the same way in local mode and in a remote worker.

The body runs with the action's context set; an async body as a coroutine (under `asyncio.timeout`), a sync body
in a thread of its own so a timeout can interrupt it. Whatever the body raises comes back as a `flyte.errors`
error (a plain exception becomes a `RuntimeUserError` carrying its type name and traceback), and the output is
encoded here, so a value that cannot cross an action boundary fails in the task that produced it.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any

from ._codec import EncodedValue
from ._context import ActionContext, _group_path, current_action
from ._task import TaskTemplate
from .errors import BaseRuntimeError, InlineIOMaxBytesBreached, TaskTimeoutError, error_info, from_info
from .report import Report

log = logging.getLogger("flyte.report")


async def execute_body(
    task: TaskTemplate[..., Any], action: ActionContext, values: dict[str, Any]
) -> EncodedValue | None:
    """Run the task's function as `action` and return its encoded output."""
    timeout = task.settings.timeout
    seconds = timeout.max_runtime_seconds if timeout is not None else None
    if task.settings.report:
        action.report = Report(action.action_name)
    action_token = current_action.set(action)
    group_token = _group_path.set(None)
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            if task.is_async:
                result = await task.func(**values)
            else:
                result = await _run_in_thread(task.func, values, action.action_name)
    except TimeoutError as error:
        if deadline.expired():
            raise TaskTimeoutError(
                f"{task.name} ran past its timeout of {seconds or 0:g}s (attempt {action.attempt})"
            ) from None
        # The task's own code raised TimeoutError: an ordinary user error.
        raise from_info(error_info(error)) from None
    except BaseRuntimeError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as error:
        raise from_info(error_info(error)) from None
    finally:
        _group_path.reset(group_token)
        current_action.reset(action_token)
        await _save_report(action)
    interface = task.interface
    if not interface.has_output:
        return None
    output = interface.output_codec.encode(result)
    if output.size > task.settings.max_inline_io_bytes:
        raise InlineIOMaxBytesBreached(
            f"output of {task.name} is {output.size} bytes, over max_inline_io_bytes="
            f"{task.settings.max_inline_io_bytes}"
        )
    return output


async def _save_report(action: ActionContext) -> None:
    """The attempt's report as it ended (failed attempts included: that is when it is most wanted)."""
    report = action.report
    if report is None or not report.has_content():
        return
    try:
        await asyncio.to_thread(action.controller.save_report, action, report.get_final_report())
    except Exception:
        # A report is a by-product: failing to keep it must not change how the action ends.
        log.warning("could not save the report of action %s", action.action_name, exc_info=True)


class _Interrupted(BaseException):
    """Raised inside a sync task's thread when its attempt timed out or was aborted."""


async def _run_in_thread(func: Callable[..., Any], values: dict[str, Any], action_name: str) -> Any:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def body() -> None:
        try:
            try:
                ok, value = True, context.run(func, **values)
            except BaseException as error:
                ok, value = False, error
            loop.call_soon_threadsafe(settle, ok, value)
        except _Interrupted:
            # The interrupt landed after the body finished (it raced the end of the attempt): nothing to stop.
            return

    # A thread per attempt, not a pool: a timed-out body is interrupted in its own thread and nowhere else.
    thread = threading.Thread(target=body, name=f"flyte-{action_name}", daemon=True)
    thread.start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # Cancelled by the attempt's deadline or an abort: stop the body where it is. The body then settles the
        # future with _Interrupted, which nobody awaits any more (the shield let go of it): retrieve it, or asyncio
        # reports "Future exception was never retrieved" when the future is collected.
        future.add_done_callback(_retrieve)
        _interrupt(thread)
        raise


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _interrupt(thread: threading.Thread) -> None:
    """Raise _Interrupted in the thread at its next Python instruction (blocking C calls finish first)."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Interrupted))

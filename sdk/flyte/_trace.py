"""`@flyte.trace`: a checkpoint inside a task.

A traced call made by a task's code records its result under a key made of the function, its call number within
the action and its inputs. A later attempt of the same action (after a crash, a lost worker or a retry) replays
the recorded result instead of calling the function again. Outside a task a traced function is a plain call.
Calling a task inside a traced function is an error: a trace is a checkpoint of plain code.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import cloudpickle

from . import _otel
from ._codec import EncodedValue, ValueKind, value_bytes
from ._context import ActionContext, current_action, in_trace
from ._interface import TaskInterface

F = TypeVar("F", bound=Callable[..., Any])


def trace(func: F) -> F:
    """Record this function's results as checkpoints of the calling task (sync, async and generators)."""
    qualname = f"{func.__module__}.{func.__qualname__}"
    interface = TaskInterface(func, f"@trace {func.__qualname__}")
    span_name = f"trace {func.__qualname__}"
    ran: _otel.Attributes = {"flyte.trace": qualname, "flyte.replayed": False}
    replay: _otel.Attributes = {"flyte.trace": qualname, "flyte.replayed": True}

    def key_for(action: ActionContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        inputs = interface.encode_inputs(interface.bind(args, kwargs))
        return f"{qualname}#{next(action.traces)}:{inputs.digest}"

    def replayed(action: ActionContext, key: str) -> tuple[bool, Any]:
        hit = action.controller.trace_checkpoint(action, key)
        if hit is None:
            return False, None
        kind, payload = hit
        if kind == "items":
            return True, cloudpickle.loads(payload)
        value_kind: ValueKind = "json" if kind == "json" else "pickle"
        return True, interface.output_codec.decode(EncodedValue(value_kind, "", payload=payload))

    def record(action: ActionContext, key: str, value: Any) -> None:
        out: EncodedValue = interface.output_codec.encode(value)
        action.controller.record_trace(action, key, out.kind, value_bytes(out))

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        def async_gen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            action = current_action.get()
            if action is None or in_trace.get() is not None:
                return func(*args, **kwargs)  # type: ignore[no-any-return]
            key = key_for(action, args, kwargs)

            async def run() -> AsyncIterator[Any]:
                found, items = replayed(action, key)
                span = _otel.start_span(span_name, replay if found else ran)
                if found:
                    _otel.end_span(span)
                    for item in items:
                        yield item
                    return
                collected: list[Any] = []
                token = in_trace.set(qualname)
                try:
                    async for item in func(*args, **kwargs):
                        collected.append(item)
                        yield item
                finally:
                    in_trace.reset(token)
                    _otel.end_span(span)
                action.controller.record_trace(action, key, "items", cloudpickle.dumps(collected))

            return run()

        return async_gen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            action = current_action.get()
            if action is None or in_trace.get() is not None:
                return func(*args, **kwargs)  # type: ignore[no-any-return]
            key = key_for(action, args, kwargs)

            def run() -> Iterator[Any]:
                found, items = replayed(action, key)
                span = _otel.start_span(span_name, replay if found else ran)
                if found:
                    _otel.end_span(span)
                    yield from items
                    return
                collected: list[Any] = []
                token = in_trace.set(qualname)
                try:
                    for item in func(*args, **kwargs):
                        collected.append(item)
                        yield item
                finally:
                    in_trace.reset(token)
                    _otel.end_span(span)
                action.controller.record_trace(action, key, "items", cloudpickle.dumps(collected))

            return run()

        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            action = current_action.get()
            if action is None or in_trace.get() is not None:
                return func(*args, **kwargs)
            # The key is taken at call time, so call order (not scheduling order) numbers the checkpoints.
            key = key_for(action, args, kwargs)

            async def run() -> Any:
                found, value = replayed(action, key)
                if found:
                    _otel.end_span(_otel.start_span(span_name, replay))
                    return value
                token = in_trace.set(qualname)
                try:
                    with _otel.current_span(span_name, None, ran):
                        value = await func(*args, **kwargs)
                finally:
                    in_trace.reset(token)
                record(action, key, value)
                return value

            return run()

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        action = current_action.get()
        if action is None or in_trace.get() is not None:
            return func(*args, **kwargs)
        key = key_for(action, args, kwargs)
        found, value = replayed(action, key)
        if found:
            _otel.end_span(_otel.start_span(span_name, replay))
            return value
        token = in_trace.set(qualname)
        try:
            with _otel.current_span(span_name, None, ran):
                value = func(*args, **kwargs)
        finally:
            in_trace.reset(token)
        record(action, key, value)
        return value

    return sync_wrapper  # type: ignore[return-value]

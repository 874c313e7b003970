"""`@env.task`: a Python function that becomes an action when another task calls it.

Outside any action a task is its function: unit tests call it directly. Inside an action the call goes to the
current controller, which names the child deterministically, encodes its inputs and runs it (in-process in local
mode, through the gateway in remote mode). An async task returns an awaitable, so `asyncio.gather` fans out;
a sync task called from sync code blocks until its child action finishes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import inspect
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ._cache import Cache, normalize_cache
from ._context import current_action, in_trace
from ._interface import EncodedInputs, TaskInterface
from ._naming import child_action_name
from ._placement import Placement
from ._pod import PodTemplate
from ._resources import Resources
from ._retry import RetryStrategy, normalize_retries
from ._reusable import ReusePolicy
from ._secret import Secret, normalize_secrets
from ._timeout import Timeout, normalize_timeout
from .errors import RuntimeUserError

if TYPE_CHECKING:
    from datetime import timedelta

    from ._context import ActionContext
    from ._environment import TaskEnvironment
    from ._trigger import Trigger

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_INLINE_IO_BYTES = 10 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    """What an `override` may change: everything but the name, image and interface."""

    resources: Resources | None
    retries: RetryStrategy
    timeout: Timeout | None
    cache: Cache
    env_vars: Mapping[str, str]
    secrets: tuple[Secret, ...]
    queue: str | None
    reusable: ReusePolicy | None
    placement: Placement | None
    short_name: str
    max_inline_io_bytes: int
    report: bool
    pod_template: PodTemplate | None = None
    """Carried for Kubernetes; not applied by a backend yet (docs/flyte2-parity.md)."""
    entrypoint: bool = False
    """Flyte 2's marker for the tasks a user starts runs from (listed first by tools)."""
    interruptible: bool | None = None
    docs: str | None = None
    triggers: tuple[Trigger, ...] = ()
    """`@env.task(triggers=...)`: deployed with the task; the gateway runs them (docs/schedules.md)."""


class TaskTemplate(Generic[P, R]):
    """A task: its function, its environment, its interface and its settings."""

    def __init__(self, func: Callable[P, R], env: TaskEnvironment, settings: TaskSettings):
        self.func = func
        self.env = env
        self.settings = settings
        self.name = f"{env.name}.{func.__name__}"
        """The task's full name, `<env>.<function>`."""
        self.is_async = inspect.iscoroutinefunction(func)
        self.interface = TaskInterface(func, self.name)
        self.identity = f"{self.name}@{self.interface.digest}"
        """Name and interface: what a child action's deterministic name is derived from."""
        self.deployed_version: str | None = None
        """Set on references to deployed tasks: the version a remote call runs ("latest" or a version)."""
        functools.update_wrapper(self, func)

    @property
    def short_name(self) -> str:
        return self.settings.short_name

    def __repr__(self) -> str:
        return f"TaskTemplate({self.name}: {self.interface.signature_text})"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        parent = current_action.get()
        if parent is None:
            return self.func(*args, **kwargs)
        _refuse_inside_trace(self.name)
        call = parent.controller.submit(self, parent, args, kwargs)
        if self.is_async and _in_async_code():
            return call  # type: ignore[return-value]
        # A sync task's body has no loop to await on: an async task it calls is waited for, like a sync one.
        return _wait_from_sync_code(self.name, parent.controller.loop, call)  # type: ignore[no-any-return]

    def child_call(
        self, parent: ActionContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[str, EncodedInputs]:
        """A call's deterministic child name and encoded inputs, made at call time (call order decides names)."""
        inputs = self.interface.encode_inputs(self.interface.bind(args, kwargs))
        return child_action_name(parent.action_name, self.identity, inputs.digest, next(parent.calls)), inputs

    def aio(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, Any]:
        """Await any task, sync or async, from async code: `await t.aio(x=1)`."""
        parent = current_action.get()
        if parent is None:
            return _as_coroutine(self.func, args, kwargs)
        _refuse_inside_trace(self.name)
        return parent.controller.submit(self, parent, args, kwargs)

    def override(
        self,
        *,
        resources: Resources | None = None,
        retries: int | RetryStrategy | None = None,
        timeout: int | float | timedelta | Timeout | None = None,
        cache: Any = None,
        env_vars: Mapping[str, str] | None = None,
        secrets: Any = None,
        queue: str | None = None,
        reusable: ReusePolicy | str | None = None,
        short_name: str | None = None,
        placement: Placement | None = None,
        max_inline_io_bytes: int | None = None,
    ) -> TaskTemplate[P, R]:
        """A copy of this task with other settings; name, image and interface stay as they are."""
        s = self.settings
        if reusable == "off":
            new_reusable: ReusePolicy | None = None
        elif isinstance(reusable, str):
            raise ValueError(f"override: reusable={reusable!r}; use a ReusePolicy or 'off'")
        else:
            new_reusable = reusable if reusable is not None else s.reusable
        if placement is not None and s.placement is not None:
            placement = s.placement.merge(placement)
        settings = dataclasses.replace(
            s,
            resources=resources if resources is not None else s.resources,
            retries=normalize_retries(retries) if retries is not None else s.retries,
            timeout=normalize_timeout(timeout) if timeout is not None else s.timeout,
            cache=normalize_cache(cache) if cache is not None else s.cache,
            env_vars={**s.env_vars, **env_vars} if env_vars else s.env_vars,
            secrets=normalize_secrets(secrets) if secrets is not None else s.secrets,
            queue=queue if queue is not None else s.queue,
            reusable=new_reusable,
            short_name=short_name or s.short_name,
            placement=placement if placement is not None else s.placement,
            max_inline_io_bytes=max_inline_io_bytes or s.max_inline_io_bytes,
        )
        clone: TaskTemplate[P, R] = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.settings = settings
        return clone


AsyncFunctionTaskTemplate = TaskTemplate
"""Flyte 2's name for a task made from a function; here every task is a `TaskTemplate`."""


def _refuse_inside_trace(task_name: str) -> None:
    traced = in_trace.get()
    if traced is not None:
        raise RuntimeUserError(
            "TaskInTraceError",
            f"task {task_name} was called inside @flyte.trace function {traced}; traces are checkpoints "
            "of plain code, call tasks from the task itself",
        )


def _in_async_code() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _wait_from_sync_code(task_name: str, loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, Any]) -> Any:
    if _in_async_code():
        call.close()
        raise TypeError(
            f"{task_name} is a sync task called from async code, which would block the event loop; "
            f"use `await {task_name.rpartition('.')[2]}.aio(...)`"
        )
    future = asyncio.run_coroutine_threadsafe(call, loop)
    try:
        # Short waits, not one long one: a timeout or abort interrupts this thread between them, and a thread
        # blocked inside one lock acquire could not be interrupted at all.
        while True:
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                continue
    except BaseException:
        # Interrupted (timeout, abort): take the child down with this thread.
        future.cancel()
        raise


async def _as_coroutine(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result

"""The context an action's code runs in: which run and action, which controller submits its children.

A task call looks here to decide what it is: outside any action it is a plain Python call; inside one it becomes a
child action submitted through the current controller. The context travels in `contextvars`, so each
`asyncio.gather`ed child and each thread running a sync task sees its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Coroutine, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._condition import _Condition
    from ._task import TaskTemplate
    from .report import Report


class Controller(Protocol):
    """Runs child actions for the code of a parent action. Local mode runs them in-process."""

    loop: asyncio.AbstractEventLoop

    def submit(
        self, task: TaskTemplate[..., Any], parent: ActionContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """Name and encode the call now (deterministic order), return the coroutine that runs it."""
        ...

    def trace_checkpoint(self, action: ActionContext, key: str) -> tuple[str, bytes] | None:
        """A `@flyte.trace` result recorded by an earlier attempt of this action, if any."""
        ...

    def record_trace(self, action: ActionContext, key: str, kind: str, payload: bytes) -> None: ...

    def save_report(self, action: ActionContext, page: str) -> str:
        """Keep the action's rendered report (replacing an earlier save); returns where it went."""
        ...

    async def create_condition(self, action: ActionContext, condition: _Condition[Any]) -> None:
        """Record a condition of the action (`flyte.new_condition`), so it can be signalled."""
        ...

    async def wait_condition(self, action: ActionContext, condition: _Condition[Any]) -> Any:
        """The condition's value once signalled; `ConditionTimedOutError` past its timeout."""
        ...

    async def sleep_until(self, action: ActionContext, wake_at: float) -> None:
        """A durable sleep's wait, until `wake_at` (seconds since the epoch)."""
        ...


@dataclass(slots=True)
class ActionContext:
    """The identity and bookkeeping of the action whose code is running."""

    controller: Controller
    run_name: str
    action_name: str
    task_name: str
    attempt: int
    project: str
    domain: str
    version: str
    custom_context: Mapping[str, str]
    group: str | None = None
    calls: Iterator[int] = field(default_factory=itertools.count)
    """The per-parent call sequence number that makes child names deterministic."""
    traces: Iterator[int] = field(default_factory=itertools.count)
    report: Report | None = None
    """The report of a task declared with `report=True`, fresh for each attempt."""
    holds_slot: bool = False
    """Whether this action holds one of the run's `max_action_concurrency` slots."""
    waiting_children: int = 0


@dataclass(frozen=True, slots=True)
class ActionID:
    """Which action this is: its name, its run's name, and where the run lives."""

    name: str
    run_name: str
    project: str
    domain: str


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What `flyte.ctx()` tells the code of a running task."""

    action: ActionID
    task_name: str
    attempt_number: int
    """Which attempt of the action this is, from 1 (Flyte 2's name)."""
    version: str
    custom_context: Mapping[str, str]
    group: str | None
    mode: str

    @property
    def attempt(self) -> int:
        """`attempt_number` under its earlier name here."""
        return self.attempt_number


current_action: ContextVar[ActionContext | None] = ContextVar("flyte_action", default=None)
_custom_overlay: ContextVar[Mapping[str, str]] = ContextVar("flyte_custom_context", default=MappingProxyType({}))
_group_path: ContextVar[str | None] = ContextVar("flyte_group", default=None)
in_trace: ContextVar[str | None] = ContextVar("flyte_in_trace", default=None)


def effective_custom_context(action: ActionContext) -> Mapping[str, str]:
    overlay = _custom_overlay.get()
    if not overlay:
        return action.custom_context
    return MappingProxyType({**action.custom_context, **overlay})


def current_group() -> str | None:
    return _group_path.get()


def ctx() -> TaskContext | None:
    """The running task's context, or None outside a task."""
    action = current_action.get()
    if action is None:
        return None
    return TaskContext(
        action=ActionID(action.action_name, action.run_name, action.project, action.domain),
        task_name=action.task_name,
        attempt_number=action.attempt,
        version=action.version,
        custom_context=effective_custom_context(action),
        group=_group_path.get() or action.group,
        mode=type(action.controller).__name__.removesuffix("Controller").lower(),
    )


def get_custom_context() -> dict[str, str]:
    """The custom context this code sees: the action's, plus any `custom_context` blocks around the call."""
    action = current_action.get()
    if action is None:
        return dict(_custom_overlay.get())
    return dict(effective_custom_context(action))


@contextlib.contextmanager
def custom_context(**values: str) -> Iterator[Mapping[str, str]]:
    """Add key-values to the custom context that this code and the actions it starts see."""
    for key, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"custom_context: {key}={value!r} must be a str")
    merged = MappingProxyType({**_custom_overlay.get(), **values})
    token = _custom_overlay.set(merged)
    try:
        yield merged
    finally:
        _custom_overlay.reset(token)


@contextlib.contextmanager
def group(name: str) -> Iterator[None]:
    """Group the actions started inside this block under one name (shown nested in progress and the UI)."""
    if not name or "/" in name:
        raise ValueError(f"group: name={name!r} must be non-empty and contain no '/'")
    parent = _group_path.get()
    token = _group_path.set(f"{parent}/{name}" if parent else name)
    try:
        yield
    finally:
        _group_path.reset(token)

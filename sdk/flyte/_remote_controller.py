"""Remote mode inside a worker: each task call becomes a child action in the gateway, awaited on the watch.

Naming and encoding happen at call time exactly as in local mode, so a recovered parent asks for the same names
and the gateway answers with the children it already has. Trace checkpoints recorded by earlier attempts of this
action are loaded when the worker starts and replayed; new ones travel with the result, so they are durable
exactly when the result is.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import _otel
from ._codec import EncodedValue, _blobs
from ._context import ActionContext, current_group, effective_custom_context
from ._interface import EncodedInputs
from ._task import TaskTemplate
from ._wire import (
    ActionSubmitRequest,
    ActionSummary,
    ConditionCreate,
    ConditionHook,
    ConditionRecord,
    Phase,
    PlacementSpec,
    ResourcesSpec,
    ReusableSpec,
    SuspendAnswer,
    SuspendRequest,
    TaskOverrides,
    WireTrace,
    WireValue,
)
from ._worker_link import LinkError, WorkerLink
from .errors import ActionAbortedError, ConditionFailedError, ConditionTimedOutError, RuntimeSystemError, from_info

if TYPE_CHECKING:
    from ._condition import _Condition
    from ._remote_task import RemoteTask

R = TypeVar("R")
SUSPEND_AFTER = 60.0
"""Seconds a condition is waited for, or the shortest durable sleep, before the attempt gives its worker back
(`FLYTE_SUSPEND_AFTER` in the worker's environment changes it)."""


def suspend_after() -> float:
    text = os.environ.get("FLYTE_SUSPEND_AFTER")
    try:
        return max(0.0, float(text)) if text else SUSPEND_AFTER
    except ValueError:
        return SUSPEND_AFTER


class AttemptSuspended(BaseException):
    """Unwinds a suspended attempt's code: the gateway already ended the attempt, so its worker reports nothing.
    A BaseException, so the task's own `except Exception` does not swallow it."""

    from ._remote_task import RemoteTask


REPORT_TRACE_KEY = "flyte.report"
"""The action's trace entry that names its report's blob (kind "report", payload the blob reference)."""


class RemoteController:
    """Submits the children of one running action to the gateway."""

    def __init__(self, link: WorkerLink, loop: asyncio.AbstractEventLoop, version: str, traces: dict[str, WireTrace]):
        self.link = link
        self.loop = loop
        self.version = version
        self._replay = {key: (t.kind, base64.b64decode(t.payload_b64)) for key, t in traces.items()}
        self.recorded: dict[str, WireTrace] = {}
        self._loop_thread = threading.get_ident()
        """Built on the worker's loop thread; the link may only be used from there."""

    def submit(
        self, task: TaskTemplate[..., Any], parent: ActionContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        name, inputs = task.child_call(parent, args, kwargs)
        request = self._request(task.name, task.deployed_version, name, parent, inputs, overrides_of(task))
        return self._call(task.interface.output_codec, parent.action_name, request)

    def submit_deployed(
        self, task: RemoteTask, parent: ActionContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """A call of a task known only by its deployed spec (`remote.Task.get` of code this worker lacks)."""
        name, inputs = task.child_call(parent, args, kwargs)
        request = self._request(task.name, task.deployed_version, name, parent, inputs, task.overrides)
        return self._call(task.interface.output_codec, parent.action_name, request)

    def _request(
        self,
        task: str,
        deployed_version: str | None,
        name: str,
        parent: ActionContext,
        inputs: EncodedInputs,
        overrides: TaskOverrides | None,
    ) -> ActionSubmitRequest:
        version = deployed_version or self.version
        return ActionSubmitRequest(
            name=name,
            parent=parent.action_name,
            task=task,
            version=None if version == "latest" else version,
            inputs={k: WireValue.from_encoded(v) for k, v in inputs.values.items()},
            group=current_group(),
            custom_context=dict(effective_custom_context(parent)),
            overrides=overrides,
        )

    async def _call(self, output: OutputDecoder, parent: str, request: ActionSubmitRequest) -> Any:
        attributes = {"flyte.child": request.name, "flyte.task": request.task}
        # The call's span covers submit and wait; the child's action span hangs under it.
        with _otel.current_span(f"call {request.task}", None, attributes) as traceparent:
            if traceparent is not None:
                request = request.model_copy(update={"traceparent": traceparent})
            submitted = await self.link.submit(request)
            child = submitted if submitted.phase.is_terminal else await self.link.wait_child(parent, request.name)
        return decode_result(output, child)

    def trace_checkpoint(self, action: ActionContext, key: str) -> tuple[str, bytes] | None:
        return self._replay.get(key)

    def record_trace(self, action: ActionContext, key: str, kind: str, payload: bytes) -> None:
        if threading.get_ident() != self._loop_thread:
            # A sync task's body (or a report flush) runs in a thread of its own; the link lives on the loop.
            self.loop.call_soon_threadsafe(self.record_trace, action, key, kind, payload)
            return
        trace = WireTrace(kind=kind, payload_b64=base64.b64encode(payload).decode())
        self.recorded[key] = trace
        self.link.record_trace(action.action_name, key, trace)

    async def create_condition(self, action: ActionContext, condition: _Condition[Any]) -> None:
        body = ConditionCreate(
            prompt=condition.prompt,
            prompt_type=condition.prompt_type,
            description=condition.description,
            data_type=condition.type_name,
            timeout_seconds=condition.timeout_seconds,
            webhook=None
            if condition.webhook is None
            else ConditionHook(url=condition.webhook.url, payload=condition.webhook.payload),
        )
        await self._on_link_loop(self.link.create_condition(action.action_name, condition.name, body))

    async def wait_condition(self, action: ActionContext, condition: _Condition[Any]) -> Any:
        link = self.link
        # Waited for here a while (a quick answer keeps the worker); then the attempt gives its worker back.
        record = await self._on_link_loop(link.wait_condition(action.action_name, condition.name, suspend_after()))
        if record.state == "waiting":
            record = await self._suspend(action, SuspendRequest(attempt=action.attempt, condition=condition.name))
        if record.state == "signalled":
            return condition.typed(record.value)
        raise ConditionTimedOutError(
            f"condition {condition.name!r} was not signalled within {condition.timeout_seconds:g} seconds"
        )

    async def sleep_until(self, action: ActionContext, wake_at: float) -> None:
        left = wake_at - time.time()
        if left > suspend_after():
            await self._suspend(action, SuspendRequest(attempt=action.attempt, until=wake_at))
        if left > 0:
            await asyncio.sleep(left)

    async def _suspend(self, action: ActionContext, request: SuspendRequest) -> ConditionRecord:
        """Suspend this attempt (raising `AttemptSuspended`), or the condition that ended meanwhile."""

        async def send() -> SuspendAnswer:
            # Read on the loop: a sync body's last checkpoints were queued there (record_trace) before this call.
            with_traces = request.model_copy(update={"traces": dict(self.recorded)})
            return await self.link.suspend(action.action_name, with_traces)

        answer = await self._on_link_loop(send())
        if answer.suspended:
            raise AttemptSuspended(request.condition or f"until {request.until}")
        assert answer.condition is not None
        return answer.condition

    async def _on_link_loop(self, call: Coroutine[Any, Any, R]) -> R:
        """Run a condition call on the link's loop (a sync task's body waits from a thread of its own)."""
        try:
            if asyncio.get_running_loop() is self.loop:
                return await call
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, self.loop))
        except LinkError as error:
            raise ConditionFailedError(f"the gateway refused the condition: {error.message} ({error.code})") from None

    def save_report(self, action: ActionContext, page: str) -> str:
        """Put the page in the gateway's blob store and record the blob on the action, as a trace entry that
        travels with the action's result (so it is kept exactly when the result is)."""
        ref = _blobs.put(page.encode("utf-8"))
        self.record_trace(action, REPORT_TRACE_KEY, "report", ref.encode())
        return ref


class OutputDecoder(Protocol):
    def decode(self, value: EncodedValue) -> Any: ...


def decode_result(output: OutputDecoder, child: ActionSummary) -> Any:
    """A finished child's value, or its error raised as the parent would see a local one."""
    if child.phase is Phase.SUCCEEDED:
        if child.output is None:
            return None
        return output.decode(child.output.to_encoded())
    if child.error is not None:
        raise from_info(child.error)
    if child.phase is Phase.ABORTED:
        raise ActionAbortedError(f"action {child.name} was aborted")
    raise RuntimeSystemError("UnknownOutcome", f"action {child.name} ended {child.phase.value} without an error")


def overrides_of(task: TaskTemplate[..., Any]) -> TaskOverrides | None:
    """The settings a call changed with `override(...)`, relative to the task as its environment defines it."""
    defined = task.env.tasks.get(task.func.__name__)
    if defined is None or defined.settings == task.settings:
        return None
    s, d = task.settings, defined.settings
    env_vars = dict(s.env_vars) if s.env_vars != d.env_vars else None
    # A pool's workers share their environment's variables: a call with its own runs in a process of its own.
    own_process = env_vars is not None and s.reusable is not None
    return TaskOverrides(
        resources=ResourcesSpec.model_validate(s.resources.to_dict())
        if s.resources is not None and s.resources != d.resources
        else None,
        retries=s.retries.count if s.retries != d.retries else None,
        timeout_seconds=s.timeout.max_runtime_seconds if s.timeout is not None and s.timeout != d.timeout else None,
        max_queued_seconds=s.timeout.max_queued_seconds if s.timeout is not None and s.timeout != d.timeout else None,
        reusable=ReusableSpec.model_validate(s.reusable.to_dict())
        if s.reusable is not None and s.reusable != d.reusable
        else None,
        reusable_off=(s.reusable is None and d.reusable is not None) or own_process,
        placement=PlacementSpec.model_validate(s.placement.to_dict())
        if s.placement is not None and s.placement != d.placement
        else None,
        env_vars=env_vars,
    )

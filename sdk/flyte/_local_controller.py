"""Local mode: every action of a run executes in this process, with remote mode's semantics.

Each action still crosses a boundary: its inputs and output are encoded and decoded through the wire codecs, its
name is deterministic, its errors become `flyte.errors` records, it gets retries with backoff on separate user
and system budgets, an enforced timeout, the shared cache, and `@flyte.trace` checkpoints replayed on a later
attempt. Async task bodies run as coroutines on the controller's loop (a fan-out of 10,000 is 10,000 coroutines);
sync bodies run in a thread of their own, so a timeout can interrupt them and a blocking body never stalls the
loop. Submitting a name this run already has answers with that action (a re-attempted parent finds the children
it already finished) instead of running it twice. A task's `env_vars` (over the run's) are in `os.environ` while
it runs; actions whose variables differ take turns (`_local_env` says how and why).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ._codec import EncodedValue
from ._condition import CONDITION_TRACE_PREFIX, _Condition, ask_on_terminal
from ._context import ActionContext, current_group, effective_custom_context
from ._execute import execute_body
from ._interface import EncodedInputs
from ._local_cache import LocalCache, cache_key
from ._local_env import EnvGate
from ._paths import cache_db_path
from ._run_state import ActionRecord, RunState
from ._task import TaskTemplate
from ._wire import Phase
from .errors import (
    ActionAbortedError,
    BaseRuntimeError,
    InlineIOMaxBytesBreached,
    NonRecoverableError,
    RetriesExhaustedError,
    error_info,
)

SYSTEM_RETRIES = 3
"""Attempts the platform may lose to its own failures before an action fails; never the user's budget."""


class LocalController:
    """Runs the actions of one local run."""

    def __init__(self, state: RunState, loop: asyncio.AbstractEventLoop, version: str):
        self.state = state
        self.loop = loop
        self.version = version
        limit = state.options.max_action_concurrency
        # Actions that wait on their children lend their slot back, so no nesting depth can deadlock the limit.
        self._slots = asyncio.Semaphore(limit) if limit else None
        self._inflight: dict[str, asyncio.Future[EncodedValue | None]] = {}
        # os.environ is the process's: actions whose env_vars differ take turns (see _local_env).
        self._env = EnvGate()
        self._overlays: dict[str, dict[str, str]] = {}
        self._env_holders: set[str] = set()

    # -- the Controller protocol -------------------------------------------------------------------------

    def submit(
        self, task: TaskTemplate[..., Any], parent: ActionContext, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        name, inputs = task.child_call(parent, args, kwargs)
        custom = effective_custom_context(parent)
        group = current_group()
        return self._call(task, name, parent, inputs, group, custom)

    def trace_checkpoint(self, action: ActionContext, key: str) -> tuple[str, bytes] | None:
        return self.state.traces.get(action.action_name, {}).get(key)

    def record_trace(self, action: ActionContext, key: str, kind: str, payload: bytes) -> None:
        self.state.traces.setdefault(action.action_name, {})[key] = (kind, payload)

    def save_report(self, action: ActionContext, page: str) -> str:
        path = self.state.metadata_dir / "reports" / f"{action.action_name}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole then renamed, so a reader (the CLI, a browser) never sees half a page.
        partial = path.with_suffix(".html.partial")
        partial.write_text(page, encoding="utf-8")
        partial.replace(path)
        return str(path)

    async def create_condition(self, action: ActionContext, condition: _Condition[Any]) -> None:
        """Nothing to record before the wait: the answer is kept (as a trace entry) once given."""

    async def wait_condition(self, action: ActionContext, condition: _Condition[Any]) -> Any:
        """Read the value from the terminal; a re-attempt of the action gets the answer it was given."""
        key = f"{CONDITION_TRACE_PREFIX}{condition.name}"
        known = self.trace_checkpoint(action, key)
        if known is not None:
            return condition.typed(json.loads(known[1]))
        value = await ask_on_terminal(condition)
        self.record_trace(action, key, "json", json.dumps(value).encode())
        return value

    async def sleep_until(self, action: ActionContext, wake_at: float) -> None:
        await asyncio.sleep(max(0.0, wake_at - time.time()))

    # -- running actions ---------------------------------------------------------------------------------

    async def run_root(self, task: TaskTemplate[..., Any], name: str, inputs: EncodedInputs) -> None:
        state = self.state
        state.phase = Phase.RUNNING
        try:
            state.output = await self.execute(task, name, None, inputs, None, state.options.custom_context)
            state.phase = Phase.SUCCEEDED
        except asyncio.CancelledError:
            state.phase = Phase.ABORTED
            state.error = error_info(ActionAbortedError(f"run {state.name} was aborted"))
        except BaseRuntimeError as error:
            state.phase = Phase.ABORTED if isinstance(error, ActionAbortedError) else Phase.FAILED
            state.error = error_info(error)

    async def _call(
        self,
        task: TaskTemplate[..., Any],
        name: str,
        parent: ActionContext,
        inputs: EncodedInputs,
        group: str | None,
        custom: Any,
    ) -> Any:
        # A parent waiting for its children lends back its slot and its hold on the environment gate.
        parent.waiting_children += 1
        if parent.waiting_children == 1:
            if self._slots is not None and parent.holds_slot:
                self._slots.release()
            await self._release_env(parent.action_name)
        try:
            output = await self.execute(task, name, parent.action_name, inputs, group, custom)
        finally:
            parent.waiting_children -= 1
            if parent.waiting_children == 0:
                if self._slots is not None and parent.holds_slot:
                    await self._slots.acquire()
                await self._hold_env(parent.action_name)
        if output is None:
            return None
        return task.interface.output_codec.decode(output)

    async def execute(
        self,
        task: TaskTemplate[..., Any],
        name: str,
        parent: str | None,
        inputs: EncodedInputs,
        group: str | None,
        custom: Any,
    ) -> EncodedValue | None:
        """Run one action to a result, or answer with the result this run already has under that name."""
        existing = self.state.actions.get(name)
        if existing is not None:
            inflight = self._inflight.get(name)
            if inflight is not None:
                return await asyncio.shield(inflight)
            if existing.phase is Phase.SUCCEEDED:
                return existing.output
        future: asyncio.Future[EncodedValue | None] = self.loop.create_future()
        self._inflight[name] = future
        try:
            output = await self._execute(task, name, parent, inputs, group, custom, existing)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # marks it retrieved: only duplicate submitters need to see it
            raise
        else:
            future.set_result(output)
            return output
        finally:
            del self._inflight[name]

    async def _execute(
        self,
        task: TaskTemplate[..., Any],
        name: str,
        parent: str | None,
        inputs: EncodedInputs,
        group: str | None,
        custom: Any,
        record: ActionRecord | None,
    ) -> EncodedValue | None:
        state = self.state
        settings = task.settings
        if record is None:
            record = ActionRecord(name, parent, task.name, group)
            state.add(record)
        else:
            state.move(record, Phase.QUEUED)
        if inputs.size > settings.max_inline_io_bytes:
            error = InlineIOMaxBytesBreached(
                f"inputs of {task.name} are {inputs.size} bytes, over max_inline_io_bytes="
                f"{settings.max_inline_io_bytes}"
            )
            self._fail(record, error)
            raise error
        key = self._cache_key(task, inputs)
        if key is not None and not state.options.overwrite_cache:
            hit = _cache().get(key)
            if hit is not None:
                record.cached = True
                record.output = hit
                state.move(record, Phase.SUCCEEDED)
                return hit
        user_failures = system_failures = 0
        while True:
            record.attempts += 1
            state.move(record, Phase.RUNNING)
            try:
                output = await self._attempt(task, record, inputs, custom)
            except asyncio.CancelledError:
                self._fail(record, ActionAbortedError(f"action {name} was aborted"), Phase.ABORTED)
                raise
            except BaseRuntimeError as error:
                if error.kind == "system":
                    system_failures += 1
                    retry = system_failures <= SYSTEM_RETRIES
                    if not retry:
                        error = RetriesExhaustedError(f"{task.name}: {system_failures} system failures: {error}")
                else:
                    user_failures += 1
                    retry = error.retryable and user_failures <= settings.retries.count
                if not retry:
                    self._fail(record, error)
                    raise error from None
                state.move(record, Phase.QUEUED)
                await asyncio.sleep(settings.retries.backoff.delay(max(user_failures, system_failures)))
                continue
            record.output = output
            if key is not None and output is not None:
                _cache().put(key, task.name, output)
            state.move(record, Phase.SUCCEEDED)
            return output

    def _fail(self, record: ActionRecord, error: BaseRuntimeError, phase: Phase = Phase.FAILED) -> None:
        record.error = error_info(error)
        self.state.move(record, phase)

    def _cache_key(self, task: TaskTemplate[..., Any], inputs: EncodedInputs) -> str | None:
        cache = task.settings.cache
        if not cache.is_enabled or self.state.options.disable_run_cache:
            return None
        version = cache.version_for(task.func, task.env.image, lambda: source_version(task.func))
        return cache_key(
            task.name, task.interface.digest, version, inputs.values, tuple(cache.ignored_inputs), cache.salt
        )

    async def _attempt(
        self, task: TaskTemplate[..., Any], record: ActionRecord, inputs: EncodedInputs, custom: Any
    ) -> EncodedValue | None:
        state = self.state
        action = ActionContext(
            controller=self,
            run_name=state.name,
            action_name=record.name,
            task_name=task.name,
            attempt=record.attempts,
            project=state.project,
            domain=state.domain,
            version=self.version,
            custom_context=custom,
            group=record.group,
        )
        values = task.interface.decode_inputs(inputs)
        # Locally a secret is what this process's environment already holds under the secret's variable.
        missing = [secret.env_var for secret in task.settings.secrets if secret.env_var not in os.environ]
        if missing:
            raise NonRecoverableError(
                f"{task.name} needs secrets that are not set: in local mode a secret is read from the environment "
                f"variable it is exposed as; set {', '.join(missing)}"
            )
        self._overlays[record.name] = {**state.options.env_vars, **task.settings.env_vars}
        try:
            await self._hold_env(record.name)
            if self._slots is None or record.parent is None:
                return await execute_body(task, action, values)
            await self._slots.acquire()
            action.holds_slot = True
            try:
                return await execute_body(task, action, values)
            finally:
                action.holds_slot = False
                self._slots.release()
        finally:
            await self._release_env(record.name)
            del self._overlays[record.name]

    async def _hold_env(self, action: str) -> None:
        overlay = self._overlays.get(action)
        if overlay is not None and action not in self._env_holders:
            await self._env.enter(overlay)
            self._env_holders.add(action)

    async def _release_env(self, action: str) -> None:
        if action in self._env_holders:
            self._env_holders.discard(action)
            await self._env.leave()


@functools.lru_cache(maxsize=1024)
def source_version(func: Callable[..., Any]) -> str:
    """The automatic cache version: a digest of the task function's source (its bytecode when unavailable)."""
    try:
        material = inspect.getsource(func).encode()
    except (OSError, TypeError):
        material = func.__code__.co_code
    return hashlib.sha256(material).hexdigest()[:16]


_CACHES: dict[str, LocalCache] = {}
_CACHES_LOCK = threading.Lock()


def _cache() -> LocalCache:
    path = cache_db_path()
    with _CACHES_LOCK:
        cache = _CACHES.get(str(path))
        if cache is None:
            cache = _CACHES[str(path)] = LocalCache(path)
        return cache

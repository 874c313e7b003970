"""`flyte.new_condition`: a task waits for a value (bool, int, float or str) that a person or a program gives it.

    approval = await flyte.new_condition.aio("approval", prompt="Deploy?", data_type=bool, timeout=3600)
    if await approval.wait.aio():
        ...

Remotely the condition is a record on the calling action in the gateway's store, signalled from the UI, the CLI
(`flyte signal condition RUN NAME VALUE`) or `flyte.remote.Condition.signal`; it survives restarts of the worker,
the agent and the gateway, and a re-attempt of the action returns the value at once if it was signalled meanwhile.
Locally the value is read from the terminal. Outside a task a condition cannot be waited for (as in Flyte 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from ._context import current_action
from ._syncify import Syncified, syncify
from .errors import ConditionFailedError, ConditionTimedOutError

PromptType = Literal["text", "markdown"]
T = TypeVar("T", bool, int, float, str)
DATA_TYPES: dict[type, Literal["bool", "int", "float", "str"]] = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class ConditionWebhook:
    """Flyte 2's webhook called when a condition is created (`{callback_uri}` in the payload is replaced by the
    URL that signals the condition: `POST` `{"value": ...}` to it with a token allowed to signal)."""

    url: str
    payload: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"ConditionWebhook: url={self.url!r} must be an http:// or https:// URL")


@dataclass(frozen=True)
class _Condition(Generic[T]):
    """A condition of the running action; `wait()` / `await wait.aio()` returns its value once signalled."""

    name: str
    prompt: str = "Approve?"
    prompt_type: PromptType = "text"
    data_type: type[T] = bool  # type: ignore[assignment]
    description: str = ""
    timeout: timedelta | int | float | None = None
    webhook: ConditionWebhook | None = None
    timeout_seconds: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"flyte.new_condition: name={self.name!r} must be a non-empty string")
        if self.data_type not in DATA_TYPES:
            raise TypeError(f"flyte.new_condition: data_type={self.data_type!r} must be one of bool, int, float, str")
        if self.prompt_type not in ("text", "markdown"):
            raise ValueError(f"flyte.new_condition: prompt_type={self.prompt_type!r} must be 'text' or 'markdown'")
        if self.timeout is not None:
            seconds = self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else self.timeout
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                raise ValueError(f"flyte.new_condition: timeout={self.timeout!r} must be positive")
            if math.isfinite(seconds):
                object.__setattr__(self, "timeout_seconds", float(seconds))

    @property
    def type_name(self) -> Literal["bool", "int", "float", "str"]:
        return DATA_TYPES[self.data_type]

    def typed(self, value: Any) -> T:
        """A signalled value as `data_type` (the gateway checked the type; JSON gives an int for 2.0)."""
        return self.data_type(value)

    @property
    def wait(self) -> Syncified[[], T]:
        """Wait until the condition is signalled and return its value; `ConditionTimedOutError` after `timeout`."""

        async def wait() -> T:
            action = current_action.get()
            if action is None:
                raise RuntimeError("Conditions can only be awaited within a task context.")
            return await action.controller.wait_condition(action, self)  # type: ignore[no-any-return]

        return syncify(wait)


@syncify
async def new_condition(
    name: str,
    /,
    prompt: str = "Approve?",
    prompt_type: PromptType = "text",
    data_type: type[T] = bool,  # type: ignore[assignment]
    description: str = "",
    timeout: timedelta | int | float | None = None,  # noqa: ASYNC109 (Flyte 2's signature; the gateway keeps it)
    webhook: ConditionWebhook | None = None,
) -> _Condition[T]:
    """Create a condition of the running task (Flyte 2's signature); await its `wait` for the value.

    Remotely, the gateway posts to `webhook` once when the condition is first created (not on a re-attempt's
    creation); local runs send none.
    """
    condition = _Condition(name, prompt, prompt_type, data_type, description, timeout, webhook)
    action = current_action.get()
    if action is not None:
        await action.controller.create_condition(action, condition)
    return condition


CONDITION_TRACE_PREFIX = "flyte.condition/"
"""Local mode keeps a condition's answer as a trace entry of the action, so a retry does not ask again."""


async def ask_on_terminal(condition: _Condition[T]) -> T:
    """Local mode: ask on the terminal (as Flyte 2 does), or fail saying why not when there is none."""
    import asyncio
    import contextlib
    import sys
    import threading

    stdin = sys.stdin
    if stdin is None or stdin.closed or not stdin.isatty():
        raise ConditionFailedError(
            f"condition {condition.name!r} waits for a value, and local mode reads it from a terminal, but stdin is "
            "not one: run it remotely and signal it (`flyte signal condition RUN NAME VALUE`)",
        )
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(value)  # type: ignore[arg-type]

    def deliver(value: T | None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the wait timed out and nobody asks any more
            loop.call_soon_threadsafe(settle, value, error)

    def ask() -> None:
        prompt = f"\n[condition {condition.name}] {condition.prompt}"
        if condition.description:
            prompt += f" ({condition.description})"
        prompt += " [y/n]: " if condition.type_name == "bool" else f" ({condition.type_name}): "
        while True:
            try:
                sys.stderr.write(prompt)
                sys.stderr.flush()
                line = stdin.readline()
            except (OSError, ValueError) as error:
                deliver(None, error)
                return
            if not line:
                closed = ConditionFailedError(f"stdin closed before condition {condition.name!r}")
                deliver(None, closed)
                return
            try:
                value = condition.typed(parse_text(condition.name, condition.type_name, line.strip()))
            except ValueError as error:
                sys.stderr.write(f"{error}\n")
                continue
            deliver(value, None)
            return

    # A daemon thread: a timed-out prompt must not keep the process alive waiting for a line.
    threading.Thread(target=ask, name=f"flyte-condition-{condition.name}", daemon=True).start()
    try:
        return await asyncio.wait_for(answer, condition.timeout_seconds)
    except TimeoutError:
        raise ConditionTimedOutError(
            f"condition {condition.name!r} was not signalled within {condition.timeout_seconds:g} seconds",
        ) from None


_TRUE = frozenset({"y", "yes", "true", "t", "1", "on"})
_FALSE = frozenset({"n", "no", "false", "f", "0", "off"})


def parse_text(name: str, kind: str, text: str) -> bool | int | float | str:
    """A value of type `kind` from text (the terminal, the CLI), or a ValueError naming the expected type."""
    if kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    elif kind == "str":
        return text
    else:
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            pass
    raise ValueError(f"condition {name!r} takes a {kind}; {text!r} is not one")

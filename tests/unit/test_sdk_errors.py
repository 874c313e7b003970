"""Local mode: the `flyte.errors` taxonomy as it crosses action boundaries."""

from __future__ import annotations

import pickle
import uuid
from collections import Counter
from typing import Any

import pytest

import flyte
import flyte.errors
from flyte._run_state import read_action_summaries
from flyte._wire import ErrorInfo, Phase

env = flyte.TaskEnvironment("sdk_errors")

_ATTEMPTS: Counter[str] = Counter()


class InventoryError(Exception):
    """A user's own exception type, importable in the parent."""


@env.task
def raises_value_error(x: int) -> int:
    raise ValueError(f"bad value {x}")


@env.task
async def raises_inventory_error() -> int:
    raise InventoryError("out of widgets")


@env.task
def raises_non_recoverable() -> int:
    raise flyte.errors.NonRecoverableError("give up")


@env.task
def catches_as_value_error() -> dict[str, str]:
    try:
        raises_value_error(3)
    except ValueError as error:
        if not isinstance(error, flyte.errors.RuntimeUserError):
            return {"caught": type(error).__name__}
        return {"code": error.code, "message": error.message, "traceback": error.traceback or ""}
    return {}


@env.task
def catches_as_runtime_user_error() -> str:
    try:
        raises_value_error(4)
    except flyte.errors.RuntimeUserError as error:
        return f"{error.code}|{isinstance(error, ValueError)}|{error.kind}"
    return "nothing raised"


@env.task
async def catches_own_exception_type() -> str:
    try:
        await raises_inventory_error()
    except InventoryError as error:
        return f"{type(error).__name__}:{error}"
    return "nothing raised"


@env.task
def catches_non_recoverable() -> str:
    try:
        raises_non_recoverable()
    except flyte.errors.NonRecoverableError as error:
        return error.code
    return "nothing raised"


@env.task
async def aio_non_recoverable() -> str:
    try:
        await raises_non_recoverable.aio()
    except flyte.errors.NonRecoverableError as error:
        return error.code
    return "nothing raised"


@env.task
def lets_child_error_through() -> int:
    return raises_value_error(5)


@env.task(retries=flyte.RetryStrategy(0, backoff=flyte.Backoff(base=0.01)))
def platform_keeps_failing(key: str) -> int:
    _ATTEMPTS[key] += 1
    raise flyte.errors.RuntimeSystemError("WorkerLost", "the worker went away")


@env.task(retries=flyte.RetryStrategy(0, backoff=flyte.Backoff(base=0.01)))
def platform_fails_once(key: str) -> int:
    _ATTEMPTS[key] += 1
    if _ATTEMPTS[key] == 1:
        raise flyte.errors.RuntimeSystemError("WorkerLost", "the worker went away")
    return _ATTEMPTS[key]


@env.task
def raises_connection_error() -> int:
    raise ConnectionError("peer reset")


@env.task(timeout=60)
async def raises_builtin_timeout_error() -> int:
    raise TimeoutError("the database did not answer")


def test_child_value_error_reaches_the_parent_as_runtime_user_error_and_value_error() -> None:
    info = flyte.run(catches_as_value_error).outputs()[0]
    assert "caught" not in info, "the error caught as ValueError must also be a RuntimeUserError"
    assert info["code"] == "ValueError"
    assert info["message"] == "bad value 3"
    assert "raises_value_error" in info["traceback"]
    assert "ValueError: bad value 3" in info["traceback"]


def test_child_error_is_catchable_as_runtime_user_error() -> None:
    assert flyte.run(catches_as_runtime_user_error).outputs()[0] == "ValueError|True|user"


def test_child_error_of_a_user_exception_type_is_catchable_as_that_type() -> None:
    assert flyte.run(catches_own_exception_type).outputs()[0] == "InventoryError:[InventoryError] out of widgets"


@pytest.mark.parametrize("parent", [catches_non_recoverable, aio_non_recoverable])
def test_flyte_errors_keep_their_class_across_the_boundary(parent: Any) -> None:
    assert flyte.run(parent).outputs()[0] == "NonRecoverableError"


def test_an_uncaught_child_error_fails_the_run_with_that_error() -> None:
    run = flyte.run(lets_child_error_through)
    assert run.phase is Phase.FAILED
    with pytest.raises(ValueError, match="bad value 5") as info:
        run.wait()
    error = info.value
    assert isinstance(error, flyte.errors.RuntimeUserError)
    assert error.code == "ValueError"
    assert error.traceback is not None
    assert "raises_value_error" in error.traceback


def test_failed_actions_record_their_error() -> None:
    run = flyte.run(lets_child_error_through)
    summaries = {s.name: s for s in read_action_summaries(run._state.metadata_dir)}
    assert summaries["a0"].phase is Phase.FAILED
    (child,) = [s for s in summaries.values() if s.parent == "a0"]
    assert child.phase is Phase.FAILED
    assert child.error is not None
    assert child.error.code == "ValueError"
    assert child.error.kind == "user"


def test_system_errors_use_the_system_budget_then_exhaust() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(platform_keeps_failing, key)
    assert _ATTEMPTS[key] == 4  # the first attempt and three system retries, with no user retries at all
    with pytest.raises(flyte.errors.RetriesExhaustedError, match="WorkerLost"):
        run.wait()


def test_a_system_error_does_not_consume_user_retries() -> None:
    key = uuid.uuid4().hex
    assert flyte.run(platform_fails_once, key).outputs()[0] == 2


def test_errors_survive_pickling_with_their_type_and_traceback() -> None:
    original = flyte.errors.TaskTimeoutError("too slow", traceback="Traceback ...")
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is flyte.errors.TaskTimeoutError
    assert (copy.code, copy.message, copy.traceback) == ("TaskTimeoutError", "too slow", "Traceback ...")


@pytest.mark.parametrize(
    "cls",
    [
        flyte.errors.OOMError,
        flyte.errors.TaskTimeoutError,
        flyte.errors.RetriesExhaustedError,
        flyte.errors.ActionAbortedError,
        flyte.errors.RemoteTaskNotFoundError,
        flyte.errors.NonRecoverableError,
        flyte.errors.InlineIOMaxBytesBreached,
        flyte.errors.ValueEncodingError,
        flyte.errors.DeploymentError,
    ],
)
def test_taxonomy_user_errors(cls: type[flyte.errors.BaseRuntimeError]) -> None:
    assert issubclass(cls, flyte.errors.RuntimeUserError)
    assert issubclass(cls, flyte.errors.BaseRuntimeError)
    assert cls.kind == "user"
    assert cls("m").code == cls.__name__


def test_the_taxonomy_is_rooted_in_runtime_error_as_in_flyte_2() -> None:
    assert issubclass(flyte.errors.BaseRuntimeError, RuntimeError)
    error = flyte.errors.RuntimeUserError("ValueError", "bad")
    assert flyte.errors.describe(error) == ("RuntimeUserError", None), "RuntimeError is our base, not the original"
    with pytest.raises(RuntimeError):
        flyte.run(raises_value_error, 3).wait()


def test_a_module_load_error_is_also_the_exception_the_module_raised() -> None:
    info = ErrorInfo(
        error_type="ModuleLoadError",
        code="IndexError",
        kind="user",
        message="importing prog.py from the code bundle failed: IndexError: list index out of range",
        exception_type="builtins.IndexError",
    )
    error = flyte.errors.from_info(info)
    assert isinstance(error, flyte.errors.ModuleLoadError)
    assert isinstance(error, IndexError)
    assert flyte.errors.error_info(error).model_dump(exclude={"traceback"}) == info.model_dump(exclude={"traceback"})


def test_taxonomy_system_error() -> None:
    assert issubclass(flyte.errors.RuntimeSystemError, flyte.errors.BaseRuntimeError)
    assert not issubclass(flyte.errors.RuntimeSystemError, flyte.errors.RuntimeUserError)
    assert flyte.errors.RuntimeSystemError.kind == "system"
    assert flyte.errors.NonRecoverableError.retryable is False
    assert flyte.errors.RuntimeUserError.retryable is True


def test_a_child_os_error_fails_the_run_with_its_code() -> None:
    run = flyte.run(raises_connection_error)
    assert run.phase is Phase.FAILED
    with pytest.raises(ConnectionError, match="peer reset") as info:
        run.wait()
    assert isinstance(info.value, flyte.errors.RuntimeUserError)
    assert info.value.code == "ConnectionError"


def test_a_task_raising_timeout_error_is_not_a_task_timeout() -> None:
    # The task has a 60 s timeout and fails at once with its own TimeoutError: that is not a task timeout.
    run = flyte.run(raises_builtin_timeout_error)
    with pytest.raises(flyte.errors.RuntimeUserError) as info:
        run.wait()
    assert not isinstance(info.value, flyte.errors.TaskTimeoutError), str(info.value)
    assert info.value.code == "TimeoutError"

"""Local mode: `@flyte.trace` checkpoints (sync, async, generators), replayed on a later attempt of the action."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import flyte
import flyte.errors
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_trace")

# How many times each traced body really ran, per test key.
_CALLS: Counter[str] = Counter()
RETRY_ONCE = flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.01))


def _attempt() -> int:
    tc = flyte.ctx()
    assert tc is not None
    return tc.attempt


@flyte.trace
def fetch(key: str, x: int) -> str:
    _CALLS[key] += 1
    return f"fetched {x} (call {_CALLS[key]})"


@flyte.trace
async def fetch_async(key: str, x: int) -> str:
    _CALLS[key] += 1
    return f"async {x} (call {_CALLS[key]})"


@flyte.trace
def numbers(key: str, n: int) -> Iterator[int]:
    _CALLS[key] += 1
    for i in range(n):
        yield i * 10 + _CALLS[key]


@flyte.trace
async def numbers_async(key: str, n: int) -> AsyncIterator[int]:
    _CALLS[key] += 1
    for i in range(n):
        yield i * 10 + _CALLS[key]


@env.task
def child(x: int) -> int:
    return x + 1


@flyte.trace
async def calls_a_task(x: int) -> int:
    return await child.aio(x)


@flyte.trace
def calls_a_task_sync(x: int) -> int:
    return child(x)


@env.task
def task_inside_sync_trace() -> int:
    return calls_a_task_sync(1)


@env.task(retries=RETRY_ONCE)
def sync_trace_then_fail_once(key: str) -> str:
    value = fetch(key, 1)
    if _attempt() == 1:
        raise RuntimeError("fail after the checkpoint")
    return value


@env.task(retries=RETRY_ONCE)
async def async_trace_then_fail_once(key: str) -> str:
    value = await fetch_async(key, 2)
    if _attempt() == 1:
        raise RuntimeError("fail after the checkpoint")
    return value


@env.task(retries=RETRY_ONCE)
def generator_trace_then_fail_once(key: str) -> list[int]:
    values = list(numbers(key, 3))
    if _attempt() == 1:
        raise RuntimeError("fail after the checkpoint")
    return values


@env.task(retries=RETRY_ONCE)
async def async_generator_trace_then_fail_once(key: str) -> list[int]:
    values = [v async for v in numbers_async(key, 3)]
    if _attempt() == 1:
        raise RuntimeError("fail after the checkpoint")
    return values


@env.task
def same_trace_twice(key: str) -> list[str]:
    return [fetch(key, 1), fetch(key, 1)]


@env.task(retries=RETRY_ONCE)
def different_inputs_on_retry(key: str) -> str:
    # The second attempt asks for another input, so the first attempt's checkpoint does not apply.
    value = fetch(key, _attempt())
    if _attempt() == 1:
        raise RuntimeError("fail after the checkpoint")
    return value


@env.task
async def task_inside_trace() -> int:
    return await calls_a_task(1)


def test_traced_function_outside_a_task_is_a_plain_call() -> None:
    key = uuid.uuid4().hex
    assert fetch(key, 5) == "fetched 5 (call 1)"
    assert fetch(key, 5) == "fetched 5 (call 2)"
    assert list(numbers(key, 2)) == [3, 13]


def test_sync_trace_is_replayed_on_the_next_attempt() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(sync_trace_then_fail_once, key)
    assert run.outputs()[0] == "fetched 1 (call 1)"
    assert _CALLS[key] == 1
    assert run._state.actions["a0"].attempts == 2


def test_async_trace_is_replayed_on_the_next_attempt() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(async_trace_then_fail_once, key)
    assert run.outputs()[0] == "async 2 (call 1)"
    assert _CALLS[key] == 1


def test_generator_trace_is_replayed_on_the_next_attempt() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(generator_trace_then_fail_once, key)
    assert run.outputs()[0] == [1, 11, 21]
    assert _CALLS[key] == 1


def test_async_generator_trace_is_replayed_on_the_next_attempt() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(async_generator_trace_then_fail_once, key)
    assert run.outputs()[0] == [1, 11, 21]
    assert _CALLS[key] == 1


def test_repeated_calls_in_one_attempt_each_run() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(same_trace_twice, key)
    assert run.outputs()[0] == ["fetched 1 (call 1)", "fetched 1 (call 2)"]


def test_a_checkpoint_with_other_inputs_is_not_replayed() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(different_inputs_on_retry, key)
    assert run.outputs()[0] == "fetched 2 (call 2)"
    assert _CALLS[key] == 2


def test_checkpoints_are_written_with_the_run() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(sync_trace_then_fail_once, key)
    run.wait()
    assert list(run._state.traces) == ["a0"]
    assert (run._state.metadata_dir / "traces.json").exists()


@pytest.mark.parametrize("parent", [task_inside_trace, task_inside_sync_trace])
def test_calling_a_task_inside_a_trace_is_an_error(parent: Any) -> None:
    run = flyte.run(parent)
    assert run.phase is Phase.FAILED
    with pytest.raises(flyte.errors.RuntimeUserError, match="trace") as info:
        run.wait()
    assert info.value.code == "TaskInTraceError"
    assert not any(a.task == "sdk_trace.child" for a in run._state.actions.values())

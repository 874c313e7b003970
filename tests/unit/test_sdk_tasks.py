"""Local mode: sync and async tasks, tasks calling tasks, concurrent fan-out, `.aio`, and plain calls outside a run."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

import flyte
import flyte.errors
from flyte._paths import runs_dir
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_tasks")

# Fan-out children meet at a barrier that only opens when all of them are running at the same time. The barrier is
# created by the parent on the controller's loop and found by key, because an asyncio object cannot cross an
# action boundary (inputs are encoded).
_ASYNC_BARRIERS: dict[str, asyncio.Barrier] = {}
_THREAD_BARRIERS: dict[str, threading.Barrier] = {}
MEET_TIMEOUT = 5.0


@env.task
def add(x: int, y: int) -> int:
    return x + y


@env.task
async def add_async(x: int, y: int) -> int:
    return x + y


@env.task
def sync_calls_sync(x: int) -> int:
    return add(add(x, 1), 10)


@env.task
def sync_calls_async(x: int) -> int:
    # A sync body has no loop to await on: the async child's result comes back directly.
    return add_async(add_async(x, 1), 10)


@env.task
async def async_calls_async(x: int) -> int:
    first = await add_async(x, 1)
    return await add_async(first, 10)


@env.task
async def async_calls_sync_with_aio(x: int) -> int:
    first = await add.aio(x, 1)
    return await add.aio(first, y=10)


@env.task
async def async_calls_sync_directly(x: int) -> int:
    return add(x, 1)


@env.task
async def meet_async(key: str, i: int) -> int:
    async with asyncio.timeout(MEET_TIMEOUT):
        await _ASYNC_BARRIERS[key].wait()
    return i * i


@env.task
async def gather_fan_out(key: str, n: int) -> list[int]:
    _ASYNC_BARRIERS[key] = asyncio.Barrier(n)
    return list(await asyncio.gather(*(meet_async(key, i) for i in range(n))))


@env.task
def meet_in_thread(key: str, i: int) -> int:
    _THREAD_BARRIERS[key].wait()
    return i + 100


@env.task
async def gather_sync_children_with_aio(key: str, n: int) -> list[int]:
    _THREAD_BARRIERS[key] = threading.Barrier(n, timeout=MEET_TIMEOUT)
    return list(await asyncio.gather(*(meet_in_thread.aio(key, i) for i in range(n))))


@env.task
def parent_outside_run(x: int) -> int:
    return add(x, 2) * 2


# --- sync and async tasks ------------------------------------------------------------------------------------


def test_sync_task_runs_and_returns_its_output() -> None:
    run = flyte.run(add, 2, 3)
    assert run.outputs()[0] == 5
    assert run.phase is Phase.SUCCEEDED


def test_async_task_runs_and_returns_its_output() -> None:
    run = flyte.run(add_async, x=4, y=5)
    assert run.outputs()[0] == 9


def test_sync_task_calling_sync_tasks_makes_child_actions() -> None:
    run = flyte.run(sync_calls_sync, 1)
    assert run.outputs()[0] == 12
    children = [a for a in run._state.actions.values() if a.parent == "a0"]
    assert [c.task for c in children] == ["sdk_tasks.add", "sdk_tasks.add"]
    assert all(c.phase is Phase.SUCCEEDED for c in children)


def test_sync_task_calling_async_tasks_waits_for_them() -> None:
    run = flyte.run(sync_calls_async, 1)
    assert run.outputs()[0] == 12
    children = [a for a in run._state.actions.values() if a.parent == "a0"]
    assert [c.task for c in children] == ["sdk_tasks.add_async", "sdk_tasks.add_async"]


def test_async_task_awaiting_async_tasks_makes_child_actions() -> None:
    run = flyte.run(async_calls_async, 1)
    assert run.outputs()[0] == 12
    assert sorted(a.task for a in run._state.actions.values()) == [
        "sdk_tasks.add_async",
        "sdk_tasks.add_async",
        "sdk_tasks.async_calls_async",
    ]


def test_sync_task_awaited_from_async_code_with_aio() -> None:
    run = flyte.run(async_calls_sync_with_aio, 5)
    assert run.outputs()[0] == 16
    assert sum(1 for a in run._state.actions.values() if a.task == "sdk_tasks.add") == 2


def test_sync_task_called_directly_from_async_code_says_to_use_aio() -> None:
    run = flyte.run(async_calls_sync_directly, 1)
    assert run.phase is Phase.FAILED
    with pytest.raises(TypeError, match=r"\.aio") as info:
        run.wait()
    assert isinstance(info.value, flyte.errors.RuntimeUserError)
    assert info.value.code == "TypeError"
    assert not any(a.task == "sdk_tasks.add" for a in run._state.actions.values())


# --- concurrency -----------------------------------------------------------------------------------------------


def test_gather_runs_async_children_concurrently() -> None:
    # Each child waits until all five are waiting: sequential execution would time the first child out.
    run = flyte.run(gather_fan_out, uuid.uuid4().hex, 5)
    assert run.outputs()[0] == [0, 1, 4, 9, 16]
    assert sum(1 for a in run._state.actions.values() if a.task == "sdk_tasks.meet_async") == 5


def test_gather_of_aio_runs_sync_children_concurrently() -> None:
    run = flyte.run(gather_sync_children_with_aio, uuid.uuid4().hex, 4)
    assert run.outputs()[0] == [100, 101, 102, 103]


# --- outside any task ------------------------------------------------------------------------------------------


def test_task_outside_a_run_is_a_plain_call() -> None:
    assert add(2, 3) == 5
    assert parent_outside_run(1) == 6
    assert flyte.ctx() is None
    assert not any(runs_dir().iterdir()), "a plain call must not start a run"


def test_async_task_outside_a_run_is_a_plain_coroutine() -> None:
    assert asyncio.run(add_async(2, 3)) == 5
    assert asyncio.run(add.aio(1, 1)) == 2


def test_run_refuses_a_plain_function() -> None:
    def not_a_task(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="task"):
        flyte.run(not_a_task, 1)  # type: ignore[arg-type]


async def test_run_aio_from_async_code() -> None:
    run = await flyte.run.aio(add_async, 1, 2)
    assert run.outputs()[0] == 3

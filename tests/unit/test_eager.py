"""`start_eagerly`: a coroutine runs up to its first suspension in its caller's turn of the loop; what suspends is
finished by a task that hands it what it waited for, and cancels it when cancelled."""

from __future__ import annotations

import asyncio

import pytest

from gateway._eager import start_eagerly


async def test_a_coroutine_that_never_suspends_runs_to_its_end_before_the_call_returns() -> None:
    done: list[str] = []

    async def send() -> None:
        done.append("sent")

    assert start_eagerly(send()) is None
    assert done == ["sent"]


async def test_what_a_coroutine_raises_before_it_suspends_is_raised_to_the_caller() -> None:
    async def refuse() -> None:
        raise ConnectionResetError("closed")

    with pytest.raises(ConnectionResetError, match="closed"):
        start_eagerly(refuse())


async def test_a_coroutine_that_waits_is_finished_by_a_task_with_what_it_waited_for() -> None:
    drained: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[object] = []

    async def send() -> str:
        steps.append("written")
        steps.append(await drained)
        await asyncio.sleep(0)  # a bare yield, as a task's own step
        steps.append("after a turn")
        return "sent"

    task = start_eagerly(send())
    assert task is not None
    assert steps == ["written"]  # its first part ran in this turn
    await asyncio.sleep(0)
    assert not task.done()
    drained.set_result(7)
    assert await task == "sent"
    assert steps == ["written", 7, "after a turn"]


async def test_a_failure_after_the_suspension_ends_the_task_with_it() -> None:
    drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send() -> None:
        await drained

    task = start_eagerly(send())
    assert task is not None
    drained.set_exception(ConnectionResetError("peer gone"))
    with pytest.raises(ConnectionResetError, match="peer gone"):
        await task


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def send() -> None:
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = start_eagerly(send())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
    assert never.cancelled()

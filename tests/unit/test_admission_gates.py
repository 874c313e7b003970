"""The agent's admission gates: process slots in arrival order, a wait an abort ends, and the limits' defaults."""

from __future__ import annotations

import asyncio

import pytest
from waiting import async_assert_eventually

from agent._admission import Admission, process_limit

pytestmark = pytest.mark.timeout(10)


def test_the_process_limit_is_the_flag_and_no_more_than_the_cpu_holds_at_the_default_request() -> None:
    assert process_limit(8, 2.0, 0.1) == 8
    assert process_limit(8, 0.5, 0.1) == 5
    assert process_limit(8, 0.3, 0.1) == 3  # 0.3 / 0.1 is 2.9999999999999996 in floating point
    assert process_limit(8, 0.05, 0.1) == 1
    assert process_limit(8, None, 0.1) == 8


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0, 1)


async def test_slots_go_in_arrival_order_and_an_abort_ends_a_wait_without_taking_one() -> None:
    admission = Admission(max_processes=1, max_starting=1)
    never = asyncio.Event()
    assert await admission.process(never)
    order: list[str] = []

    async def wait(name: str, stop: asyncio.Event) -> bool:
        admitted = await admission.process(stop)
        order.append(name)
        return admitted

    stop_first = asyncio.Event()
    first = asyncio.create_task(wait("first", stop_first))
    second = asyncio.create_task(wait("second", never))
    await async_assert_eventually(lambda: admission.waiting == 2)
    stop_first.set()
    assert await first is False
    assert admission.live == 1
    admission.release()
    assert await second is True
    assert order == ["first", "second"]
    assert admission.live == 1
    admission.release()
    assert admission.live == 0
    assert await admission.process(never)  # the aborted wait left its place to no one: the slot is free


async def test_an_attempt_aborted_before_it_asks_is_not_admitted() -> None:
    admission = Admission(max_processes=1, max_starting=1)
    stopped = asyncio.Event()
    stopped.set()
    assert await admission.process(stopped) is False
    assert admission.live == 0

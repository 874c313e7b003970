"""The injected clock: a `ManualClock` moves only when told, wakes sleepers exactly at their deadline, and runs an
embedded store's lease deadlines."""

from __future__ import annotations

import asyncio

import pytest

from flyte._clock import SYSTEM_CLOCK, ManualClock, wait_event
from gateway.store import LeaseNotFound, open_store


async def asleep(clock: ManualClock, count: int = 1) -> None:
    """Let the loop run until `count` sleeps wait on `clock` (a bounded number of turns, no wall time)."""
    for _ in range(1000):
        if clock.sleepers >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{clock.sleepers} sleeps wait on the clock, not {count}")


async def test_a_sleep_ends_when_the_clock_reaches_its_deadline() -> None:
    clock = ManualClock(start=1000.0)
    sleeper = asyncio.create_task(clock.sleep(5.0))
    await asleep(clock)
    clock.advance(4.999)
    await asyncio.sleep(0)
    assert not sleeper.done()
    assert clock.sleepers == 1
    clock.advance(0.001)
    await sleeper
    assert clock.time() == 1005.0
    assert clock.monotonic() == 5.0
    assert clock.sleepers == 0


async def test_time_never_moves_backwards() -> None:
    with pytest.raises(ValueError, match="only moves forward"):
        ManualClock().advance(-1.0)


async def test_wait_event_answers_whether_the_event_came_first() -> None:
    clock = ManualClock()
    event = asyncio.Event()
    waiting = asyncio.create_task(wait_event(clock, event, 10.0))
    await asleep(clock)
    clock.advance(10.0)
    assert await waiting is False
    waiting = asyncio.create_task(wait_event(clock, event, 10.0))
    await asleep(clock)
    event.set()
    assert await waiting is True
    await asyncio.sleep(0)
    assert clock.sleepers == 0  # the sleep it no longer needs was cancelled
    assert await wait_event(SYSTEM_CLOCK, event, None) is True


async def test_a_store_lease_expires_exactly_at_its_deadline_on_the_store_clock() -> None:
    clock = ManualClock()
    store = await open_store("memory", clock=clock)
    try:
        lease = await store.grant_lease(10.0)
        await store.put("/k", b"v", lease=lease.id)
        clock.advance(9.999)
        await store.keepalive(lease.id)  # renewed: the deadline is now 10s from here
        clock.advance(9.999)
        assert await store.get("/k") is not None
        clock.advance(0.001)
        with pytest.raises(LeaseNotFound):
            await store.keepalive(lease.id)
        assert await store.get("/k") is None
    finally:
        await store.close()

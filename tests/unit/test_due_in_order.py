"""`flyte._due_in_order.DueInOrder` on a real event loop: each key is handed over once its delay has passed, in the
order added, unless dropped first; a key added again waits its full delay from then."""

from __future__ import annotations

import asyncio

from waiting import async_assert_eventually

from flyte._due_in_order import DueInOrder


async def test_keys_are_handed_over_once_due_in_order_and_dropped_ones_never() -> None:
    handed: list[tuple[str, int, float]] = []
    loop = asyncio.get_running_loop()
    due = DueInOrder(0.05, lambda key, value: handed.append((key, value, loop.time())))
    added = loop.time()
    due.add("a", 1)
    due.add("b", 2)
    due.add("c", 3)
    assert due.drop("b") is True
    assert due.drop("b") is False, "a key dropped once is not waiting any more"
    await async_assert_eventually(lambda: len(handed) == 2, within=5)
    assert [(key, value) for key, value, _ in handed] == [("a", 1), ("c", 3)]
    assert all(at - added >= 0.05 for _, _, at in handed)
    assert due.drop("a") is False, "a key handed over is not waiting any more"


async def test_a_key_added_again_waits_its_delay_from_then_behind_the_others() -> None:
    handed: list[str] = []
    due: DueInOrder[None] = DueInOrder(0.05, lambda key, _: handed.append(key))
    due.add("first", None)
    due.add("second", None)
    due.add("first", None)
    await async_assert_eventually(lambda: len(handed) == 2, within=5)
    assert handed == ["second", "first"]

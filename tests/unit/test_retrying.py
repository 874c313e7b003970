"""The retry helper every reconnect loop uses: capped exponential ceilings, full jitter, reset after a success."""

from __future__ import annotations

import asyncio

import pytest

from flyte._retrying import RetryDelay


def test_ceilings_double_up_to_the_cap_and_reset() -> None:
    ceilings: list[float] = []
    retry = RetryDelay(0.1, 1.0, draw=lambda ceiling: ceilings.append(ceiling) or ceiling)
    for _ in range(6):
        retry.next()
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    retry.reset()
    assert retry.next() == pytest.approx(0.1)


def test_full_jitter_spreads_delays_between_zero_and_the_ceiling() -> None:
    delays = []
    for _ in range(200):
        retry = RetryDelay(1.0, 1.0)
        delays.append(retry.next())
    assert all(0.0 <= d <= 1.0 for d in delays)
    # Many clients failing together come back spread out, not in one wave.
    # (Each bound fails by chance with probability 0.9 ** 200, about 1e-9.)
    assert min(delays) < 0.1
    assert max(delays) > 0.9


def test_a_very_long_failure_does_not_overflow() -> None:
    retry = RetryDelay(0.05, 5.0, draw=lambda ceiling: ceiling)
    for _ in range(2000):
        assert retry.next() <= 5.0


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_nonsense_bounds_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="need 0 < first <= cap"):
        RetryDelay(first, cap)


async def test_sleep_ends_early_when_stopped() -> None:
    stop = asyncio.Event()
    retry = RetryDelay(60.0, 60.0, draw=lambda ceiling: ceiling)
    stop.set()
    assert await asyncio.wait_for(retry.sleep(stop), timeout=5.0) == 60.0

"""Local mode: `flyte.map` and `flyte.map.aio` run children concurrently, bounded by `concurrency=`, in input order."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest

import flyte
import flyte.errors

env = flyte.TaskEnvironment("sdk_map")

MEET_TIMEOUT = 5.0


@dataclass
class Gauge:
    """How many children of one map are running now, and the most there ever were at once."""

    barrier: threading.Barrier
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: int = 0
    peak: int = 0


_GAUGES: dict[str, Gauge] = {}
_ASYNC_BARRIERS: dict[str, asyncio.Barrier] = {}
_ASYNC_ACTIVE: Counter[str] = Counter()
_ASYNC_PEAKS: Counter[str] = Counter()


@env.task
def square(x: int) -> int:
    return x * x


@env.task
def scaled(x: int, factor: int) -> int:
    return x * factor


@env.task
def meet(key: str, x: int) -> int:
    gauge = _GAUGES[key]
    with gauge.lock:
        gauge.active += 1
        gauge.peak = max(gauge.peak, gauge.active)
    try:
        gauge.barrier.wait()
    finally:
        with gauge.lock:
            gauge.active -= 1
    return x


@env.task
def fails_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd: {x}")
    return x


@env.task
async def meet_async(key: str, x: int) -> int:
    async with asyncio.timeout(MEET_TIMEOUT):
        await _ASYNC_BARRIERS[key].wait()
    return -x


@env.task
async def meet_async_counted(key: str, x: int) -> int:
    _ASYNC_ACTIVE[key] += 1
    _ASYNC_PEAKS[key] = max(_ASYNC_PEAKS[key], _ASYNC_ACTIVE[key])
    try:
        async with asyncio.timeout(MEET_TIMEOUT):
            await _ASYNC_BARRIERS[key].wait()
    finally:
        _ASYNC_ACTIVE[key] -= 1
    return x


@env.task
async def map_aio_bounded(key: str, n: int, concurrency: int) -> list[int]:
    _ASYNC_BARRIERS[key] = asyncio.Barrier(concurrency)
    return [r async for r in flyte.map.aio(meet_async_counted, [key] * n, range(n), concurrency=concurrency)]


@env.task
async def map_from_async_code() -> list[int]:
    return list(flyte.map(square, [1]))


@env.task
def map_squares(xs: list[int]) -> list[int]:
    return list(flyte.map(square, xs))


@env.task
def map_partial(xs: list[int]) -> list[int]:
    return list(flyte.map(functools.partial(scaled, factor=3), xs))


@env.task
def map_all_at_once(key: str, n: int) -> list[int]:
    _GAUGES[key] = Gauge(threading.Barrier(n, timeout=MEET_TIMEOUT))
    return list(flyte.map(meet, [key] * n, range(n)))


@env.task
def map_bounded(key: str, n: int, concurrency: int) -> list[int]:
    # Children meet in groups of `concurrency`: the barrier opens only when that many run at once.
    _GAUGES[key] = Gauge(threading.Barrier(concurrency, timeout=MEET_TIMEOUT))
    return list(flyte.map(meet, [key] * n, range(n), concurrency=concurrency))


@env.task
def map_collecting_errors(xs: list[int]) -> list[str]:
    results = flyte.map(fails_on_odd, xs, return_exceptions=True)
    return [f"error:{r.code}" if isinstance(r, flyte.errors.RuntimeUserError) else f"ok:{r}" for r in results]


@env.task
def map_raising(xs: list[int]) -> list[int]:
    return list(flyte.map(fails_on_odd, xs))


@env.task
async def map_aio(key: str, n: int) -> list[int]:
    _ASYNC_BARRIERS[key] = asyncio.Barrier(n)
    return [r async for r in flyte.map.aio(meet_async, [key] * n, range(n))]


@env.task
async def map_aio_collecting_errors(xs: list[int]) -> list[str]:
    out = []
    async for r in flyte.map.aio(fails_on_odd, xs, return_exceptions=True):
        out.append(type(r).__name__ if isinstance(r, Exception) else str(r))
    return out


def test_map_aio_concurrency_bounds_how_many_run_at_once() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(map_aio_bounded, key, 6, 3)
    assert run.outputs()[0] == [0, 1, 2, 3, 4, 5]
    assert _ASYNC_PEAKS[key] == 3


def test_map_from_async_code_says_to_use_map_aio() -> None:
    run = flyte.run(map_from_async_code)
    with pytest.raises(TypeError, match=r"flyte\.map\.aio"):
        run.wait()


def test_map_children_names_are_deterministic() -> None:
    first = flyte.run(map_squares, [1, 2, 3])
    second = flyte.run(map_squares, [1, 2, 3])
    assert set(first._state.actions) == set(second._state.actions)
    assert len(first._state.actions) == 4


def test_map_in_a_sync_task_returns_results_in_input_order() -> None:
    run = flyte.run(map_squares, [3, 1, 2])
    assert run.outputs()[0] == [9, 1, 4]
    assert sum(1 for a in run._state.actions.values() if a.task == "sdk_map.square") == 3


def test_map_accepts_a_partial() -> None:
    assert flyte.run(map_partial, [1, 2]).outputs()[0] == [3, 6]


def test_map_runs_children_concurrently() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(map_all_at_once, key, 6)
    assert run.outputs()[0] == [0, 1, 2, 3, 4, 5]
    assert _GAUGES[key].peak == 6


def test_map_concurrency_bounds_how_many_run_at_once() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(map_bounded, key, 6, 2)
    assert run.outputs()[0] == [0, 1, 2, 3, 4, 5]
    assert _GAUGES[key].peak == 2


def test_map_return_exceptions_yields_errors_in_place() -> None:
    run = flyte.run(map_collecting_errors, [0, 1, 2, 3])
    assert run.outputs()[0] == ["ok:0", "error:ValueError", "ok:2", "error:ValueError"]


def test_map_without_return_exceptions_raises_the_first_failure() -> None:
    run = flyte.run(map_raising, [0, 1, 2])
    with pytest.raises(ValueError, match="odd: 1"):
        run.wait()


def test_map_aio_runs_children_concurrently() -> None:
    run = flyte.run(map_aio, uuid.uuid4().hex, 4)
    assert run.outputs()[0] == [0, -1, -2, -3]


def test_map_aio_return_exceptions() -> None:
    run = flyte.run(map_aio_collecting_errors, [1, 2])
    assert run.outputs()[0] == ["ValueError", "2"]


def test_map_outside_a_task_is_plain_calls() -> None:
    assert list(flyte.map(square, [2, 3])) == [4, 9]


def test_map_rejects_negative_concurrency() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        flyte.map(square, [1], concurrency=-1)

"""Local mode: `flyte.durable.sleep/time/now` are recorded like trace checkpoints, so a retried attempt neither
sleeps again nor sees another time, and a rerun with recovery replays them too."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime

import pytest

import flyte
import flyte.durable
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_durable")
RETRY_ONCE = flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.01))
NAP = 0.6

# What each attempt saw, per test key: (attempt, durable time, durable now, seconds spent in the durable sleep).
SEEN: defaultdict[str, list[tuple[int, float, datetime, float]]] = defaultdict(list)


def _attempt() -> int:
    tc = flyte.ctx()
    assert tc is not None
    return tc.attempt


@env.task(retries=RETRY_ONCE)
async def sleep_then_fail_once(key: str) -> float:
    stamp = await flyte.durable.time.aio()
    moment = await flyte.durable.now.aio()
    started = time.monotonic()
    await flyte.durable.sleep.aio(NAP)
    SEEN[key].append((_attempt(), stamp, moment, time.monotonic() - started))
    if _attempt() == 1:
        raise RuntimeError("fail after the durable sleep")
    return stamp


@env.task(retries=RETRY_ONCE)
def sync_sleep_then_fail_once(key: str) -> float:
    stamp = flyte.durable.time()
    moment = flyte.durable.now()
    started = time.monotonic()
    flyte.durable.sleep(NAP)
    SEEN[key].append((_attempt(), stamp, moment, time.monotonic() - started))
    if _attempt() == 1:
        raise RuntimeError("fail after the durable sleep")
    return stamp


@pytest.mark.parametrize("task", [sleep_then_fail_once, sync_sleep_then_fail_once], ids=["async", "sync"])
def test_a_retried_attempt_does_not_sleep_again_or_see_another_time(task: flyte.TaskTemplate[..., float]) -> None:
    key = task.name
    run = flyte.run(task, key)
    assert run.phase is Phase.SUCCEEDED
    (first, second) = SEEN[key]
    assert (first[0], second[0]) == (1, 2)
    assert first[3] >= NAP * 0.9, "the first attempt really slept"
    assert second[3] < NAP / 2, "the retry slept only what was left, which was nothing"
    assert second[1] == first[1], "durable time is the recorded one"
    assert second[2] == first[2], "durable now is the recorded one"
    assert run.outputs()[0] == first[1]


def test_a_rerun_with_recovery_replays_durable_time() -> None:
    key = "rerun"
    failing = sleep_then_fail_once.override(retries=0)
    first = flyte.run(failing, key)
    assert first.phase is Phase.FAILED
    recovered = flyte.rerun(first.name)
    recovered.wait()
    # The rerun's first attempt is attempt 1 again (and fails again); it already replays the recorded values.
    original, replayed = SEEN[key][0], SEEN[key][1]
    assert replayed[1] == original[1]
    assert replayed[3] < NAP / 2


def test_outside_a_task_they_are_the_plain_clock() -> None:
    before = time.time()
    assert before <= flyte.durable.time() <= time.time()
    assert isinstance(flyte.durable.now(), datetime)
    flyte.durable.sleep(0)
    with pytest.raises(ValueError, match="seconds=-1"):
        flyte.durable.sleep(-1)

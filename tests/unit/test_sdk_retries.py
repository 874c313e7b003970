"""Local mode: retries with backoff, non-recoverable errors, enforced timeouts, and `task.override(...)`."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from waiting import assert_eventually

import flyte
import flyte.errors
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_retries")

BACKOFF = flyte.Backoff(base=0.02, factor=2.0, cap=1.0)

# Per-test records, keyed by an input each test makes unique.
_ATTEMPTS: dict[str, list[tuple[int, float]]] = defaultdict(list)
_STOPPED: dict[str, threading.Event] = defaultdict(threading.Event)
_RELEASE: dict[str, threading.Event] = defaultdict(threading.Event)


def _note_attempt(key: str) -> int:
    tc = flyte.ctx()
    assert tc is not None
    _ATTEMPTS[key].append((tc.attempt, time.monotonic()))
    return tc.attempt


@env.task(retries=flyte.RetryStrategy(3, backoff=BACKOFF))
def flaky(key: str, fail_times: int) -> str:
    attempt = _note_attempt(key)
    if attempt <= fail_times:
        raise RuntimeError(f"attempt {attempt} failed")
    return f"ok on attempt {attempt}"


@env.task(retries=flyte.RetryStrategy(2, backoff=flyte.Backoff(base=0.01)))
async def always_fails(key: str) -> int:
    _note_attempt(key)
    raise ValueError("still broken")


@env.task(retries=flyte.RetryStrategy(5, backoff=flyte.Backoff(base=0.01)))
def gives_up_at_once(key: str) -> int:
    _note_attempt(key)
    raise flyte.errors.NonRecoverableError("the input is wrong; retrying will not help")


@env.task(retries=3)
def retries_as_int(key: str) -> int:
    return _note_attempt(key)


@env.task
def no_retries(key: str, fail_times: int) -> int:
    attempt = _note_attempt(key)
    if attempt <= fail_times:
        raise RuntimeError("flaky")
    return attempt


@env.task
def calls_flaky_child(key: str) -> str:
    return flaky(key, 2)


@env.task(timeout=0.2)
async def hangs_async(key: str) -> int:
    _note_attempt(key)
    await asyncio.Event().wait()
    return 0


@env.task(timeout=timedelta(milliseconds=200))
def hangs_sync(key: str) -> int:
    _note_attempt(key)
    never = threading.Event()
    try:
        while not never.wait(0.01):
            pass
    finally:
        _STOPPED[key].set()
    return 0


@env.task(timeout=flyte.Timeout(max_runtime=0.2), retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.01)))
async def times_out_then_succeeds(key: str) -> int:
    attempt = _note_attempt(key)
    if attempt == 1:
        await asyncio.Event().wait()
    return attempt


@env.task(timeout=5)
async def quick_with_timeout(x: int) -> int:
    return x + 1


@env.task
async def catches_child_timeout(key: str) -> str:
    try:
        await hangs_async(key)
    except flyte.errors.TaskTimeoutError as error:
        return f"caught {error.code}"
    return "no timeout"


@env.task
async def slow_without_timeout(key: str) -> int:
    _note_attempt(key)
    await asyncio.Event().wait()
    return 0


@env.task
def calls_overridden_no_retries(key: str) -> int:
    return no_retries.override(retries=flyte.RetryStrategy(2, backoff=flyte.Backoff(base=0.01)))(key, 2)


@env.task
async def calls_overridden_timeout(key: str) -> str:
    try:
        await slow_without_timeout.override(timeout=0.2)(key)
    except flyte.errors.TaskTimeoutError:
        return "timed out"
    return "finished"


@env.task
def counted_child(key: str) -> int:
    _ATTEMPTS[key + "-child"].append((1, time.monotonic()))
    return len(_ATTEMPTS[key + "-child"])


@env.task(retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.01)))
def parent_fails_after_child(key: str) -> int:
    value = counted_child(key)
    if _note_attempt(key) == 1:
        raise RuntimeError("the parent fails after its child finished")
    return value


@env.task
def waits_for_release(key: str) -> int:
    while not _RELEASE[key].wait(0.01):
        pass
    return 1


@env.task(timeout=0.2)
def sync_parent_times_out_waiting(key: str) -> int:
    return waits_for_release(key)


def _attempts(key: str) -> list[int]:
    return [attempt for attempt, _ in _ATTEMPTS[key]]


def _record(run: flyte.Run, task: str) -> object:
    (record,) = [a for a in run._state.actions.values() if a.task == task]
    return record


# --- retries -----------------------------------------------------------------------------------------------


def test_retries_until_an_attempt_succeeds() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(flaky, key, 2)
    assert run.outputs()[0] == "ok on attempt 3"
    assert _attempts(key) == [1, 2, 3]
    assert run._state.actions["a0"].attempts == 3


def test_retries_wait_with_exponential_backoff() -> None:
    key = uuid.uuid4().hex
    flyte.run(flaky, key, 3).wait()
    times = [t for _, t in _ATTEMPTS[key]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    expected = [BACKOFF.delay(n) for n in (1, 2, 3)]
    assert expected == [0.02, 0.04, 0.08]
    for gap, delay in zip(gaps, expected, strict=True):
        assert gap >= delay - 0.005, (gaps, expected)


def test_a_failure_after_the_last_retry_fails_the_run_with_the_task_error() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(always_fails, key)
    assert _attempts(key) == [1, 2, 3]
    assert run.phase is Phase.FAILED
    with pytest.raises(ValueError, match="still broken") as info:
        run.wait()
    assert isinstance(info.value, flyte.errors.RuntimeUserError)
    assert info.value.code == "ValueError"


def test_non_recoverable_error_is_not_retried() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(gives_up_at_once, key)
    assert _attempts(key) == [1]
    with pytest.raises(flyte.errors.NonRecoverableError, match="retrying will not help"):
        run.wait()


def test_retries_as_an_int_is_a_count() -> None:
    assert flyte.run(retries_as_int, uuid.uuid4().hex).outputs()[0] == 1
    assert retries_as_int.settings.retries.count == 3


def test_without_retries_one_failure_fails() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(no_retries, key, 1)
    assert _attempts(key) == [1]
    with pytest.raises(RuntimeError, match="flaky"):
        run.wait()


def test_a_child_is_retried_as_its_own_action() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(calls_flaky_child, key)
    assert run.outputs()[0] == "ok on attempt 3"
    assert _record(run, "sdk_retries.flaky").attempts == 3  # type: ignore[attr-defined]
    assert run._state.actions["a0"].attempts == 1


def test_a_retried_parent_finds_the_children_it_already_finished() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(parent_fails_after_child, key)
    assert run.outputs()[0] == 1
    assert _attempts(key) == [1, 2]
    assert len(_ATTEMPTS[key + "-child"]) == 1
    assert _record(run, "sdk_retries.counted_child").attempts == 1  # type: ignore[attr-defined]


# --- timeouts ----------------------------------------------------------------------------------------------


def test_async_task_timeout_is_enforced() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(hangs_async, key)
    assert run.phase is Phase.FAILED
    with pytest.raises(flyte.errors.TaskTimeoutError, match="timeout"):
        run.wait()


def test_sync_task_timeout_is_enforced_and_its_thread_stops() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(hangs_sync, key)
    with pytest.raises(flyte.errors.TaskTimeoutError):
        run.wait()
    assert_eventually(_STOPPED[key].is_set, timeout=5)


TIMES_OUT = """
import gc
import threading
import time
from datetime import timedelta

import flyte

env = flyte.TaskEnvironment("interrupted")


@env.task(timeout=timedelta(milliseconds=300))
def spins() -> int:
    while True:
        time.sleep(0.01)


@env.task
def quick() -> int:
    return 1


try:
    flyte.run(spins).wait()
except flyte.errors.TaskTimeoutError:
    print("timed out")
# Deterministically what happens at exit: the interrupted thread settles its future (on the runs' loop, which the
# next run passes through), and asyncio reports an exception nobody retrieved when the future is collected.
for thread in threading.enumerate():
    if thread.name.startswith("flyte-") and thread.name != "flyte-loop":
        thread.join(10)
flyte.run(quick).wait()
gc.collect()
"""


def test_an_interrupted_sync_task_leaves_no_unretrieved_future_at_exit(tmp_path: Path) -> None:
    program = tmp_path / "times_out.py"
    program.write_text(TIMES_OUT)
    done = subprocess.run(
        [sys.executable, "-X", "dev", str(program)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "timed out"), done.stderr
    assert "Future exception was never retrieved" not in done.stderr
    assert "_Interrupted" not in done.stderr


def test_a_timed_out_attempt_is_retried() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(times_out_then_succeeds, key)
    assert run.outputs()[0] == 2
    assert _attempts(key) == [1, 2]


def test_a_task_within_its_timeout_succeeds() -> None:
    assert flyte.run(quick_with_timeout, 1).outputs()[0] == 2


def test_parent_catches_a_child_timeout() -> None:
    run = flyte.run(catches_child_timeout, uuid.uuid4().hex)
    assert run.outputs()[0] == "caught TaskTimeoutError"


def test_a_sync_parent_timeout_aborts_the_child_it_waits_on() -> None:
    key = uuid.uuid4().hex
    try:
        run = flyte.run(sync_parent_times_out_waiting, key)
        with pytest.raises(flyte.errors.TaskTimeoutError):
            run.wait()
        child = _record(run, "sdk_retries.waits_for_release")
        assert_eventually(lambda: child.phase is Phase.ABORTED, timeout=2)  # type: ignore[attr-defined]
    finally:
        _RELEASE[key].set()


# --- override ----------------------------------------------------------------------------------------------


def test_override_changes_settings_not_identity() -> None:
    changed = no_retries.override(retries=4, timeout=7)
    assert changed.name == no_retries.name == "sdk_retries.no_retries"
    assert changed.interface.digest == no_retries.interface.digest
    assert changed.settings.retries.count == 4
    assert changed.settings.timeout is not None
    assert changed.settings.timeout.max_runtime_seconds == 7
    assert no_retries.settings.retries.count == 0
    assert no_retries.settings.timeout is None


def test_overridden_retries_apply_to_the_child() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(calls_overridden_no_retries, key)
    assert run.outputs()[0] == 3
    assert _attempts(key) == [1, 2, 3]
    assert _record(run, "sdk_retries.no_retries").attempts == 3  # type: ignore[attr-defined]


def test_overridden_timeout_applies_to_the_child() -> None:
    run = flyte.run(calls_overridden_timeout, uuid.uuid4().hex)
    assert run.outputs()[0] == "timed out"


def test_overridden_task_can_be_run_directly() -> None:
    key = uuid.uuid4().hex
    run = flyte.run(no_retries.override(retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.01))), key, 1)
    assert run.outputs()[0] == 2
    assert run._state.task_name == "sdk_retries.no_retries"

"""What a run's records and logs say about its attempts, through a gateway and an agent running as separate
processes (`flyte rig`): start times of warm pool attempts, tasks' own logging, and Flyte 2's names."""

from __future__ import annotations

import pytest
from test_rig import Rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for
from flyte._remote_run import RemoteRun
from flyte._wire import ActionSummary

pytestmark = pytest.mark.timeout(180)

PROGRAM = """
import logging
import weakref

import flyte

pooled = flyte.TaskEnvironment("records_pooled", reusable=flyte.ReusePolicy(replicas=1, concurrency=4))
oneoff = flyte.TaskEnvironment("records_oneoff")
pooled.add_dependency(oneoff)
log = logging.getLogger("records")


@oneoff.task
async def cold(x: int) -> int:
    log.info("cold got %d on attempt %d", x, flyte.ctx().attempt_number)
    return x + 1


@pooled.task
async def warm(x: int) -> int:
    log.info("warm got %d", x)
    print("warm printed", x, flush=True)
    return x * 2


@pooled.task
async def main(x: int) -> int:
    logging.getLogger().info("main starts with %d", x)
    return await warm(x) + await cold(x)


@pooled.task
async def fails() -> int:
    raise ValueError("no such thing as a free lunch")


class Node:
    # Refers to itself: only the cycle collector frees one.
    def __init__(self) -> None:
        self.me = self


made: list[weakref.ref[Node]] = []


@pooled.task
async def make_cycle() -> int:
    made.append(weakref.ref(Node()))
    return len(made)


@pooled.task
async def cycles_alive() -> int:
    return sum(1 for node in made if node() is not None)


@oneoff.task(cache="auto")
async def square(x: int) -> int:
    return x * x


@oneoff.task
async def squares(x: int) -> int:
    return await square(x)
"""


@pytest.fixture(scope="module")
def rig(one_cluster_rig: Rig) -> Rig:
    return one_cluster_rig


def _actions(run: RemoteRun) -> dict[str, ActionSummary]:
    return {a.task.rpartition(".")[2]: a for a in call_sync(client_for().list_actions(run.name))}


def _logs(rig: Rig, run: str, action: str) -> str:
    return rig.flyte("get", "logs", run, action).stdout


@pytest.fixture(scope="module")
def finished(rig: Rig) -> RemoteRun:
    program = rig.load("records_program", PROGRAM)
    rig.connect()
    run = flyte.run(program.main, x=5)
    assert isinstance(run, RemoteRun)
    assert run.outputs()[0] == 16
    return run


def test_a_pool_worker_frees_garbage_in_cycles_once_it_is_idle(rig: Rig) -> None:
    # Its collector runs rarely (`flyte._collector`): a worker's own collections come every 20,000 allocations, which a
    # few small attempts do not reach, so a cycle an attempt left is freed by the collection made once it is idle.
    program = rig.load("records_program", PROGRAM)
    rig.connect()
    assert flyte.run(program.make_cycle).outputs()[0] >= 1

    def freed() -> bool:
        return flyte.run(program.cycles_alive).outputs()[0] == 0

    assert_eventually(freed, timeout=10, interval=1.0)


def test_pool_attempts_have_start_times(rig: Rig, finished: RemoteRun) -> None:
    run = finished
    rig.connect()

    def started() -> bool:
        # The start arrives in the agent's next batch of events, possibly after the worker's own result.
        return all(a.started_at is not None for a in _actions(run).values())

    assert_eventually(started, timeout=10)
    for action in _actions(run).values():
        assert action.started_at is not None
        assert action.ended_at is not None
        assert action.created_at is not None
        assert action.created_at <= action.started_at <= action.ended_at, action


def test_tasks_logging_at_info_reaches_each_attempts_logs(rig: Rig, finished: RemoteRun) -> None:
    run = finished
    rig.connect()
    actions = _actions(run)
    expected = {"main": "main starts with 5", "warm": "warm got 5", "cold": "cold got 5 on attempt 1"}
    for task, line in expected.items():
        name = actions[task].name
        assert_eventually(lambda line=line, name=name: line in _logs(rig, run.name, name), timeout=20)
    assert_eventually(lambda: "warm printed 5" in _logs(rig, run.name, actions["warm"].name), timeout=20)
    assert "cold got" not in _logs(rig, run.name, actions["warm"].name), "each pool attempt has its own logs"


def test_a_failed_attempts_logs_hold_its_traceback(rig: Rig) -> None:
    program = rig.load("records_program_fails", PROGRAM)
    rig.connect()
    run = flyte.run(program.fails)
    assert isinstance(run, RemoteRun)
    with pytest.raises(ValueError, match="free lunch"):
        run.wait(timeout=60)
    root = _actions(run)["fails"]

    def traceback_logged() -> bool:
        logs = _logs(rig, run.name, root.name)
        return "Traceback (most recent call last)" in logs and 'raise ValueError("no such thing' in logs

    assert_eventually(traceback_logged, timeout=20)


def test_a_cached_action_is_marked_cached(rig: Rig) -> None:
    program = rig.load("records_program_cached", PROGRAM)
    rig.connect()
    for _ in range(2):
        run = flyte.run(program.squares, x=9)
        assert isinstance(run, RemoteRun)
        assert run.outputs()[0] == 81
    child = _actions(run)["square"]
    assert child.cached
    assert child.attempts == 0
    listing = rig.flyte("get", "actions", run.name)
    assert listing.returncode == 0, listing.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listing.stdout.splitlines()]
    (row,) = [cells for cells in rows if len(cells) > 4 and cells[1] == "a0"]
    assert row[4] == "cached", listing.stdout

"""The agent reports `running` only for attempts that run: one still running `RUNNING_AFTER` after it reached its
worker. An attempt whose task has ended, its result on the way to a gateway slow to take it, is not reported
`running` (its pool worker says it finished, `PoolFinished`), whether its agent sent it to the worker or the gateway
gave it to its parent's worker directly; nor is one waiting for its pool's new worker to start.

Through a real rig whose workers hold each result a second before reporting it (`SLOW_REPORT`), as a busy gateway
would keep them waiting, and whose pool workers take two seconds to start (`SLOW_POOL_START`); the gateway counts the
`running` events it takes from agents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rig import Rig, gateway_events, start_rig
from waiting import assert_eventually

import flyte
from flyte._failpoints import SLOW_POOL_START, SLOW_REPORT

pytestmark = pytest.mark.timeout(180)

PROGRAM = """
import asyncio

import flyte

pool = flyte.TaskEnvironment("marks_pool", reusable=flyte.ReusePolicy(replicas=2, concurrency=8))


@pool.task
async def quick(x: int) -> int:
    return x


@pool.task
async def slow(x: int) -> int:
    await asyncio.sleep(1.5)
    return x


@pool.task
async def main(n: int) -> int:
    quick_ones = await asyncio.gather(*(quick(i) for i in range(n)))
    return sum(quick_ones) + await slow(n)
"""


@pytest.fixture(scope="module")
def slow_results_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    slow = {SLOW_REPORT: "1.0", SLOW_POOL_START: "2.0"}
    started = start_rig(tmp_path_factory.mktemp("slow-results"), clusters="us-east", **slow)
    try:
        yield started
    finally:
        started.flyte("rig", "down")


def test_an_attempt_whose_task_ended_is_not_reported_running_while_its_result_waits(slow_results_rig: Rig) -> None:
    rig = slow_results_rig
    program = rig.load("running_marks", PROGRAM)
    rig.connect()
    given_here = gateway_events(rig, "actions_given_here")
    before = gateway_events(rig, "agent_events_running")
    run = flyte.run(program.main, n=6)
    assert run.outputs() == (sum(range(6)) + 6,)
    # Each quick child ended at once and waited a second to report: none was running then.
    # The parent and the slow child were still running 0.2 s in, and are reported so.
    assert gateway_events(rig, "agent_events_running") - before == 2
    assert gateway_events(rig, "actions_given_here") > given_here, "children given to the parent's worker count too"
    actions = {a.name: a for a in flyte.remote.Run.get(run.name).actions()}
    assert {a.phase for a in actions.values()} == {"succeeded"}


NEW_POOL = """
import flyte

fresh = flyte.TaskEnvironment("fresh_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2))


@fresh.task
async def main(x: int) -> int:
    return x + 1
"""


def test_an_attempt_waiting_for_its_pools_new_worker_is_not_reported_running(slow_results_rig: Rig) -> None:
    rig = slow_results_rig
    program = rig.load("fresh_pool", NEW_POOL)
    rig.connect()
    before = gateway_events(rig, "agent_events_running")
    run = flyte.run(program.main, x=1)
    assert run.outputs() == (2,)
    # Its pool had no worker: the attempt waited two seconds for one to start, placed, then ran at once.
    assert gateway_events(rig, "agent_events_running") - before == 0
    (action,) = flyte.remote.Run.get(run.name).actions()
    assert action.phase == "succeeded"


HOSTILE = """
import asyncio
import gc

import flyte

victims = flyte.TaskEnvironment("victim_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2))
hostiles = flyte.TaskEnvironment("hostile_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2))


@victims.task
async def victim() -> int:
    await asyncio.sleep(1.0)
    return 1


@hostiles.task
async def warm() -> int:
    return 0


@hostiles.task
async def hostile(key: str) -> int:
    # Users' code in a pool worker finds its worker's socket to the agent, and says another pool's attempt finished.
    writers = [o for o in gc.get_objects() if isinstance(o, asyncio.StreamWriter)]
    for writer in writers:
        writer.write(('{"finished": "' + key + '"}' + chr(10)).encode())
    return len(writers)
"""


def test_a_pool_worker_cannot_keep_another_pools_attempt_from_being_reported_running(slow_results_rig: Rig) -> None:
    rig = slow_results_rig
    program = rig.load("hostile_pools", HOSTILE)
    rig.connect()
    assert flyte.run(program.warm).outputs() == (0,)  # the hostile pool's worker is up from here on
    before = gateway_events(rig, "agent_events_running")
    victim = flyte.run(program.victim)
    # The victim's pool has no worker yet: its attempt waits two seconds for one, well past the hostile line.
    hostile = flyte.run(program.hostile, key=f"{victim.name}/a0/1")
    (sockets,) = hostile.outputs()
    assert sockets >= 1, "the hostile task found its worker's socket to the agent"
    assert victim.outputs() == (1,)
    # The victim ran a second after it reached its worker: it is reported running, whatever another pool said.
    assert gateway_events(rig, "agent_events_running") - before == 1


INJECTING = """
import asyncio
import gc
import json
from pathlib import Path

import flyte

logged = flyte.TaskEnvironment("logged_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2))
writers_pool = flyte.TaskEnvironment("writers_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2))


@logged.task
async def victim(folder: str) -> int:
    print("the victim's own line")
    Path(folder, "started").write_text("")
    await asyncio.sleep(3.0)
    return 1


@writers_pool.task
async def inject(key: str, folder: str) -> int:
    while not Path(folder, "started").exists():
        await asyncio.sleep(0.05)
    line = json.dumps({"log": key, "stream": "stdout", "text": "injected by another pool"}) + chr(10)
    writers = [o for o in gc.get_objects() if isinstance(o, asyncio.StreamWriter)]
    for writer in writers:
        writer.write(line.encode())
        await writer.drain()
    return len(writers)
"""


def test_a_pool_worker_cannot_write_into_another_pools_attempts_log(slow_results_rig: Rig, tmp_path: Path) -> None:
    rig = slow_results_rig
    program = rig.load("injecting_pools", INJECTING)
    rig.connect()
    victim = flyte.run(program.victim, folder=str(tmp_path))
    injecting = flyte.run(program.inject, key=f"{victim.name}/a0/1", folder=str(tmp_path))
    (sockets,) = injecting.outputs()
    assert sockets >= 1, "the injecting task found its worker's socket to the agent"
    assert victim.outputs() == (1,)

    def victims_log() -> str:
        return rig.flyte("get", "logs", victim.name, "a0").stdout

    assert_eventually(lambda: "the victim's own line" in victims_log(), 30)
    assert "injected by another pool" not in victims_log()

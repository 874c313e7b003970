"""Children started by their parent's own pool worker (`GatewayReply.here`): a child of the parent's pool, placed on
the parent's cluster, is given to the parent's worker in the answer to its submission, and that worker's agent holds
its own copy until the worker says it took it. Through a real rig: the child runs in the parent's process even where
the pool has an idle worker, its output reaches its log, an abort reaches it, a killed worker takes it along (it runs
again), and a worker that never takes it leaves it to its agent."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import pid_alive
from test_rig import Rig, gateway_events, start_rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for
from flyte._failpoints import DROP_HERE

pytestmark = pytest.mark.timeout(180)

CHAIN = """
import os

import flyte

pool = flyte.TaskEnvironment("here_pool", reusable=flyte.ReusePolicy(replicas=2, concurrency=4))


@pool.task
async def step(x: int) -> int:
    print(f"step {x} ran in {os.getpid()}")
    return os.getpid()


@pool.task
async def main(n: int) -> list[int]:
    pids = [await step(i) for i in range(n)]
    return [os.getpid(), *pids]
"""


@contextlib.contextmanager
def one_cluster_rig_with(root: Path, **env: str) -> Iterator[Rig]:
    """A one-cluster rig whose gateway and agent run with `env` (a failpoint, a setting), stopped at the end."""
    started = start_rig(root, clusters="us-east", **env)
    try:
        yield started
    finally:
        started.flyte("rig", "down")


@pytest.fixture(scope="module")
def dropping_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Pool workers drop the children given to them, as if each was lost on the way."""
    with one_cluster_rig_with(tmp_path_factory.mktemp("dropping"), **{DROP_HERE: "1"}) as rig:
        yield rig


@pytest.fixture(scope="module")
def switched_off_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The gateway sends no child to its parent's worker (`FLYTE_CHILDREN_HERE=0`)."""
    with one_cluster_rig_with(tmp_path_factory.mktemp("switched-off"), FLYTE_CHILDREN_HERE="0") as rig:
        yield rig


def chain_on(rig: Rig, module: str, n: int) -> tuple[str, list[int]]:
    """`CHAIN`'s parent calling `n` children on `rig`: the run's name, and the parent's pid then each child's."""
    program = rig.load(module, CHAIN)
    rig.connect()
    run = flyte.run(program.main, n=n)
    (pids,) = run.outputs()
    return run.name, pids


def children_of(run: flyte.remote.Run, parent: str = "a0") -> list[flyte.remote.Action]:
    return sorted((a for a in run.actions() if a.parent == parent), key=lambda a: a.name)


def test_a_child_of_its_parents_pool_runs_in_the_parents_worker_and_its_output_reaches_its_log(
    one_cluster_rig: Rig,
) -> None:
    rig = one_cluster_rig
    before = gateway_events(rig, "actions_given_here")
    run_name, (parent_pid, *child_pids) = chain_on(rig, "here_chain", 4)
    # The pool has a second, idle worker: its agent would have sent each child there, the less busy one.
    assert child_pids == [parent_pid] * 4
    assert gateway_events(rig, "actions_given_here") - before == 4
    children = children_of(flyte.remote.Run.get(run_name))
    assert [c.attempts for c in children] == [1, 1, 1, 1]
    first = children[0].name
    assert_eventually(lambda: f"step 0 ran in {parent_pid}" in rig.flyte("get", "logs", run_name, first).stdout, 30)


ABORT = """
import asyncio
from pathlib import Path

import flyte

pool = flyte.TaskEnvironment("here_abort_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=4))


@pool.task
async def wait(folder: str) -> None:
    Path(folder, "started").write_text("")
    try:
        await asyncio.sleep(300)
    except asyncio.CancelledError:
        Path(folder, "cancelled").write_text("")
        raise


@pool.task
async def main(folder: str) -> None:
    await wait(folder)
"""


def test_an_abort_reaches_a_child_its_parents_worker_started(one_cluster_rig: Rig, tmp_path: Path) -> None:
    rig = one_cluster_rig
    program = rig.load("here_abort", ABORT)
    rig.connect()
    before = gateway_events(rig, "actions_given_here")
    run = flyte.run(program.main, folder=str(tmp_path))
    assert_eventually(lambda: (tmp_path / "started").exists(), timeout=60)
    assert gateway_events(rig, "actions_given_here") - before == 1
    run.abort("the test is done waiting")
    # The agent counts the child as its worker's: the abort goes to that worker, which cancels it.
    assert_eventually(lambda: (tmp_path / "cancelled").exists(), timeout=30)
    remote = flyte.remote.Run.get(run.name)
    assert {a.phase for a in remote.actions()} == {"aborted"}


KILLED = """
import asyncio
import os
from pathlib import Path

import flyte

pool = flyte.TaskEnvironment("here_killed_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=4))


@pool.task
async def hang(folder: str) -> int:
    if flyte.ctx().attempt == 1:
        Path(folder, "worker.pid").write_text(str(os.getpid()))
        await asyncio.sleep(300)
    return flyte.ctx().attempt


@pool.task
async def main(folder: str) -> int:
    return await hang(folder)
"""


def test_a_killed_worker_takes_the_child_it_started_along_and_the_child_runs_again(
    one_cluster_rig: Rig, tmp_path: Path
) -> None:
    rig = one_cluster_rig
    program = rig.load("here_killed", KILLED)
    rig.connect()
    run = flyte.run(program.main, folder=str(tmp_path))
    marker = tmp_path / "worker.pid"
    assert_eventually(lambda: marker.exists() and marker.read_text().isdigit(), timeout=60)
    pid = int(marker.read_text())
    os.kill(pid, signal.SIGKILL)
    assert_eventually(lambda: not pid_alive(pid), timeout=10)
    # Its agent knew the child as that worker's: both it and its parent end lost, and run again (system retries).
    assert run.outputs() == (2,)
    (child,) = children_of(flyte.remote.Run.get(run.name))
    assert child.attempts == 2
    (ended,) = [a for a in call_sync(client_for().list_actions(run.name)) if a.name == child.name]
    assert ended.system_failures == 1


def test_a_child_its_worker_never_takes_is_run_by_its_agent(dropping_rig: Rig) -> None:
    rig = dropping_rig
    run_name, pids = chain_on(rig, "here_dropped", 1)
    assert len(pids) == 2
    # Given to the parent's worker, which dropped it: its agent ran its held copy, once.
    assert gateway_events(rig, "actions_given_here") == 1
    assert [c.attempts for c in children_of(flyte.remote.Run.get(run_name))] == [1]


def test_with_children_here_switched_off_every_child_goes_through_its_agent(switched_off_rig: Rig) -> None:
    rig = switched_off_rig
    _, pids = chain_on(rig, "here_off", 3)
    assert len(pids) == 4
    assert gateway_events(rig, "placed_at_submit") >= 3  # placed as they were submitted, as before
    assert gateway_events(rig, "actions_given_here") == 0


VICTIM = """
import asyncio
import os
from pathlib import Path

import flyte
from flyte._naming import child_action_name

victim_pool = flyte.TaskEnvironment("victim_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=4))


@victim_pool.task
async def step(x: int) -> int:
    return os.getpid()


@victim_pool.task
async def main(folder: str) -> list[int]:
    # Its first child's key, said before the child exists: another pool's code tries to take it.
    inputs = step.interface.encode_inputs(step.interface.bind((7,), {}))
    name = child_action_name("a0", step.identity, inputs.digest, 0)
    Path(folder, "key").write_text(f"{flyte.ctx().action.run_name}/{name}/1")
    while not Path(folder, "go").exists():
        await asyncio.sleep(0.05)
    return [os.getpid(), await step(7)]
"""

ATTACKER = """
import asyncio
import gc

import flyte

attacker_pool = flyte.TaskEnvironment("attacker_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=4))


@attacker_pool.task
async def adopt(key: str) -> int:
    # Its own worker's line to the agent, written as the worker would: "I took this attempt".
    writers = [o for o in gc.get_objects() if isinstance(o, asyncio.StreamWriter)]
    for writer in writers:
        writer.write(('{"adopt": "%s"}\\n' % key).encode())
        await writer.drain()
    return len(writers)
"""


def test_a_worker_of_another_pool_cannot_take_a_held_child(dropping_rig: Rig, tmp_path: Path) -> None:
    rig = dropping_rig
    victim = rig.load("here_victim", VICTIM)
    attacker = rig.load("here_attacker", ATTACKER)
    rig.connect()
    run = flyte.run(victim.main, folder=str(tmp_path))
    key = tmp_path / "key"
    assert_eventually(lambda: key.exists() and key.read_text().endswith("/1"), timeout=60)
    # Before the child is submitted, a task of another pool says its worker took it.
    (written,) = flyte.run(attacker.adopt, key=key.read_text()).outputs()
    assert written >= 1
    (tmp_path / "go").write_text("")
    # Its own worker drops it (the failpoint); its agent does not count it as the other pool's worker's, and runs
    # its held copy itself, on the child's own pool.
    (pids,) = run.outputs()
    parent_pid, child_pid = pids
    assert child_pid == parent_pid  # the victim pool's one worker
    assert [c.attempts for c in children_of(flyte.remote.Run.get(run.name))] == [1]

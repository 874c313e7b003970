"""Room on clusters through a rig (a gateway and an agent as separate processes): retried attempts give back what
they held, so a cluster's free room (the clusters API and the `/metrics` gauges) returns to where it started; a
child that only fits where its driver holds the room says it may never start, and `--max-wait` ends the wait with
an error naming why it waited."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
from test_rig import Rig, start_rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for

pytestmark = pytest.mark.timeout(180)

PROGRAM = """
import flyte

env = flyte.TaskEnvironment("room_env", resources=flyte.Resources(cpu=0.25))


@env.task(retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.1)))
async def boom() -> int:
    raise ValueError("boom, every attempt")


wait_env = flyte.TaskEnvironment("wait_env", resources=flyte.Resources(cpu=0.5))


@wait_env.task
async def train() -> int:
    return 1


@wait_env.task
async def driver() -> int:
    return await train.override(resources=flyte.Resources(cpu=2))()


@wait_env.task(timeout=flyte.Timeout(max_runtime=60, max_queued_time=3))
async def train_soon() -> int:
    return 1


@wait_env.task
async def impatient_driver() -> int:
    return await train_soon.override(resources=flyte.Resources(cpu=2))()
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("room-rig"), "--cpu", "2.25", clusters="eu-west")
    try:
        yield started
    finally:
        started.flyte("rig", "down")


@pytest.fixture(scope="module")
def program(rig: Rig):  # type: ignore[no-untyped-def]
    rig.connect()
    module = rig.load("room_program", PROGRAM)
    flyte.deploy(module.env)
    return module


def _free_cpu() -> float:
    cluster = call_sync(client_for().request("GET", "/api/v1/clusters/eu-west"))
    return float(cluster["free"]["cpu"])


def _gauges() -> dict[str, float]:
    endpoint = client_for().endpoint

    async def scrape() -> str:
        async with aiohttp.ClientSession() as session, session.get(f"{endpoint}/metrics") as response:
            return await response.text()

    text = call_sync(scrape())
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("flyte_gateway_cluster_") and 'cluster="eu-west"' in line
    }


def test_retried_failures_give_their_room_back(rig: Rig, program) -> None:  # type: ignore[no-untyped-def]
    rig.connect()
    assert_eventually(lambda: _free_cpu() == 2.25, timeout=20)
    for _ in range(2):
        run = flyte.run(program.boom)
        with pytest.raises(Exception, match="boom, every attempt"):
            run.wait(timeout=120)
        (root,) = call_sync(client_for().list_actions(run.name))
        assert (root.attempts, root.user_failures) == (2, 2)
        # The failed event is written before the dispatcher's watch sees it: wait for that, not a fixed time.
        assert_eventually(lambda: _free_cpu() == 2.25, timeout=20)
    gauges = _gauges()
    assert gauges['flyte_gateway_cluster_free{cluster="eu-west",resource="cpu"}'] == 2.25
    assert gauges['flyte_gateway_cluster_reserved{cluster="eu-west",resource="cpu"}'] == 0
    assert gauges['flyte_gateway_cluster_reserved_attempts{cluster="eu-west"}'] == 0


def test_a_child_its_driver_blocks_says_so_and_max_wait_ends_the_wait(rig: Rig, program) -> None:  # type: ignore[no-untyped-def]
    """eu-west has 2.25 CPU; the 0.5-CPU driver waits for a 2-CPU child that fits nowhere else."""
    ran = rig.flyte("run", "--name", "blocked-driver", "--max-wait", "6s", "room_program.py", "driver")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    rig.connect()
    (child,) = [a for a in call_sync(client_for().list_actions("blocked-driver")) if a.parent == "a0"]
    reason = "needs cpu 2 on eu-west, where its ancestors hold 0.5 of 2.25; it may never start"
    assert child.phase == "failed"
    assert child.error is not None
    assert child.error.code == "MaxWaitExceeded"
    assert "longer than the run's max wait of 6s: it waited because " + reason in child.error.message
    shown = rig.flyte("get", "placement", "blocked-driver", child.name)
    assert shown.returncode == 0, shown.stderr
    assert "waiting: " + reason in shown.stdout, shown.stdout
    assert "MaxWaitExceeded" in ran.stderr + ran.stdout
    # The driver's room came back when the run ended.
    assert_eventually(lambda: _free_cpu() == 2.25, timeout=20)


def test_a_tasks_max_queued_time_ends_its_wait(rig: Rig, program) -> None:  # type: ignore[no-untyped-def]
    rig.connect()
    flyte.deploy(program.wait_env)
    run = flyte.run(program.impatient_driver)
    with pytest.raises(Exception, match="longer than the task's max queued time of 3s: it waited because needs cpu 2"):
        run.wait(timeout=120)
    (child,) = [a for a in call_sync(client_for().list_actions(run.name)) if a.parent == "a0"]
    assert child.error is not None
    assert child.error.code == "MaxWaitExceeded"

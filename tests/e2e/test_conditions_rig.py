"""A task waits for a condition through a real gateway and agent, and the CLI signals it."""

from __future__ import annotations

import pytest
from test_rig import Rig
from waiting import assert_eventually

import flyte

pytestmark = pytest.mark.timeout(180)

WAITS = """
import flyte

env = flyte.TaskEnvironment("cond_env")


@env.task
async def main(x: int) -> int:
    more = await flyte.new_condition.aio("more", prompt="What should I add?", data_type=int, timeout=600)
    return x + await more.wait.aio()


@env.task
def main_sync(x: int) -> str:
    name = flyte.new_condition("name", prompt="Whose?", data_type=str)
    return f"{name.wait()}:{x}"
"""


def _waiting(rig: Rig, run: str, name: str) -> bool:
    listed = rig.flyte("get", "conditions", run)
    return listed.returncode == 0 and f"{name} " in listed.stdout and "waiting" in listed.stdout


def test_the_cli_signals_a_waiting_task(one_cluster_rig: Rig) -> None:
    rig = one_cluster_rig
    program = rig.load("cond_program", WAITS)
    rig.connect()
    run = flyte.run(program.main, x=1)
    assert_eventually(lambda: _waiting(rig, run.name, "more"), timeout=60)

    wrong = rig.flyte("signal", "condition", run.name, "more", "lots")
    assert wrong.returncode == 1
    assert "condition 'more' takes a int; 'lots' is not one" in wrong.stderr
    unknown = rig.flyte("signal", "condition", run.name, "less", "1")
    assert unknown.returncode == 1
    assert "has no condition 'less'" in unknown.stderr

    signalled = rig.flyte("signal", "condition", run.name, "more", "41")
    assert signalled.returncode == 0, signalled.stderr
    assert run.outputs() == (42,)
    listed = rig.flyte("get", "conditions", run.name)
    assert "more (int) signalled = 41" in listed.stdout


def test_flyte_remote_signals_a_sync_task(one_cluster_rig: Rig) -> None:
    rig = one_cluster_rig
    program = rig.load("cond_sync_program", WAITS)
    rig.connect()
    run = flyte.run(program.main_sync, x=7)
    assert_eventually(lambda: flyte.remote.Condition.get("name", run_name=run.name) is not None, timeout=60)
    condition = flyte.remote.Condition.get("name", run_name=run.name)
    assert condition is not None
    assert (condition.phase, condition.prompt, condition.data_type) == ("waiting", "Whose?", "str")
    condition.signal("ada")
    assert run.outputs() == ("ada:7",)

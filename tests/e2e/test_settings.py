"""Settings that arrive, through a rig (a gateway and an agent as processes, the process backend): a task's env
vars, in a one-off worker (a spare, a cold process) and in a reusable pool's workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_rig import Rig, start_rig

import flyte

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("settings-rig"), clusters="solo")
    try:
        yield started
    finally:
        started.flyte("rig", "down")


ENV_VARS = """
import os

import flyte

pooled = flyte.TaskEnvironment(
    "envvars_pool", env_vars={"SETTING_WHERE": "pool"}, reusable=flyte.ReusePolicy(replicas=1, idle_ttl=60)
)
main_env = flyte.TaskEnvironment("envvars_main", env_vars={"SETTING_WHERE": "one-off", "FLYTE_ENDPOINT": "nowhere"})
# A CPU limit makes the agent start a cold process rather than hand the attempt to a spare.
cold = flyte.TaskEnvironment("envvars_cold", env_vars={"SETTING_WHERE": "cold"}, resources=flyte.Resources(cpu=0.5))
main_env.add_dependency(pooled, cold)


@cold.task
async def in_cold() -> str:
    return os.environ.get("SETTING_WHERE", "unset")


@pooled.task
async def in_pool() -> str:
    return os.environ.get("SETTING_WHERE", "unset")


@main_env.task
async def main() -> list[str]:
    # A task's variables never replace the worker's own: it still reaches the gateway.
    pool, cold = await in_pool(), await in_cold()
    return [os.environ.get("SETTING_WHERE", "unset"), pool, cold, str(os.environ["FLYTE_ENDPOINT"] != "nowhere")]
"""


def test_env_vars_reach_a_one_off_worker_and_a_pool(rig: Rig) -> None:
    program = rig.load("envvars_program", ENV_VARS)
    rig.connect()
    flyte.deploy(program.main_env)
    run = flyte.run(program.main)
    assert run.outputs()[0] == ["one-off", "pool", "cold", "True"]

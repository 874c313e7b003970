"""Warm pools across projects: an environment of the same name deployed at the same version by two projects is two
pools. An agent keyed its pools by environment and version alone, so project beta's call ran in the worker project
alpha's call had started: alpha's code, alpha's settings and secrets, alpha's process."""

from __future__ import annotations

import pytest
from tenants import Tenants

import flyte

pytestmark = pytest.mark.timeout(180)

POOLED = """
import os

import flyte

env = flyte.TaskEnvironment(
    "sec_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2), env_vars={"SEC_POOL_OWNER": "OWNER"}
)


@env.task
async def who() -> str:
    return f"{os.environ.get('SEC_POOL_OWNER')} {os.getpid()}"
"""


def test_two_projects_pools_of_one_environment_name_and_version_are_apart(tenants: Tenants) -> None:
    runs = {}
    for project in ("alpha", "beta"):
        program = tenants.load(f"sec_pool_{project}", POOLED.replace("OWNER", project))
        tenants.as_admin(project)
        flyte.deploy(program.env, version="v1")
        runs[project] = flyte.run(flyte.remote.Task.get("sec_pool.who", version="v1"))
    answers = {project: run.outputs()[0].split() for project, run in runs.items()}
    assert answers["alpha"][0] == "alpha"
    assert answers["beta"][0] == "beta", "beta's call ran beta's code with beta's settings"
    assert answers["alpha"][1] != answers["beta"][1], "in a worker of its own"

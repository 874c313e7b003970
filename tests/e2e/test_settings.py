"""Settings that arrive, through a rig (a gateway and an agent as processes, the process backend): a task's env
vars and secrets (as variables and as 0600 files), in a one-off worker (a spare, a cold process) and in a reusable
pool's workers; a missing secret fails at once naming it; no secret value is ever in an API answer or a log; an
image's pip packages come from a venv the agent builds once per spec; one that cannot be installed fails at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rig import Rig, start_rig
from waiting import assert_eventually

import flyte
import flyte.errors
from flyte._client import call_sync, client_for
from flyte._wire import RunTrace

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
    # A call's own variables: the pooled task then runs in a process of its own.
    overridden = await in_pool.override(env_vars={"SETTING_WHERE": "override"})()
    reaches_gateway = str(os.environ["FLYTE_ENDPOINT"] != "nowhere")
    return [os.environ.get("SETTING_WHERE", "unset"), pool, cold, overridden, reaches_gateway]
"""


def test_env_vars_reach_a_one_off_worker_and_a_pool(rig: Rig) -> None:
    program = rig.load("envvars_program", ENV_VARS)
    rig.connect()
    flyte.deploy(program.main_env)
    run = flyte.run(program.main)
    assert run.outputs()[0] == ["one-off", "pool", "cold", "override", "True"]


SECRETS = """
import os
import stat
from pathlib import Path

import flyte

MOUNTED = flyte.Secret(key="tls-cert", mount="/etc/flyte-test")
USES = [flyte.Secret(key="api-token", as_env_var="API_TOKEN"), MOUNTED]
pooled = flyte.TaskEnvironment(
    "secrets_pool", secrets=USES, reusable=flyte.ReusePolicy(replicas=1, idle_ttl=60)
)
main_env = flyte.TaskEnvironment("secrets_main", secrets=USES)
missing_env = flyte.TaskEnvironment("secrets_missing", secrets=["never-set"])
main_env.add_dependency(pooled, missing_env)


def _seen() -> list[str]:
    path = Path(os.environ.get("FLYTE_SECRETS_DIR", "") + "/etc/flyte-test/tls-cert")
    mode = stat.S_IMODE(path.stat().st_mode)
    # Compared here, so the values never appear in outputs or logs.
    return [
        str(os.environ["API_TOKEN"] == "tok-" + "3141"),
        str(os.environ[MOUNTED.env_var] == "cert-" + "2718"),
        str(path.read_text() == "cert-" + "2718"),
        oct(mode),
    ]


@pooled.task
async def in_pool() -> list[str]:
    return _seen()


@missing_env.task(retries=3)
async def needs_missing() -> str:
    return "never runs"


@main_env.task
async def main() -> list[str]:
    return _seen() + await in_pool()
"""

TOKEN, CERT = "tok-3141", "cert-2718"


def test_secrets_reach_tasks_as_env_vars_and_files_and_never_come_back(rig: Rig) -> None:
    created = rig.flyte("create", "secret", "api-token", "--value", TOKEN)
    assert created.returncode == 0, created.stderr
    cert_file = rig.cwd / "cert.pem"
    cert_file.write_text(CERT)
    assert rig.flyte("create", "secret", "tls-cert", "--from-file", str(cert_file)).returncode == 0
    program = rig.load("secrets_program", SECRETS)
    rig.connect()
    flyte.deploy(program.main_env)
    run = flyte.run(program.main)
    assert run.outputs()[0] == ["True", "True", "True", "0o600"] * 2
    listed = rig.flyte("get", "secrets")
    assert "api-token" in listed.stdout
    assert "tls-cert" in listed.stdout
    client = client_for()
    answers = [
        listed.stdout,
        call_sync(client.request("GET", "/api/v1/secrets", params={"project": "default"})),
        call_sync(client.request("GET", "/api/v1/tasks/secrets_main.main", params={"project": "default"})),
        call_sync(client.request("GET", f"/api/v1/runs/{run.name}/actions")),
        call_sync(client.request("GET", f"/api/v1/runs/{run.name}/trace")),
        rig.flyte("get", "logs", run.name, "a0").stdout,
    ]
    rig_dir = Path(rig.env["FLYTE_HOME"]) / "rig"
    logs = sorted(rig_dir.glob("*.log"))
    assert {rig_dir / "gateway.log", rig_dir / "agent-solo.log"} <= set(logs)
    for text in [json.dumps(answer) for answer in answers] + [log.read_text() for log in logs]:
        assert TOKEN not in text
        assert CERT not in text
    deleted = rig.flyte("delete", "secret", "tls-cert")
    assert deleted.returncode == 0, deleted.stderr
    assert "tls-cert" not in rig.flyte("get", "secrets").stdout


def test_a_missing_secret_fails_the_attempt_at_once_naming_it(rig: Rig) -> None:
    program = rig.load("secrets_missing_program", SECRETS)
    rig.connect()
    flyte.deploy(program.missing_env)
    run = flyte.run(program.needs_missing)
    with pytest.raises(flyte.errors.NonRecoverableError, match="secret 'never-set' is not set in project 'default'"):
        run.wait(timeout=60)
    (action,) = call_sync(client_for().list_actions(run.name))
    assert action.attempts == 1, "a missing secret is not retried"


IMAGES = """
import flyte

image = flyte.Image.from_debian_base().with_pip_packages("termcolor")
pooled = flyte.TaskEnvironment("image_pool", image=image, reusable=flyte.ReusePolicy(replicas=1, idle_ttl=60))
main_env = flyte.TaskEnvironment("image_main", image=image)
broken = flyte.TaskEnvironment(
    "image_broken", image=flyte.Image.from_debian_base().with_pip_packages("termcolor==0.0.0.404")
)
main_env.add_dependency(pooled, broken)


def _where() -> str:
    import termcolor

    return termcolor.__file__


@pooled.task
async def in_pool() -> str:
    return _where()


@broken.task(retries=3)
async def never() -> str:
    return "never runs"


@main_env.task
async def main() -> list[str]:
    return [_where(), await in_pool()]
"""


def test_an_image_s_pip_packages_reach_a_one_off_worker_and_a_pool_from_a_cached_venv(rig: Rig) -> None:
    program = rig.load("images_program", IMAGES)
    rig.connect()
    flyte.deploy(program.main_env)
    run = flyte.run(program.main)
    venvs = Path(rig.env["FLYTE_HOME"]) / "rig"
    one_off, pooled = run.outputs()[0]
    # One venv for the spec, under the agent's work directory, used by both.
    assert one_off == pooled
    assert Path(one_off).is_relative_to(venvs)
    assert "/venvs/" in one_off

    def built() -> bool:
        trace = RunTrace.model_validate(call_sync(client_for().request("GET", f"/api/v1/runs/{run.name}/trace")))
        return any(span.name == "build image" for span in trace.spans)

    assert_eventually(built, timeout=30)
    again = flyte.run(program.main)
    assert again.outputs()[0] == [one_off, pooled]


def test_a_package_that_cannot_be_installed_fails_the_run_at_once_naming_it(rig: Rig) -> None:
    program = rig.load("images_broken_program", IMAGES)
    rig.connect()
    flyte.deploy(program.broken)
    run = flyte.run(program.never)
    with pytest.raises(flyte.errors.NonRecoverableError, match=r"termcolor==0\.0\.0\.404"):
        run.wait(timeout=120)
    (action,) = call_sync(client_for().list_actions(run.name))
    assert action.attempts == 1, "a package that cannot be installed is not retried"

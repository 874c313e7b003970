"""Local mode: `TaskEnvironment` validation, `flyte.deploy` and `flyte.remote.Task` references."""

from __future__ import annotations

from pathlib import Path

import pytest

import flyte
import flyte.errors
import flyte.remote
from flyte._runtime._bundle import user_paths
from flyte._wire import Phase

shared = flyte.TaskEnvironment("sdk_deploy_shared")
helpers = flyte.TaskEnvironment("sdk_deploy_helpers")
app = flyte.TaskEnvironment("sdk_deploy_app", depends_on=[shared])
app.add_dependency(helpers)


@shared.task
async def normalise(text: str) -> str:
    return text.strip().lower()


@helpers.task
def shout(text: str) -> str:
    return text.upper() + "!"


@app.task
async def main(text: str) -> str:
    ref = flyte.remote.Task.get("sdk_deploy_shared.normalise", auto_version="latest")
    return str(await ref(text))


@app.task
async def calls_unknown() -> str:
    ref = flyte.remote.Task.get("sdk_deploy_shared.does_not_exist", auto_version="latest")
    try:
        await ref("x")
    except flyte.errors.RemoteTaskNotFoundError as error:
        return error.code
    return "found"


@app.task
async def fails_on_unknown() -> str:
    return str(await flyte.remote.Task.get("nowhere_env.nothing")("x"))


# --- TaskEnvironment -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["snake_case", "kebab-case", "env1", "a", "with_3-parts"])
def test_environment_names_in_snake_or_kebab_case_are_accepted(name: str) -> None:
    assert flyte.TaskEnvironment(name).name == name


@pytest.mark.parametrize("name", ["CamelCase", "has space", "trailing_", "-leading", "double__underscore", "", "a.b"])
def test_other_environment_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="snake_case or kebab-case"):
        flyte.TaskEnvironment(name)


def test_task_names_are_env_dot_function() -> None:
    assert main.name == "sdk_deploy_app.main"
    assert set(app.tasks) == {"main", "calls_unknown", "fails_on_unknown"}


def test_add_dependency_and_depends_on_are_both_recorded() -> None:
    assert app.depends_on == [shared, helpers]


# --- deploy ------------------------------------------------------------------------------------------------


def test_deploy_includes_the_environments_it_depends_on() -> None:
    deployments = flyte.deploy(app)
    assert [d.env.name for d in deployments] == ["sdk_deploy_app", "sdk_deploy_shared", "sdk_deploy_helpers"]
    by_env = {d.env.name: d for d in deployments}
    assert set(by_env["sdk_deploy_app"].tasks) == {
        "sdk_deploy_app.main",
        "sdk_deploy_app.calls_unknown",
        "sdk_deploy_app.fails_on_unknown",
    }
    assert by_env["sdk_deploy_helpers"].tasks == ("sdk_deploy_helpers.shout",)
    assert "sdk_deploy_shared" in by_env["sdk_deploy_shared"].summary_repr()


def test_deploy_versions_are_stable() -> None:
    first = {d.env.name: d.version for d in flyte.deploy(app)}
    second = {d.env.name: d.version for d in flyte.deploy(app, dry_run=True)}
    assert first == second
    assert all(first.values())


def test_deploy_with_an_explicit_version() -> None:
    assert {d.version for d in flyte.deploy(app, version="v7", dry_run=True)} == {"v7"}


def test_deployed_tasks_are_listed() -> None:
    flyte.deploy(helpers)
    listed = {t.name: t for t in flyte.remote.Task.listall()}
    assert listed["sdk_deploy_helpers.shout"].env == "sdk_deploy_helpers"


def test_dry_run_records_nothing() -> None:
    flyte.deploy(helpers, dry_run=True)
    assert flyte.remote.Task.listall() == []


def test_deploy_needs_an_environment() -> None:
    with pytest.raises(flyte.errors.DeploymentError):
        flyte.deploy()


# --- remote.Task references --------------------------------------------------------------------------------


def test_remote_task_reference_runs_inside_a_task() -> None:
    run = flyte.run(main, "  Hello ")
    assert run.outputs()[0] == "hello"
    assert any(a.task == "sdk_deploy_shared.normalise" for a in run._state.actions.values())


def test_remote_task_unknown_name_raises_remote_task_not_found() -> None:
    assert flyte.run(calls_unknown).outputs()[0] == "RemoteTaskNotFoundError"


def test_remote_task_unknown_name_fails_the_run() -> None:
    run = flyte.run(fails_on_unknown)
    assert run.phase is Phase.FAILED
    with pytest.raises(flyte.errors.RemoteTaskNotFoundError, match=r"nowhere_env\.nothing"):
        run.wait()


def test_remote_task_get_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"<environment>\.<task>"):
        flyte.remote.Task.get("no-dot")
    with pytest.raises(ValueError, match="auto_version"):
        flyte.remote.Task.get("a.b", auto_version="newest")  # type: ignore[arg-type]


def test_user_paths_rewrites_only_the_bundles_own_paths(tmp_path: Path) -> None:
    bundle = tmp_path / "agents" / "eu-west" / "bundles" / "947b"
    library = '  File "/usr/lib/python3.11/asyncio/x.py", line 1\n'
    text = f'  File "{bundle}/pkg/fail.py", line 3, in fail\n{library}'
    rewritten = user_paths(text, bundle, "/home/ana/project/")
    assert rewritten == f'  File "/home/ana/project/pkg/fail.py", line 3, in fail\n{library}'
    assert user_paths(text, bundle, None) == text, "no recorded root: left as it is"
    assert user_paths(text, Path("/"), "/home/ana") == text, "never the filesystem's root"

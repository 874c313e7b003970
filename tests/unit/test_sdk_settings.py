"""Local mode: a task's env_vars are in os.environ while it runs, and only then; tasks whose variables differ take
turns, also when a parent with one set waits for children with another."""

from __future__ import annotations

import asyncio
import os

import pytest

import flyte
import flyte.errors

blue = flyte.TaskEnvironment("settings_blue", env_vars={"SETTINGS_COLOUR": "blue", "SETTINGS_ONLY_BLUE": "1"})
green = flyte.TaskEnvironment("settings_green", env_vars={"SETTINGS_COLOUR": "green"})
plain = flyte.TaskEnvironment("settings_plain")
blue.add_dependency(green, plain)


@green.task
def green_sync(x: int) -> str:
    # A sync body in its own thread still sees its own variables, never blue's.
    return f"{x}:{os.environ.get('SETTINGS_COLOUR')}:{os.environ.get('SETTINGS_ONLY_BLUE', '-')}"


@plain.task
async def plain_async() -> str:
    return os.environ.get("SETTINGS_COLOUR", "unset")


@blue.task
async def blue_async(x: int) -> str:
    await asyncio.sleep(0)
    return f"{x}:{os.environ.get('SETTINGS_COLOUR')}"


@blue.task
async def parent() -> list[str]:
    mine_before = os.environ["SETTINGS_COLOUR"]
    results = await asyncio.gather(
        *(green_sync.aio(i) for i in range(3)), *(blue_async.aio(i) for i in range(3)), plain_async.aio()
    )
    return [mine_before, *results, os.environ["SETTINGS_COLOUR"]]


def test_each_task_sees_its_own_env_vars_and_the_process_gets_its_own_back() -> None:
    os.environ.pop("SETTINGS_COLOUR", None)
    run = flyte.with_runcontext(mode="local").run(parent)
    assert run.outputs()[0] == [
        "blue",
        "0:green:-",
        "1:green:-",
        "2:green:-",
        "0:blue",
        "1:blue",
        "2:blue",
        "unset",
        "blue",
    ]
    assert "SETTINGS_COLOUR" not in os.environ
    assert "SETTINGS_ONLY_BLUE" not in os.environ


@blue.task
def sync_parent() -> list[str]:
    # A sync parent blocks its thread on each child: it lets go of the gate meanwhile, so green can run.
    before = os.environ["SETTINGS_COLOUR"]
    return [before, *(green_sync(i) for i in range(2)), os.environ["SETTINGS_COLOUR"]]


def test_a_sync_parent_waiting_for_children_with_other_variables_does_not_block_them() -> None:
    run = flyte.with_runcontext(mode="local").run(sync_parent)
    assert run.outputs()[0] == ["blue", "0:green:-", "1:green:-", "blue"]


def test_run_env_vars_apply_and_a_task_s_own_win() -> None:
    run = flyte.with_runcontext(mode="local", env_vars={"SETTINGS_COLOUR": "red", "SETTINGS_RUN": "r"}).run(plain_async)
    assert run.outputs()[0] == "red"
    run = flyte.with_runcontext(mode="local", env_vars={"SETTINGS_COLOUR": "red"}).run(green_sync, x=1)
    assert run.outputs()[0] == "1:green:-"
    assert "SETTINGS_RUN" not in os.environ


secretive = flyte.TaskEnvironment("settings_secretive", secrets=[flyte.Secret(key="settings-token", as_env_var="TOK")])


@secretive.task
async def read_token() -> str:
    return os.environ["TOK"]


def test_a_local_secret_comes_from_the_environment_or_fails_at_once_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOK", raising=False)
    run = flyte.with_runcontext(mode="local").run(read_token)
    with pytest.raises(flyte.errors.NonRecoverableError, match="set TOK"):
        run.wait()
    monkeypatch.setenv("TOK", "t0k")
    assert flyte.with_runcontext(mode="local").run(read_token).outputs()[0] == "t0k"

"""Local mode: `flyte.ctx()`, `flyte.custom_context(...)` and `flyte.group(...)` as task code sees them."""

from __future__ import annotations

import pytest

import flyte

env = flyte.TaskEnvironment("sdk_context")


def _describe() -> dict[str, object]:
    tc = flyte.ctx()
    assert tc is not None
    return {
        "action": tc.action.name,
        "run": tc.action.run_name,
        "attempt": tc.attempt_number,
        "attempt_alias": tc.attempt,
        "task": tc.task_name,
        "group": tc.group,
        "version": tc.version,
        "custom": dict(tc.custom_context),
    }


@env.task
def whoami() -> dict[str, object]:
    return _describe()


@env.task
async def whoami_async() -> dict[str, object]:
    return _describe()


@env.task
def parent_and_child() -> list[dict[str, object]]:
    return [_describe(), whoami()]


@env.task
async def custom_context_scopes() -> list[dict[str, object]]:
    outside_before = await whoami_async()
    with flyte.custom_context(team="blue"):
        inside = await whoami_async()
        with flyte.custom_context(stage="two"):
            nested = await whoami_async()
    outside_after = await whoami_async()
    return [outside_before, inside, nested, outside_after]


@env.task
async def grouped() -> None:
    await whoami_async()
    with flyte.group("stage-1"):
        await whoami_async()
        with flyte.group("inner"):
            await whoami_async()
    await whoami_async()


@env.task
async def group_seen_by_child() -> str | None:
    with flyte.group("visible"):
        return (await whoami_async())["group"]  # type: ignore[return-value]


def test_ctx_is_none_outside_a_task() -> None:
    assert flyte.ctx() is None


def test_ctx_inside_the_root_task() -> None:
    run = flyte.run(whoami)
    info = run.outputs()[0]
    assert info["action"] == "a0"
    assert info["run"] == run.name
    assert info["attempt"] == 1
    assert info["attempt_alias"] == 1, "`attempt` stays as an alias of Flyte 2's `attempt_number`"
    assert info["task"] == "sdk_context.whoami"


def test_ctx_inside_a_child_names_the_child_action() -> None:
    run = flyte.run(parent_and_child)
    parent, child = run.outputs()[0]
    assert parent["action"] == "a0"
    (child_name,) = [name for name, record in run._state.actions.items() if record.parent == "a0"]
    assert child["action"] == child_name
    assert child["run"] == parent["run"] == run.name
    assert child["attempt"] == 1


def test_ctx_carries_the_run_version() -> None:
    run = flyte.with_runcontext(version="v42").run(parent_and_child)
    parent, child = run.outputs()[0]
    assert parent["version"] == child["version"] == "v42"


def test_run_custom_context_reaches_root_and_children() -> None:
    run = flyte.with_runcontext(custom_context={"owner": "qa"}).run(parent_and_child)
    parent, child = run.outputs()[0]
    assert parent["custom"] == {"owner": "qa"}
    assert child["custom"] == {"owner": "qa"}


def test_custom_context_block_is_seen_by_children_started_inside_it() -> None:
    run = flyte.with_runcontext(custom_context={"owner": "qa"}).run(custom_context_scopes)
    before, inside, nested, after = run.outputs()[0]
    assert before["custom"] == {"owner": "qa"}
    assert inside["custom"] == {"owner": "qa", "team": "blue"}
    assert nested["custom"] == {"owner": "qa", "team": "blue", "stage": "two"}
    assert after["custom"] == {"owner": "qa"}


def test_custom_context_values_must_be_strings() -> None:
    with pytest.raises(TypeError, match="must be a str"), flyte.custom_context(n=1):  # type: ignore[arg-type]
        pass


def test_group_labels_the_actions_started_inside_it() -> None:
    run = flyte.run(grouped)
    groups = [record.group for record in run._state.actions.values() if record.parent == "a0"]
    assert groups == [None, "stage-1", "stage-1/inner", None]


def test_group_is_visible_to_the_child_through_ctx() -> None:
    run = flyte.run(group_seen_by_child)
    assert run.outputs()[0] == "visible"


@pytest.mark.parametrize("name", ["", "a/b"])
def test_group_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="group"), flyte.group(name):
        pass

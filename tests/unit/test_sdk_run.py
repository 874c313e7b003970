"""Local mode: the `flyte.Run` handle, run metadata, deterministic action names, and `flyte.remote.Run`."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

import flyte
import flyte.errors
import flyte.remote
from flyte._run_state import read_action_summaries
from flyte._wire import Phase

env = flyte.TaskEnvironment("sdk_run")

ACTION_NAME = re.compile(r"^a[0-9a-f]{20}$")


@env.task
def double(x: int) -> int:
    return x * 2


@env.task
def pair(x: int) -> tuple[int, str]:
    return x, str(x)


@env.task
def nothing() -> None:
    return None


@env.task
def fails(x: int) -> int:
    raise ValueError(f"no good: {x}")


@env.task
async def tree(xs: list[int]) -> int:
    total = 0
    for x in xs:
        total += await double.aio(x)
    return total + (await double.aio(total))


@env.task
async def gathered(xs: list[int]) -> list[int]:
    return list(await asyncio.gather(*(double.aio(x) for x in xs)))


@env.task
def twice_in_order(first: int, second: int) -> list[int]:
    return [double(first), double(second)]


def _child_names(run: flyte.Run) -> set[str]:
    return {name for name in run._state.actions if name != "a0"}


# --- the Run handle ----------------------------------------------------------------------------------------


def test_run_blocks_until_the_run_ends() -> None:
    run = flyte.run(double, 21)
    assert run.done()
    assert run.phase is Phase.SUCCEEDED
    assert run.wait() is None


def test_single_output_equals_its_one_tuple() -> None:
    outputs = flyte.run(double, 21).outputs()
    assert outputs == (42,)
    assert outputs[0] == 42
    assert len(outputs) == 1


def test_tuple_annotated_returns_give_several_outputs() -> None:
    outputs = flyte.run(pair, 7).outputs()
    assert outputs == (7, "7")
    first, second = outputs
    assert (first, second) == (7, "7")


def test_no_output_gives_no_outputs() -> None:
    assert flyte.run(nothing).outputs() == ()


def test_inputs_are_kept() -> None:
    assert flyte.run(double, x=5).inputs() == {"x": 5}


def test_a_failed_run_raises_from_wait_and_outputs() -> None:
    run = flyte.run(fails, 3)
    assert run.phase is Phase.FAILED
    assert run.done()
    with pytest.raises(flyte.errors.RuntimeUserError, match="no good: 3"):
        run.wait()
    with pytest.raises(ValueError, match="no good: 3"):
        run.outputs()


def test_run_name_is_chosen_with_runcontext() -> None:
    run = flyte.with_runcontext(name="nightly-42").run(double, 1)
    assert run.name == "nightly-42"
    assert run.outputs()[0] == 2


def test_run_names_are_unique() -> None:
    flyte.with_runcontext(name="only-once").run(double, 1)
    with pytest.raises(ValueError, match="already exists"):
        flyte.with_runcontext(name="only-once").run(double, 1)


def test_generated_run_names_differ() -> None:
    assert flyte.run(double, 1).name != flyte.run(double, 1).name


def test_url_is_the_metadata_directory(isolated_home: Path) -> None:
    run = flyte.with_runcontext(name="with-metadata").run(tree, [1, 2])
    url = Path(run.url)
    assert url.is_dir()
    assert url.is_relative_to(isolated_home)
    summary = json.loads((url / "run.json").read_text())
    assert summary["name"] == "with-metadata"
    assert summary["task"] == "sdk_run.tree"
    assert summary["phase"] == "succeeded"
    actions = read_action_summaries(url)
    assert {a.name for a in actions} == set(run._state.actions)
    assert len(actions) == 4
    assert all(a.phase is Phase.SUCCEEDED for a in actions)


def test_failed_run_metadata_records_the_error() -> None:
    run = flyte.run(fails, 1)
    summary = json.loads((Path(run.url) / "run.json").read_text())
    assert summary["phase"] == "failed"
    assert summary["error"]["code"] == "ValueError"


# --- deterministic action names ----------------------------------------------------------------------------


def test_the_same_program_gives_the_same_child_names() -> None:
    first = flyte.run(tree, [1, 2, 3])
    second = flyte.run(tree, [1, 2, 3])
    assert first.name != second.name
    assert _child_names(first) == _child_names(second)
    assert len(_child_names(first)) == 4
    assert all(ACTION_NAME.match(name) for name in _child_names(first))
    assert set(first._state.actions) >= {"a0"}


def test_concurrent_children_get_the_same_names_every_time() -> None:
    first = flyte.run(gathered, [5, 6, 7, 8])
    second = flyte.run(gathered, [5, 6, 7, 8])
    assert first.outputs()[0] == [10, 12, 14, 16]
    assert _child_names(first) == _child_names(second)
    assert len(_child_names(first)) == 4


def test_different_inputs_give_different_child_names() -> None:
    # tree awaits its children one by one, so actions are recorded in call order: double(1), double(2), then
    # double(3) and double(12) in one run, double(4) and double(14) in the other.
    first = [name for name in flyte.run(tree, [1, 2, 3])._state.actions if name != "a0"]
    second = [name for name in flyte.run(tree, [1, 2, 4])._state.actions if name != "a0"]
    assert first[:2] == second[:2]
    assert first[2] != second[2]
    assert first[3] != second[3]


def test_call_order_is_part_of_the_name() -> None:
    forward = _child_names(flyte.run(twice_in_order, 1, 2))
    backward = _child_names(flyte.run(twice_in_order, 2, 1))
    assert len(forward) == len(backward) == 2
    assert forward.isdisjoint(backward)


def test_the_same_call_twice_in_one_parent_gives_two_actions() -> None:
    run = flyte.run(twice_in_order, 4, 4)
    assert run.outputs()[0] == [8, 8]
    assert len(_child_names(run)) == 2


# --- flyte.remote.Run over local runs ----------------------------------------------------------------------


def test_remote_run_get_reads_a_local_run() -> None:
    run = flyte.with_runcontext(name="looked-up").run(double, 2)
    found = flyte.remote.Run.get("looked-up")
    assert found.name == "looked-up"
    assert found.task == "sdk_run.double"
    assert found.phase is Phase.SUCCEEDED
    assert found.url == run.url
    assert {a.name for a in found.actions()} == {"a0"}


def test_remote_run_get_of_an_unknown_name_fails() -> None:
    with pytest.raises(LookupError, match="no-such-run"):
        flyte.remote.Run.get("no-such-run")


def test_remote_run_listall_filters_by_phase_and_task() -> None:
    flyte.with_runcontext(name="ok-one").run(double, 1)
    flyte.with_runcontext(name="bad-one").run(fails, 1)
    flyte.with_runcontext(name="ok-two").run(pair, 1)
    assert {r.name for r in flyte.remote.Run.listall()} == {"ok-one", "bad-one", "ok-two"}
    assert {r.name for r in flyte.remote.Run.listall(in_phase="failed")} == {"bad-one"}
    assert {r.name for r in flyte.remote.Run.listall(in_phase=Phase.SUCCEEDED)} == {"ok-one", "ok-two"}
    assert {r.name for r in flyte.remote.Run.listall(task_name="sdk_run.pair")} == {"ok-two"}
    assert len(list(flyte.remote.Run.listall(limit=2))) == 2

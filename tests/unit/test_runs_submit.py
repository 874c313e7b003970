"""`Runs.submit_many`: a batch of children reads its run and each parent once, and still judges every child on its
own (the run has ended, the parent does not exist, the name was submitted before)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import TASK, Domain, counted_reads, domain, new_run

from flyte._wire import ActionEvent, ActionSubmitRequest, ErrorInfo, Phase
from gateway._domain_errors import Conflict, NotFound


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


def n(label: str) -> str:
    """An action name (`a` and 20 hex digits) spelled by a short label: `n("c1")`, `n("gone")`."""
    return "a" + label.encode().hex().rjust(20, "0")


def child(label: str, parent: str = "a0") -> ActionSubmitRequest:
    # An exact version, remembered by the registry since the run was made: the reads counted are the submission's.
    return ActionSubmitRequest(name=n(label), parent=parent if parent == "a0" else n(parent), task=TASK, version="v1")


async def test_a_batch_reads_its_parent_once_and_no_new_child_s_name(
    d: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await d.runs.get_run(await new_run(d.runs))
    reads = counted_reads(d, monkeypatch)
    submitted = await d.runs.submit_many(run, [child(f"c{i}") for i in range(5)])
    assert [(a.name, created) for a, created in submitted] == [(n(f"c{i}"), True) for i in range(5)]
    assert reads[f"/flyte/actions/{run.name}/a0"] == 1
    assert reads[f"/flyte/runs/{run.name}"] == 0  # the caller's record of the run serves the batch
    # A name is taken or not in the child's own write: nothing is read to find out.
    assert sum(reads.values()) == 1


async def test_a_parent_the_caller_just_read_is_not_read_again(d: Domain, monkeypatch: pytest.MonkeyPatch) -> None:
    run = await d.runs.get_run(await new_run(d.runs))
    _, parent = await d.runs.read_action(run.name, "a0")
    reads = counted_reads(d, monkeypatch)
    await d.runs.submit_many(run, [child("c1"), child("c2")], {"a0": parent})
    assert reads[f"/flyte/actions/{run.name}/a0"] == 0
    assert sum(reads.values()) == 0


async def test_children_of_a_parent_that_does_not_exist_are_refused_and_the_others_written(d: Domain) -> None:
    run = await d.runs.get_run(await new_run(d.runs))
    [(p1, _)] = await d.runs.submit_many(run, [child("p1")])
    batch = [child("c1"), child("c2", parent="gone"), child("c3", parent="p1"), child("c4", parent="also-gone")]
    with pytest.raises(NotFound, match=f"no action {n('gone')}"):  # the first refusal in request order
        await d.runs.submit_many(run, batch)
    actions, _ = await d.runs.list_actions(run.name)
    assert {(a.name, a.parent) for a in actions} == {
        ("a0", None),
        (p1.name, "a0"),
        (n("c1"), "a0"),
        (n("c3"), p1.name),
    }


async def test_a_resubmitted_batch_is_answered_with_the_existing_actions(d: Domain) -> None:
    run = await d.runs.get_run(await new_run(d.runs))
    first = await d.runs.submit_many(run, [child("p1"), child("c1")])
    batch = [child("c1"), child("c2", parent="p1"), child("p1")]
    again = await d.runs.submit_many(run, batch)
    assert [(a.name, created) for a, created in again] == [(n("c1"), False), (n("c2"), True), (n("p1"), False)]
    by_name = {a.name: a for a, _ in first}
    assert [again[0][0].revision, again[2][0].revision] == [by_name[n("c1")].revision, by_name[n("p1")].revision]


async def test_a_resubmission_under_another_parent_is_a_name_collision(d: Domain) -> None:
    run = await d.runs.get_run(await new_run(d.runs))
    await d.runs.submit_many(run, [child("p1"), child("c1")])
    with pytest.raises(Conflict) as refused:
        await d.runs.submit_many(run, [child("c2"), child("c1", parent="p1")])
    assert refused.value.code == "name_collision"
    assert (await d.runs.get_action(run.name, n("c2"))).phase is Phase.QUEUED


async def test_an_ended_run_takes_no_new_children_and_still_answers_the_existing_ones(d: Domain) -> None:
    name = await new_run(d.runs)
    await d.runs.submit_many(await d.runs.get_run(name), [child("c1")])
    for phase in (Phase.PLACED, Phase.RUNNING, Phase.SUCCEEDED):
        await d.runs.report(name, "a0", ActionEvent(phase=phase, attempt=1, cluster="east", epoch=1))
    ended = await d.runs.get_run(name)
    assert ended.phase is Phase.SUCCEEDED
    [(existing, created)] = await d.runs.submit_many(ended, [child("c1")])
    assert (existing.name, created) == (n("c1"), False)
    with pytest.raises(Conflict) as refused:
        await d.runs.submit_many(ended, [child("c1"), child("c2")])
    assert refused.value.code == "run_ended"
    with pytest.raises(NotFound):
        await d.runs.get_action(name, n("c2"))


async def test_an_ended_parent_takes_no_new_children_and_still_answers_the_existing_ones(d: Domain) -> None:
    run = await d.runs.get_run(await new_run(d.runs))
    await d.runs.submit_many(run, [child("p1")])
    await d.runs.submit_many(run, [child("c1", parent="p1")])
    for phase in (Phase.PLACED, Phase.RUNNING, Phase.FAILED):
        error = (
            ErrorInfo(error_type="ValueError", code="ValueError", kind="user", message="no")
            if phase is Phase.FAILED
            else None
        )
        event = ActionEvent(phase=phase, attempt=1, cluster="east", epoch=1, error=error)
        await d.runs.report(run.name, n("p1"), event)
    assert (await d.runs.get_action(run.name, n("p1"))).phase.is_terminal
    [(existing, created)] = await d.runs.submit_many(run, [child("c1", parent="p1")])
    assert (existing.name, created) == (n("c1"), False)
    with pytest.raises(Conflict) as refused:
        await d.runs.submit_many(run, [child("c2", parent="p1")])
    assert refused.value.code == "parent_ended"
    with pytest.raises(NotFound):
        await d.runs.get_action(run.name, n("c2"))

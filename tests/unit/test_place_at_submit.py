"""Placement at submission (`Placer.place_at_submit`): the leader places a child that the next pass would decide
first in its submission's own transaction and sends its agent the attempt once that returns; a child that has no
room is written queued with its reason, which the pass does not write again; a child that others go before is
written queued for the passes; nothing a child not placed reserved stays held."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import (
    TASK,
    Domain,
    child,
    cluster,
    dispatcher,
    idle,
    leader_holding_east,
    leading,
    new_run,
    settle,
    socket,
)

import flyte
from flyte._wire import (
    ActionEvent,
    ActionSubmitRequest,
    Assignment,
    AssignMessage,
    Phase,
    PlacementRecord,
    ResourcesSpec,
    TaskOverrides,
)
from gateway._dispatch import Dispatcher
from gateway._keys import action_key, placement_key
from gateway._pending import Pending
from gateway._sessions import AgentSession


@pytest.fixture
async def leader(d: Domain) -> AsyncIterator[tuple[Dispatcher, AgentSession]]:
    """A leading dispatcher holding the agent of `east`, with the run's root placed and sent."""
    async with leader_holding_east(d, cpu=2.0) as held:
        yield held


async def placed_root(d: Domain, leader: Dispatcher, session: AgentSession) -> str:
    run = await new_run(d.runs)
    await settle(lambda: not session.outbox.empty())
    session.outbox.get_nowait()
    await settle(lambda: not leader.placer._fresh and not leader.placer._full_pass)
    return run


async def test_a_child_is_placed_in_its_submissions_commit_and_its_agent_told_once(
    d: Domain, leader: tuple[Dispatcher, AgentSession]
) -> None:
    dispatch, session = leader
    run = await placed_root(d, dispatch, session)
    made = made_assignments(dispatch)
    name = await child(d.runs, run)
    action = await d.runs.get_action(run, name)
    assert (action.phase, action.attempts, action.cluster, action.epoch) == (Phase.PLACED, 1, "east", session.epoch)
    record = await d.store.get(placement_key(run, name, 1))
    assert record is not None
    assert PlacementRecord.model_validate_json(record.value).cluster == "east"
    await settle(lambda: not session.outbox.empty())
    message = AssignMessage.model_validate_json(session.outbox.get_nowait())
    assert [(a.action, a.attempt) for a in message.assignments] == [(name, 1)]
    assert dispatch.placer._events["placed_at_submit"] == 1
    # The watch then sees it placed: the agent is not told again, nor its assignment (a token, a pending) made again.
    # A lone submission commits in its own task, which goes on before the watch's sender runs.
    await idle()
    assert session.outbox.empty()
    assert made == [(name, 1)]
    assert len(dispatch.reservations.held_by(run, name)) == 1


def made_assignments(dispatch: Dispatcher) -> list[tuple[str, int]]:
    """The (action, attempt) of each assignment the dispatcher makes from now on, as it makes them."""
    made: list[tuple[str, int]] = []
    make = dispatch.placer.assignment

    async def counted(item: Pending, attempt: int, cluster: str, epoch: int) -> Assignment:
        made.append((item.action.name, attempt))
        return await make(item, attempt, cluster, epoch)

    dispatch.placer.assignment = counted  # type: ignore[method-assign]
    return made


async def test_children_with_no_room_are_written_with_their_reason_once_and_placed_when_room_comes_back(
    d: Domain, leader: tuple[Dispatcher, AgentSession]
) -> None:
    dispatch, session = leader
    run = await placed_root(d, dispatch, session)  # the root holds 1 of the 2 cpus
    first = await child(d.runs, run, "a" + "b" * 20)
    waiting = [f"a{c * 20}" for c in "cdef"]
    await d.runs.submit_many(
        await d.runs.get_run(run), [ActionSubmitRequest(name=n, parent="a0", task=TASK) for n in waiting]
    )
    actions = [await d.runs.get_action(run, n) for n in waiting]
    assert {a.phase for a in actions} == {Phase.QUEUED}
    # Each says why in the record its submission wrote; the decision is recorded for the first of the kind.
    reason = actions[0].waiting
    assert reason is not None
    assert reason.startswith("no cluster has room now")
    assert [a.waiting for a in actions] == [reason] * 4
    assert [await d.store.get(placement_key(run, n, 1)) is not None for n in waiting] == [True, False, False, False]
    # The pass that sees them queued finds their reason recorded: it writes nothing for them.
    revisions = [(await d.store.get(action_key(run, n))).mod_revision for n in waiting]  # type: ignore[union-attr]
    await settle(lambda: not dispatch.placer._fresh)
    await idle()
    assert [(await d.store.get(action_key(run, n))).mod_revision for n in waiting] == revisions  # type: ignore[union-attr]
    assert dispatch.reservations.held_by(run, waiting[0]) == []
    assert dispatch.placer._events["placed_at_submit"] == 1
    # A later one, out of line (a full pass is due), joins its kind behind them all: it waits for their reason.
    dispatch.placer._full_pass = True
    late = await child(d.runs, run, "a" + "9" * 20)
    assert (await d.runs.get_action(run, late)).waiting == reason
    assert await d.store.get(placement_key(run, late, 1)) is None
    assert dispatch.placer._events["waiting_noted_at_submit"] == 5
    assert dispatch.placer._events["waiting_noted_by_pass"] == 0
    # Room comes back: the oldest of them is placed.
    placed = await d.runs.get_action(run, first)
    by_pass = dispatch.placer._events["placed_by_pass"]
    await d.runs.report(run, first, ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="east", epoch=session.epoch))
    await d.runs.report(run, first, ActionEvent(phase=Phase.SUCCEEDED, attempt=1))
    assert placed.cluster == "east"
    await settle(lambda: dispatch.placer._events["placed_by_pass"] > by_pass)
    phases = [(await d.runs.get_action(run, n)).phase for n in [*waiting, late]]
    assert phases == [Phase.PLACED] + [Phase.QUEUED] * 4


async def test_a_child_submitted_while_a_full_pass_is_due_and_nothing_waits_is_placed_at_once(
    d: Domain, leader: tuple[Dispatcher, AgentSession]
) -> None:
    dispatch, session = leader
    run = await placed_root(d, dispatch, session)
    by_pass = dispatch.placer._events["placed_by_pass"]  # the root's
    dispatch.placer._full_pass = True  # room came back (another child ended), but nothing is queued to take it
    name = await child(d.runs, run)
    assert dispatch.placer._events["placed_at_submit"] == 1
    action = await d.runs.get_action(run, name)
    assert (action.phase, action.cluster) == (Phase.PLACED, "east")
    await idle()
    assert dispatch.placer._events["placed_by_pass"] == by_pass


async def test_a_child_submitted_while_a_full_pass_is_due_and_others_wait_waits_for_the_pass(
    d: Domain, leader: tuple[Dispatcher, AgentSession]
) -> None:
    dispatch, session = leader
    run = await placed_root(d, dispatch, session)  # the root holds 1 of the 2 cpus
    big = "a" + "b" * 20
    await d.runs.submit_many(
        await d.runs.get_run(run),
        [
            ActionSubmitRequest(
                name=big,
                parent="a0",
                task=TASK,
                overrides=TaskOverrides(resources=ResourcesSpec.model_validate(flyte.Resources(cpu=2).to_dict())),
            )
        ],
    )
    assert (await d.runs.get_action(run, big)).phase is Phase.QUEUED  # waits for 2 cpus
    # Queued, and the pass its arrival asked for has run: the next pass is the full one asked for below.
    placer = dispatch.placer
    await settle(lambda: (run, big) in placer.queue and not placer._fresh and not placer._wake.is_set())
    by_pass = dispatch.placer._events["placed_by_pass"]  # the root's
    dispatch.placer._full_pass = True  # room came back: those waiting go first, oldest first
    name = await child(d.runs, run)  # it fits in the cpu left, but the pass decides the waiting one first
    assert dispatch.placer._events["placed_at_submit"] == 0
    await settle(lambda: dispatch.placer._events["placed_by_pass"] > by_pass)
    assert (await d.runs.get_action(run, name)).phase is Phase.PLACED
    assert (await d.runs.get_action(run, big)).phase is Phase.QUEUED


async def test_a_resubmitted_child_keeps_its_own_reservation_and_reserves_nothing(d: Domain) -> None:
    dispatch = dispatcher(d)
    await dispatch.start()
    session = await dispatch.open_session(cluster("east", cpu=8.0), socket())  # room for more: not why it is refused
    try:
        async with leading(d, dispatch):
            run = await placed_root(d, dispatch, session)
            name = await child(d.runs, run)
            (hold,) = dispatch.reservations.held_by(run, name)
            await settle(lambda: (run, name) in dispatch.index.parents)
            assert await child(d.runs, run, name) == name
            # Placing the name again would have put a hold of its own in the child's place, then given it back.
            assert dispatch.reservations.held_by(run, name) == [hold]
            assert len(dispatch.reservations) == 2  # the root and the child
            assert dispatch.placer._events["placed_at_submit"] == 1
            assert dispatch.placer._made == {}
    finally:
        await dispatch.stop()


async def test_a_follower_places_no_child_at_submission(d: Domain) -> None:
    follower = dispatcher(d)
    await follower.start()
    try:
        await follower.open_session(cluster("east"), socket())
        run = await new_run(d.runs)
        name = await child(d.runs, run)
        assert (await d.runs.get_action(run, name)).phase is Phase.QUEUED
    finally:
        await follower.stop()

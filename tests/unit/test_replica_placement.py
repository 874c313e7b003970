"""Two gateway replicas' dispatchers on one store (`gateway._dispatch`, `gateway._leader`): only the leader places,
onto a cluster whose agent the other replica holds, which sends the assignment when its action watch sees the
placement; a placement decided in a term that has ended is refused by the store (fenced)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import Domain, cluster, dispatcher, domain, idle, leading, new_run, settle, socket

from flyte._wire import ActionEvent, ActionSummary, Assignment, AssignMessage, AttemptKey, Phase, PlacementRecord
from gateway._auth import AttemptRef
from gateway._dispatch import Dispatcher
from gateway._domain_errors import Fenced
from gateway._keys import LEADER_KEY, placement_key
from gateway._sessions import AgentSession
from gateway.store import Compare, Put


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


@pytest.fixture
async def pair(d: Domain) -> AsyncIterator[tuple[Dispatcher, Dispatcher]]:
    leader, follower = dispatcher(d), dispatcher(d)
    await leader.start()
    await follower.start()
    yield leader, follower
    await follower.stop()
    await leader.stop()


async def test_the_leader_places_onto_an_agent_another_replica_holds_which_sends_it_once(
    d: Domain, pair: tuple[Dispatcher, Dispatcher]
) -> None:
    leader, follower = pair
    session = await follower.open_session(cluster("east"), socket())
    await settle(lambda: "east" in leader.agents.live)
    run = await new_run(d.runs)
    await idle()
    assert (await d.runs.get_action(run, "a0")).phase is Phase.QUEUED  # nobody leads: nothing is placed
    async with leading(d, leader) as election:
        assert election.leading
        await settle(lambda: not session.outbox.empty())
        action = await d.runs.get_action(run, "a0")
        assert (action.phase, action.cluster, action.epoch) == (Phase.PLACED, "east", session.epoch)
        message = AssignMessage.model_validate_json(session.outbox.get_nowait())
        assert [(a.run, a.action, a.attempt, a.epoch) for a in message.assignments] == [(run, "a0", 1, session.epoch)]
        assert (run, "proj") == (next(iter(session.runs)), next(iter(session.projects)))
        assert leader.sessions == {}  # the leader holds no agent: it placed through the store
        record = await d.store.get(placement_key(run, "a0", 1))
        assert record is not None
        assert PlacementRecord.model_validate_json(record.value).term == election.term
        # The watch may see the placement again (a re-list): the agent is told once.
        follower._observed(action)
        await settle(lambda: follower._to_assign.empty())
        assert session.outbox.empty()


async def test_the_follower_places_nothing_and_moves_no_lost_work(
    d: Domain, pair: tuple[Dispatcher, Dispatcher]
) -> None:
    leader, follower = pair
    await follower.open_session(cluster("east"), socket())
    async with leading(d, leader):
        run = await new_run(d.runs)
        await settle(lambda: leader.index.where.get((run, "a0")) == "east")
        assert not follower.agents.leading
        assert follower.placer.fence is None
        assert not follower.placer._fresh  # what it observes queued waits in its queue alone, not in a growing list


async def test_a_placement_decided_in_an_ended_term_is_refused(d: Domain) -> None:
    run = await new_run(d.runs)
    await d.store.put(LEADER_KEY, b'{"replica": "new"}')  # another replica leads now
    stale = Compare(LEADER_KEY, 1)
    event = ActionEvent(phase=Phase.PLACED, attempt=1, cluster="east", epoch=1)
    with pytest.raises(Fenced):
        await d.runs.report(run, "a0", event, fence=stale)
    assert (await d.runs.get_action(run, "a0")).phase is Phase.QUEUED
    current = await d.store.get(LEADER_KEY)
    assert current is not None
    placed = await d.runs.report(run, "a0", event, fence=Compare(LEADER_KEY, current.mod_revision))
    assert placed.phase is Phase.PLACED


async def test_a_busy_remote_agents_room_survives_the_leader_reloading_the_sessions(
    d: Domain, pair: tuple[Dispatcher, Dispatcher]
) -> None:
    leader, follower = pair
    session = await follower.open_session(cluster("east"), socket())
    # Busy (its report lags its assignments, so it is no base) with a warm slot: only the warm slot is written.
    await follower.heartbeat(session, {"cpu": 0.5}, {"env@v1": 1}, running=3)
    await settle(lambda: "east" in leader.agents.live and leader.agents.live["east"].warm == {"env@v1": 1})
    await leader.agents.load_live()  # as on taking the lead
    assert leader.reservations.free("east")["cpu"] == 4.0
    # Idle, its report is the base again, wherever the leader is.
    await follower.heartbeat(session, {"cpu": 3.0, "memory": 1.0}, {"env@v1": 1}, running=0)
    await settle(lambda: leader.reservations.free("east").get("cpu") == 3.0)


@pytest.fixture
async def own_agent(d: Domain) -> AsyncIterator[tuple[Dispatcher, AgentSession]]:
    """A dispatcher holding the agent of `east` itself (not leading yet)."""
    leader = dispatcher(d)
    await leader.start()
    yield leader, await leader.open_session(cluster("east"), socket())
    await leader.stop()


async def test_a_leader_holding_the_agent_makes_each_assignment_once_and_sends_a_pass_in_one_message(
    d: Domain, own_agent: tuple[Dispatcher, AgentSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    leader, session = own_agent
    minted: list[str] = []
    mint = leader.placer._workers.mint

    async def counted(ref: AttemptRef) -> str:
        minted.append(ref.action)
        return await mint(ref)

    monkeypatch.setattr(leader.placer._workers, "mint", counted)
    run = await new_run(d.runs)
    async with leading(d, leader):
        await settle(lambda: not session.outbox.empty())
        await idle()
        message = AssignMessage.model_validate_json(session.outbox.get_nowait())
        assert [(a.run, a.action, a.attempt) for a in message.assignments] == [(run, "a0", 1)]
        assert session.outbox.empty()
        assert minted == ["a0"]  # the watch saw the placement while the pass wrote it, and left it to the pass


def held_pass(leader: Dispatcher, monkeypatch: pytest.MonkeyPatch, *, lost: bool) -> asyncio.Event:
    """The leader's pass holds on after writing its placements until the event is set; `lost`: it then takes its
    placement for one it lost (a race, a failure), as if another's write had been the one seen."""
    release = asyncio.Event()
    commit = leader.placer._commit

    async def held(
        assignment: Assignment, record: Put, action: ActionSummary, fence: Compare | None
    ) -> Assignment | None:
        placed = await commit(assignment, record, action, fence)
        await release.wait()
        return None if lost else placed

    monkeypatch.setattr(leader.placer, "_commit", held)
    return release


@pytest.mark.parametrize("lost", [False, True], ids=["the pass sends it", "the pass lost it: the watch sends it"])
async def test_the_watch_leaves_a_placement_to_its_pass_and_the_agent_is_told_once(
    d: Domain, own_agent: tuple[Dispatcher, AgentSession], monkeypatch: pytest.MonkeyPatch, lost: bool
) -> None:
    leader, session = own_agent
    release = held_pass(leader, monkeypatch, lost=lost)
    run = await new_run(d.runs)
    async with leading(d, leader):
        await settle(lambda: AttemptKey(run, "a0", 1) in leader.placer._deferred)
        await idle()
        assert session.outbox.empty()  # seen placed, left to the pass
        release.set()
        await settle(lambda: not session.outbox.empty())
        await idle()
        message = AssignMessage.model_validate_json(session.outbox.get_nowait())
        assert [(a.action, a.attempt, a.epoch) for a in message.assignments] == [("a0", 1, session.epoch)]
        assert session.outbox.empty()
        assert leader.placer._deferred == {}

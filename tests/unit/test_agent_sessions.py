"""Agent sessions and leases (`gateway._sessions`), on the in-memory store and a manual clock: a lease that ends
moves its cluster's work exactly once, a newer session fences the older one's events, and the session watch tells a
store outage (re-list) from a bug (stop, loudly)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dispatcher_parts import (
    TTL,
    Domain,
    cluster,
    dispatcher,
    domain,
    idle,
    leading,
    new_run,
    settle,
    socket,
    stopped,
)

from flyte._retrying import RetryDelay
from flyte._wire import ActionEvent, Phase
from gateway._dispatch import Dispatcher
from gateway._domain_errors import StaleEpoch
from gateway._errors import as_api_error
from gateway._keys import EPOCH_KEY, SESSIONS, action_key
from gateway._reservations import Reservations
from gateway._sessions import AgentSession, AgentSessions
from gateway.store import LeaseNotFound


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


@pytest.fixture
async def dispatch(d: Domain) -> AsyncIterator[Dispatcher]:
    """A started dispatcher: its watches and placement loop run on the domain's clock."""
    dispatch = dispatcher(d)
    await dispatch.start()
    async with leading(d, dispatch):
        yield dispatch
    await dispatch.stop()


async def test_a_lease_ends_exactly_past_its_deadline_and_its_work_is_requeued_once(
    d: Domain, dispatch: Dispatcher
) -> None:
    run = await new_run(d.runs)
    await dispatch.open_session(cluster("east"), socket())
    await settle(lambda: dispatch.index.where.get((run, "a0")) == "east")
    d.clock.advance(TTL - 0.001)
    await idle()
    assert (await d.runs.get_action(run, "a0")).phase is Phase.PLACED
    assert "east" in dispatch.sessions
    # The store sweeps leases at least every 10 ms of its clock: the first sweep past the deadline ends it.
    d.clock.advance(0.011)
    await settle(lambda: (run, "a0") in dispatch.placer.queue)
    action = await d.runs.get_action(run, "a0")
    assert action.phase is Phase.QUEUED
    assert action.attempts == 1
    assert action.system_failures == 1
    assert action.error is not None
    assert action.error.code == "ClusterLost"
    assert "east" not in dispatch.sessions
    d.clock.advance(TTL)
    await idle()
    assert (await d.runs.get_action(run, "a0")).system_failures == 1  # moved once, not once per sweep


async def test_a_heartbeat_keeps_the_lease_and_a_late_one_finds_it_gone(d: Domain, dispatch: Dispatcher) -> None:
    session = await dispatch.open_session(cluster("east"), socket())
    d.clock.advance(TTL - 0.001)
    await dispatch.heartbeat(session, {"cpu": 4.0}, {})
    d.clock.advance(TTL - 0.001)
    assert await d.store.get(SESSIONS + "east") is not None
    d.clock.advance(0.001)
    with pytest.raises(LeaseNotFound):
        await dispatch.heartbeat(session, {"cpu": 4.0}, {})
    await settle(lambda: "east" not in dispatch.sessions)


async def test_a_newer_session_fences_the_older_ones_events(d: Domain, dispatch: Dispatcher) -> None:
    run = await new_run(d.runs)
    first = await dispatch.open_session(cluster("east"), socket())
    await settle(lambda: dispatch.index.where.get((run, "a0")) == "east")
    second = await dispatch.open_session(cluster("east"), socket(), running=[f"{run}/a0/1"])
    assert second.epoch > first.epoch
    assert dispatch.sessions["east"] is second
    # The adopted attempt keeps running; the older epoch may no longer speak for it.
    await d.runs.report(run, "a0", ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="east", epoch=second.epoch))
    stale = ActionEvent(phase=Phase.SUCCEEDED, attempt=1, cluster="east", epoch=first.epoch)
    with pytest.raises(StaleEpoch, match="stale event") as refused:
        await d.runs.report(run, "a0", stale)
    assert as_api_error(refused.value).status == 409


async def test_a_restarted_agent_that_lost_its_work_has_it_moved_at_once(d: Domain, dispatch: Dispatcher) -> None:
    run = await new_run(d.runs)
    await dispatch.open_session(cluster("east"), socket())
    await settle(lambda: dispatch.index.where.get((run, "a0")) == "east")
    await dispatch.open_session(cluster("east"), socket(), running=[])
    action = await d.runs.get_action(run, "a0")
    assert action.phase is Phase.QUEUED
    assert action.error is not None
    assert "restarted without it" in action.error.message


async def test_a_reconnecting_agent_keeps_an_attempt_its_worker_ended_and_drops_an_aborted_one(
    d: Domain, dispatch: Dispatcher
) -> None:
    reported, aborted = await new_run(d.runs), await new_run(d.runs)
    first = await dispatch.open_session(cluster("east"), socket())
    await settle(lambda: all(dispatch.index.where.get((run, "a0")) == "east" for run in (reported, aborted)))
    # The worker reports straight to the gateway and is still exiting (sending its last spans) when its agent's
    # session moves to another replica; the other run is aborted while the agent is away.
    for phase in (Phase.RUNNING, Phase.SUCCEEDED):
        await d.runs.report(reported, "a0", ActionEvent(phase=phase, attempt=1, cluster="east", epoch=first.epoch))
    await d.runs.abort(aborted, "not needed")
    drain(first)
    second = await dispatch.open_session(cluster("east"), socket(), running=[f"{reported}/a0/1", f"{aborted}/a0/1"])
    aborts = [m for m in drain(second) if m.get("type") == "abort"]
    assert [m["keys"] for m in aborts] == [[f"{aborted}/a0/1"]]


def drain(session: AgentSession) -> list[dict[str, Any]]:
    """The messages queued for a session's agent so far."""
    messages = []
    while not session.outbox.empty():
        messages.append(json.loads(session.outbox.get_nowait()))
    return messages


async def test_an_attempt_placed_for_a_session_before_it_was_held_here_is_sent_when_it_is(d: Domain) -> None:
    follower = dispatcher(d)  # another replica leads: this one only holds the agent's session
    await follower.start()
    try:
        run = await new_run(d.runs)
        # The leader places a0 on the agent's next session as soon as its key is written, before this replica holds
        # that session: this replica's action watch finds no session of that epoch and passes it by.
        epoch = int((await d.store.get(EPOCH_KEY)).value) + 1 if await d.store.get(EPOCH_KEY) else 1
        kv = await d.store.get(action_key(run, "a0"))
        assert kv is not None
        placed = {**json.loads(kv.value), "phase": "placed", "attempts": 1, "cluster": "east", "epoch": epoch}
        await d.store.put(kv.key, json.dumps(placed).encode())
        await settle(lambda: follower.index.where.get((run, "a0")) == "east")
        session = await follower.open_session(cluster("east"), socket(), running=[])
        assert session.epoch == epoch
        await settle(lambda: any(json.loads(m).get("type") == "assign" for m in list(session.outbox._messages)))
        (assign,) = [m for m in drain(session) if m.get("type") == "assign"]
        assert [(a["action"], a["epoch"]) for a in assign["assignments"]] == [("a0", epoch)]
        assert (await d.runs.get_action(run, "a0")).phase is Phase.PLACED, "sent, not failed over"
    finally:
        await follower.stop()


async def test_a_session_key_read_again_does_not_take_back_room_given_back_since(
    d: Domain, dispatch: Dispatcher
) -> None:
    run = await new_run(d.runs)
    await dispatch.open_session(cluster("east"), socket())
    await settle(lambda: dispatch.index.where.get((run, "a0")) == "east")
    capacity = cluster("east").capacity["cpu"]
    placed = dispatch.reservations.free("east")["cpu"]
    assert placed < capacity
    # The agent comes back running a0: its report of free room leaves a0's share out.
    back = cluster("east").model_copy(update={"free": {**cluster("east").free, "cpu": placed}})
    session = await dispatch.open_session(back, socket(), running=[f"{run}/a0/1"])
    for phase in (Phase.RUNNING, Phase.SUCCEEDED):
        await d.runs.report(run, "a0", ActionEvent(phase=phase, attempt=1, cluster="east", epoch=session.epoch))
    await settle(lambda: dispatch.reservations.free("east")["cpu"] == capacity)
    # Taking the lead reads every session key again: the one written when the session opened still lists a0.
    await dispatch.agents.load_live()
    assert dispatch.reservations.free("east")["cpu"] == capacity


async def test_a_session_opened_while_the_sessions_are_read_again_stays_live(
    d: Domain, dispatch: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Taking the lead reads every session key; an agent connects while that read is on its way back.
    read, answer = asyncio.Event(), asyncio.Event()
    range_now = d.store.range

    async def late_range(prefix: str, *, limit: int = 0) -> tuple[list[Any], int]:
        result = await range_now(prefix, limit=limit)
        read.set()
        await answer.wait()
        return result

    monkeypatch.setattr(d.store, "range", late_range)
    reading = asyncio.create_task(dispatch.agents.load_live())
    await read.wait()
    monkeypatch.setattr(d.store, "range", range_now)
    await dispatch.open_session(cluster("east"), socket())
    answer.set()
    await reading
    assert "east" in dispatch.agents.live, "a session newer than the read was dropped: nothing would be placed there"


def no_wait() -> RetryDelay:
    return RetryDelay(1.0, 1.0, draw=lambda ceiling: ceiling)


class BrokenInFlight:
    """In-flight bookkeeping with a bug in it."""

    def in_flight(self, cluster: str) -> list[tuple[str, str]]:
        raise AttributeError("a bug")

    def clusters(self) -> list[str]:
        return ["east"]


class NoneInFlight:
    def in_flight(self, cluster: str) -> list[tuple[str, str]]:
        return []

    def clusters(self) -> list[str]:
        return ["east"]


def sessions(d: Domain, in_flight: BrokenInFlight | NoneInFlight) -> AgentSessions:
    """The sessions of the leading replica (only the leader moves a lost cluster's work)."""
    agents = AgentSessions(
        d.store, d.runs, Reservations(), in_flight, _project, lambda: None, clock=d.clock, lease_ttl=TTL, retry=no_wait
    )
    agents.leading = True
    return agents


async def _project(run: str) -> str:
    return "proj"


async def test_the_session_watch_re_lists_after_falling_behind_a_compaction(
    d: Domain, caplog: pytest.LogCaptureFixture
) -> None:
    agents = sessions(d, NoneInFlight())
    await d.store.put("/flyte/other", b"x")
    await d.store.compact(await d.store.revision())
    watch = asyncio.create_task(agents.watch(1))
    try:
        await settle(lambda: d.clock.sleepers == 1)  # waiting out the backoff before the re-list
        assert "the session watch failed (Compacted" in caplog.text
        d.clock.advance(1.0)
        # The re-list finds no session key for east (it had work in flight): its lease ended unseen; moved.
        await settle(lambda: "cluster east lost" in caplog.text)
        assert not watch.done()
    finally:
        await stopped(watch)


async def test_the_session_watch_stops_loudly_on_a_bug(d: Domain, caplog: pytest.LogCaptureFixture) -> None:
    agents = sessions(d, BrokenInFlight())
    lease = await d.store.grant_lease(TTL)
    await d.store.put(SESSIONS + "east", b"1", lease=lease.id)
    watch = asyncio.create_task(agents.watch(await d.store.revision() + 1))
    await settle(lambda: d.clock.sleepers >= 1)  # the store's lease sweeper
    await d.store.revoke(lease.id)
    with caplog.at_level(logging.ERROR), pytest.raises(AttributeError, match="a bug"):
        await asyncio.wait_for(watch, 5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].getMessage() == "the session watch stopped on a bug"
    assert errors[0].exc_info is not None

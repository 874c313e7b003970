"""The placer (`gateway._placer`), one pass at a time, on the in-memory store and a manual clock: it places queued
work on a connected cluster and tells its agent, never on a cordoned one, fails what can never fit, waits out a
backoff by the clock, and its loop retries a store outage but stops loudly on a bug."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from dispatcher_parts import (
    Domain,
    child,
    cluster,
    dispatcher,
    domain,
    leading,
    new_run,
    record_writes,
    settle,
    socket,
    stopped,
)

from flyte._retrying import RetryDelay
from flyte._wire import ActionEvent, AssignMessage, ErrorInfo, Phase
from gateway._app import _healthz
from gateway._dispatch import DISPATCHER, Dispatcher
from gateway._domain_errors import Busy, Invalid
from gateway._keys import placement_key
from gateway._placer import Placer, RunScopes, temporary
from gateway.store import StoreUnavailable


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


async def placed(dispatch: Dispatcher) -> float | None:
    """Observe what the store holds now, then run one pass."""
    await dispatch.index.load()
    return await dispatch.placer.place_some()


async def test_a_queued_action_is_placed_and_its_agent_told(d: Domain) -> None:
    dispatch = dispatcher(d)
    session = await dispatch.open_session(cluster("east"), socket())
    run = await new_run(d.runs)
    await placed(dispatch)
    action = await d.runs.get_action(run, "a0")
    assert (action.phase, action.cluster, action.epoch) == (Phase.PLACED, "east", session.epoch)
    message = AssignMessage.model_validate_json(session.outbox.get_nowait())
    assert [(a.run, a.action, a.attempt) for a in message.assignments] == [(run, "a0", 1)]
    assert session.free["cpu"] == 3.0  # its room is held at once, not at the agent's next heartbeat
    assert (run, "proj") == (next(iter(session.runs)), next(iter(session.projects)))


async def test_placements_are_made_durable_once_before_their_agent_hears_of_them(
    d: Domain, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatch = dispatcher(d)
    session = await dispatch.open_session(cluster("east"), socket())
    await new_run(d.runs)
    await placed(dispatch)  # the first placement also makes the key worker tokens are signed with (durably)
    session.outbox.get_nowait()
    runs = [await new_run(d.runs) for _ in range(4)]
    writes = record_writes(d, monkeypatch, lambda: f"sync, {len(session.outbox._messages)} messages sent")
    await placed(dispatch)
    # The three placements and the fourth run's waiting reason share one commit, without an fsync; one sync follows.
    assert writes == ["not durable", "sync, 0 messages sent"]
    message = AssignMessage.model_validate_json(session.outbox.get_nowait())
    assert len(message.assignments) == 3
    assert {a.run for a in message.assignments} < set(runs)
    waiting = [await d.runs.get_action(run, "a0") for run in runs]
    assert [a.phase for a in waiting].count(Phase.QUEUED) == 1


async def test_a_cordoned_cluster_gets_no_placement(d: Domain) -> None:
    dispatch = dispatcher(d)
    east = await dispatch.open_session(cluster("east"), socket())
    await dispatch.open_session(cluster("west"), socket())
    await dispatch.cordon("east", "maintenance", drain=False)
    first = await new_run(d.runs)
    await placed(dispatch)
    assert (await d.runs.get_action(first, "a0")).cluster == "west"
    await dispatch.cordon("west", "maintenance", drain=False)
    second = await new_run(d.runs)
    await placed(dispatch)
    waiting = await d.runs.get_action(second, "a0")
    assert waiting.phase is Phase.QUEUED
    assert waiting.waiting is not None
    assert "cordoned" in waiting.waiting
    assert east.outbox.empty()


async def test_what_can_never_fit_fails_at_once(d: Domain) -> None:
    dispatch = dispatcher(d)
    await dispatch.open_session(cluster("tiny", cpu=0.5), socket())
    run = await new_run(d.runs)
    await placed(dispatch)
    action = await d.runs.get_action(run, "a0")
    assert action.phase is Phase.FAILED
    assert action.error is not None
    assert action.error.code == "NeverFits"


async def test_an_action_backing_off_is_placed_once_the_clock_passes_its_due_time(d: Domain) -> None:
    dispatch = dispatcher(d)
    await dispatch.open_session(cluster("east"), socket())
    run = await new_run(d.runs)
    await placed(dispatch)
    lost = ErrorInfo(error_type="RuntimeSystemError", code="ClusterLost", kind="system", message="gone")
    await d.runs.report(run, "a0", ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="east", epoch=1))
    await d.runs.report(run, "a0", ActionEvent(phase=Phase.FAILED, attempt=1, cluster="east", epoch=1, error=lost))
    due = await placed(dispatch)
    assert due is not None
    assert (await d.runs.get_action(run, "a0")).phase is Phase.QUEUED
    d.clock.advance(due)
    dispatch.placer.rescan()
    await placed(dispatch)
    action = await d.runs.get_action(run, "a0")
    assert (action.phase, action.attempts) == (Phase.PLACED, 2)


def test_a_pass_failing_on_the_store_is_temporary_and_anything_else_a_bug() -> None:
    assert temporary(StoreUnavailable("down"))
    assert temporary(ConnectionResetError())
    assert temporary(Busy("try again"))
    assert not temporary(Invalid("no"))
    assert not temporary(AttributeError("a bug"))


class BrokenScopes(RunScopes):
    async def get(self, run: str) -> tuple[str, str, float | None]:
        raise AttributeError("a bug")


def loop_placer(dispatch: Dispatcher, d: Domain, scopes: RunScopes) -> Placer:
    return Placer(
        d.runs,
        dispatch.placer._workers,
        scopes,
        dispatch.agents,
        dispatch.admin,
        dispatch.reservations,
        {},
        {},
        clock=d.clock,
        retry=lambda: RetryDelay(0.5, 5.0, draw=lambda ceiling: ceiling),
    )


async def test_the_loop_stops_loudly_on_a_bug(d: Domain, caplog: pytest.LogCaptureFixture) -> None:
    dispatch = dispatcher(d)
    await dispatch.open_session(cluster("east"), socket())
    placer = loop_placer(dispatch, d, BrokenScopes(d.runs))
    run = await new_run(d.runs)
    placer.observe(await d.runs.get_action(run, "a0"))
    with caplog.at_level(logging.ERROR), pytest.raises(AttributeError, match="a bug"):
        await asyncio.wait_for(placer.run(), 5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].getMessage() == "the placement loop stopped on a bug"
    assert errors[0].exc_info is not None


async def test_the_loop_retries_a_store_outage_with_backoff(d: Domain, caplog: pytest.LogCaptureFixture) -> None:
    dispatch = dispatcher(d)
    await dispatch.open_session(cluster("east"), socket())
    placer = loop_placer(dispatch, d, RunScopes(d.runs))
    run = await new_run(d.runs)
    placer.observe(await d.runs.get_action(run, "a0"))
    await d.store.close()
    loop = asyncio.create_task(placer.run())
    try:
        for delay, passes in ((0.5, 1), (1.0, 2), (2.0, 3)):
            await settle(lambda: caplog.text.count("a placement pass failed (StoreUnavailable") == passes)  # noqa: B023
            assert f"again in {delay:.1f}s" in caplog.text
            await settle(lambda: d.clock.sleepers == 1)
            d.clock.advance(delay)
        assert not loop.done()
    finally:
        await stopped(loop)


async def test_a_dispatcher_loop_that_stops_on_a_bug_marks_the_dispatcher_failed(
    d: Domain, caplog: pytest.LogCaptureFixture
) -> None:
    dispatch = dispatcher(d)
    dispatch.placer._scopes = BrokenScopes(d.runs)  # a bug in the placement pass
    await dispatch.start()
    try:
        await dispatch.open_session(cluster("east"), socket())
        await new_run(d.runs)
        async with leading(d, dispatch):
            await settle(lambda: dispatch.failure is not None)
        assert isinstance(dispatch.failure, AttributeError)
        assert "the dispatcher's placement loop stopped on a bug" in caplog.text
        app = web.Application()
        app[DISPATCHER] = dispatch
        health = await _healthz(make_mocked_request("GET", "/healthz", app=app))
        assert health.status == 500
        assert isinstance(health, web.Response)
        assert health.text is not None
        assert "the dispatcher stopped: AttributeError: a bug" in health.text
    finally:
        await dispatch.stop()


async def test_after_room_frees_the_oldest_waiting_sibling_is_placed_and_the_others_keep_their_reason(
    d: Domain,
) -> None:
    dispatch = dispatcher(d)
    session = await dispatch.open_session(cluster("east", cpu=4.0), socket())
    run = await new_run(d.runs)
    await placed(dispatch)  # the parent holds 1 cpu: room for 3 children
    names = [await child(d.runs, run, f"a{i:020d}") for i in range(6)]
    await placed(dispatch)
    phases = [(await d.runs.get_action(run, n)).phase for n in names]
    assert phases == [Phase.PLACED] * 3 + [Phase.QUEUED] * 3
    reasons = {(await d.runs.get_action(run, n)).waiting for n in names[3:]}
    assert len(reasons) == 1
    assert None not in reasons

    await d.runs.report(run, names[1], ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="east", epoch=session.epoch))
    await d.runs.report(run, names[1], ActionEvent(phase=Phase.SUCCEEDED, attempt=1))
    await placed(dispatch)  # the room it held is back: the pass looks at the whole queue again
    phases = [(await d.runs.get_action(run, n)).phase for n in names]
    assert phases == [Phase.PLACED, Phase.SUCCEEDED, Phase.PLACED, Phase.PLACED, Phase.QUEUED, Phase.QUEUED]
    assert {(await d.runs.get_action(run, n)).waiting for n in names[4:]} == reasons


async def test_like_siblings_waiting_in_one_pass_share_the_first_ones_decision_record(d: Domain) -> None:
    dispatch = dispatcher(d)
    await dispatch.open_session(cluster("east", cpu=2.0), socket())
    run = await new_run(d.runs)
    await placed(dispatch)  # the parent holds 1 cpu: room for 1 child
    names = [await child(d.runs, run, f"a{i:020d}") for i in range(5)]
    await placed(dispatch)
    phases = [(await d.runs.get_action(run, n)).phase for n in names]
    assert phases == [Phase.PLACED] + [Phase.QUEUED] * 4
    # Every waiting sibling says why; the decision, the same for all, is recorded once, for the first.
    reasons = [(await d.runs.get_action(run, n)).waiting for n in names[1:]]
    assert reasons[0] is not None
    assert reasons == [reasons[0]] * 4
    recorded = [await d.store.get(placement_key(run, n, 1)) is not None for n in names]
    assert recorded == [True, True, False, False, False]

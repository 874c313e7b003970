"""The action index (`gateway._action_index`), on the in-memory store and a manual clock: it follows where each
action is, tells a waiting parent of its children's changes, re-lists after a store failure it outlives, and stops
loudly on a bug instead of re-listing forever."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import Domain, child, domain, new_run, settle, stopped

from flyte._retrying import RetryDelay
from flyte._wire import ActionEvent, ActionSummary, ErrorInfo, GatewayReply, Phase
from gateway._action_index import ActionIndex


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


def retry() -> RetryDelay:
    return RetryDelay(1.0, 1.0, draw=lambda ceiling: ceiling)


def index(d: Domain, seen: list[ActionSummary] | None = None) -> ActionIndex:
    return ActionIndex(
        d.store, d.runs.list_actions, (seen if seen is not None else []).append, clock=d.clock, retry=retry
    )


class Watcher:
    """A worker's socket, as the index sees it: what it was sent."""

    def __init__(self) -> None:
        self.replies: list[GatewayReply] = []

    async def send(self, reply: GatewayReply) -> None:
        self.replies.append(reply)


async def watched_run(d: Domain) -> tuple[str, str, ActionIndex, asyncio.Task[None]]:
    """A run with one child, and an index loaded and watching (stop the task with `stopped`)."""
    run = await new_run(d.runs)
    name = await child(d.runs, run)
    actions = index(d)
    await actions.load()
    return run, name, actions, asyncio.create_task(actions.watch(actions.revision + 1))


async def test_a_childs_end_notifies_the_waiting_parent(d: Domain) -> None:
    run, name, actions, watch = await watched_run(d)
    watcher = Watcher()
    send, replies = watcher.send, watcher.replies
    try:
        await actions.watch_children(run, "a0", send, request_id=7)
        assert replies[0].id == 7
        assert [a.name for a in replies[0].actions or []] == [name]
        for phase in (Phase.PLACED, Phase.RUNNING, Phase.SUCCEEDED):
            await d.runs.report(run, name, ActionEvent(phase=phase, attempt=1, cluster="east"))

        def ended() -> bool:
            return any(a.phase is Phase.SUCCEEDED for r in replies[1:] for a in r.actions or [])

        await settle(ended)
        assert all(r.parent == "a0" for r in replies)
        actions.unwatch(send)
        count = len(replies)
        await d.runs.report(run, "a0", ActionEvent(phase=Phase.PLACED, attempt=1, cluster="east"))
        await settle(lambda: actions.where.get((run, "a0")) == "east")
        assert len(replies) == count  # unwatched: told nothing more
    finally:
        await stopped(watch)


async def test_a_parent_that_ended_is_watched_no_more(d: Domain) -> None:
    """A pool worker's socket outlives the attempts it carries: a parent's watch ends with the parent."""
    run, name, actions, watch = await watched_run(d)
    watcher = Watcher()
    replies = watcher.replies
    try:
        await actions.watch_children(run, "a0", watcher.send)
        for phase in (Phase.PLACED, Phase.RUNNING, Phase.SUCCEEDED):
            await d.runs.report(run, "a0", ActionEvent(phase=phase, attempt=1, cluster="east"))
        parent_ended = await d.store.revision()
        await settle(lambda: actions.revision >= parent_ended)
        count = len(replies)
        for phase in (Phase.PLACED, Phase.RUNNING, Phase.SUCCEEDED):
            await d.runs.report(run, name, ActionEvent(phase=phase, attempt=1, cluster="east"))
        child_ended = await d.store.revision()
        await settle(lambda: actions.revision >= child_ended)
        assert len(replies) == count, "a child that ended after its parent was sent to the parent's old watcher"
    finally:
        await stopped(watch)


async def test_it_follows_where_actions_run_and_what_is_in_flight(d: Domain) -> None:
    run = await new_run(d.runs)
    name = await child(d.runs, run)
    seen: list[ActionSummary] = []
    actions = index(d, seen)
    await actions.load()
    assert actions.parents == {(run, name): "a0"}
    assert {(a.run, a.name) for a in seen} == {(run, "a0"), (run, name)}
    await d.runs.report(run, name, ActionEvent(phase=Phase.PLACED, attempt=1, cluster="east"))
    await actions.load()
    assert actions.where == {(run, name): "east"}
    assert actions.in_flight("east") == [(run, name)]
    error = ErrorInfo(error_type="ValueError", code="ValueError", kind="user", message="no")
    await d.runs.report(run, name, ActionEvent(phase=Phase.FAILED, attempt=1, cluster="east", error=error))
    await actions.load()
    assert actions.where == {}
    assert actions.in_flight("east") == []
    assert actions.parents == {}  # ended: its ancestors no longer matter to it
    assert actions.clusters() == ["east"]


async def test_a_watch_that_fell_behind_a_compaction_re_lists_after_a_backoff(
    d: Domain, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[ActionSummary] = []
    actions = index(d, seen)
    run = await new_run(d.runs)
    await d.store.compact(await d.store.revision())
    watch = asyncio.create_task(actions.watch(1))
    try:
        await settle(lambda: d.clock.sleepers == 1)
        assert "the action watch failed (Compacted" in caplog.text
        assert seen == []  # not before the backoff is over
        d.clock.advance(1.0)
        await settle(lambda: any(a.run == run for a in seen))
        # ... and it watches again from the re-listed revision.
        name = await child(d.runs, run)
        await settle(lambda: any(a.name == name for a in seen))
        assert not watch.done()
    finally:
        await stopped(watch)


async def test_a_store_that_stays_down_is_retried_not_given_up(d: Domain, caplog: pytest.LogCaptureFixture) -> None:
    actions = index(d)
    await d.store.close()
    watch = asyncio.create_task(actions.watch(1))
    try:
        for retries in (1, 2, 3):
            await settle(lambda: d.clock.sleepers == 1)
            d.clock.advance(1.0)
            await settle(lambda: caplog.text.count("re-listing actions failed") == retries)  # noqa: B023
        assert not watch.done()
    finally:
        await stopped(watch)


async def test_a_bug_stops_the_watch_loudly(d: Domain, caplog: pytest.LogCaptureFixture) -> None:
    def broken(action: ActionSummary) -> None:
        raise KeyError("a bug in a part the index feeds")

    actions = ActionIndex(d.store, d.runs.list_actions, broken, clock=d.clock, retry=retry)
    watch = asyncio.create_task(actions.watch(1))
    await new_run(d.runs)
    with caplog.at_level(logging.ERROR), pytest.raises(KeyError, match="a bug"):
        await asyncio.wait_for(watch, 5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].getMessage() == "the action watch stopped on a bug"
    assert errors[0].exc_info is not None
    assert d.clock.sleepers <= 1  # no re-list waiting (only the store's lease sweeper, if any)


async def test_a_bug_met_while_re_listing_stops_the_watch_loudly_too(
    d: Domain, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(action: ActionSummary) -> None:
        raise TypeError("a bug met on the re-list")

    actions = ActionIndex(d.store, d.runs.list_actions, broken, clock=d.clock, retry=retry)
    await new_run(d.runs)
    await d.store.compact(await d.store.revision())
    watch = asyncio.create_task(actions.watch(1))
    await settle(lambda: d.clock.sleepers == 1)
    d.clock.advance(1.0)
    with caplog.at_level(logging.ERROR), pytest.raises(TypeError, match="re-list"):
        await asyncio.wait_for(watch, 5)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "the action watch stopped on a bug"
    ]

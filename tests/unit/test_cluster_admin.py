"""Cluster administration (`gateway._cluster_admin`), on the in-memory store and a manual clock: a policy is checked,
kept and read again after a restart; a drain moves placed work off its cluster and tells the agent to drop it; the
views show what the gateway knows of each cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import Domain, cluster, dispatcher, domain, new_run, socket

from flyte._wire import AbortMessage, Phase
from gateway._dispatch import Dispatcher

POLICY = "version: v7\nweights:\n  cost: 2\ntiers:\n  - name: east\n    regions: [r1]\n"


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    yield d
    await d.close()


async def test_a_policy_is_kept_and_read_again_at_start(d: Domain) -> None:
    dispatch = dispatcher(d)
    d.clock.advance(42.0)
    document = await dispatch.apply_policy(POLICY)
    assert (document.version, document.applied_at) == ("v7", d.clock.time())
    again = dispatcher(d)
    await again.admin.load()
    assert again.policy_document == document
    assert again.admin.policy.version == "v7"


async def test_a_bad_policy_is_refused_and_changes_nothing(d: Domain) -> None:
    dispatch = dispatcher(d)
    with pytest.raises(ValueError, match=r"line 3: field weights\.cost"):
        await dispatch.apply_policy("version: v1\nweights:\n  cost: -3\n")
    assert dispatch.policy_document.version == "default"
    assert await d.store.get("/flyte/policy") is None


async def test_a_drain_moves_placed_work_off_and_tells_the_agent(d: Domain) -> None:
    dispatch = dispatcher(d)
    east = await dispatch.open_session(cluster("east"), socket())
    run = await new_run(d.runs)
    await dispatch.index.load()
    await dispatch.placer.place_some()
    await dispatch.index.load()  # as the watch would: the action is in flight on east
    east.outbox.get_nowait()  # the assignment
    await dispatch.cordon("east", "disk failing", drain=True)
    action = await d.runs.get_action(run, "a0")
    assert (action.phase, action.cluster) == (Phase.QUEUED, None)
    assert action.waiting == "moved off east, which is draining: disk failing"
    assert AbortMessage.model_validate_json(east.outbox.get_nowait()).keys == [f"{run}/a0/1"]
    view = dispatch.cluster_view(east.record)
    assert (view.connected, view.cordoned, view.draining, view.cordon_reason) == (True, True, True, "disk failing")
    await dispatch.uncordon("east")
    view = dispatch.cluster_view(east.record)
    assert (view.cordoned, view.draining) == (False, False)
    again = dispatcher(d)
    await again.admin.load()
    assert again.admin.cordons == {}


async def test_rooms_show_every_known_cluster(d: Domain) -> None:
    dispatch: Dispatcher = dispatcher(d)
    await dispatch.open_session(cluster("east"), socket())
    await dispatch.agents.load()
    dispatch.close_session(dispatch.sessions["east"])
    rooms = dispatch.rooms()
    assert [(r.cluster, r.free) for r in rooms] == [("east", None)]  # known, not connected

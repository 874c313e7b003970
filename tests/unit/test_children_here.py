"""Children given to the pool worker that submitted them (`ChildrenHere`, `GatewayReply.here`): a child placed at its
submission in the submitter's own pool, on the submitter's cluster, goes back to it, as many as it has room for,
and its agent is sent its copy marked held; a child of another pool, or one past the room, goes to the agent alone.
On the in-memory store, with the dispatcher's real parts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import (
    DOMAIN,
    PROJECT,
    Domain,
    domain,
    leader_holding_east,
    settle,
)

import flyte
from flyte._wire import (
    ActionSubmitRequest,
    Assignment,
    AssignMessage,
    AttemptKey,
    DeployRequest,
    ReusableSpec,
    RunCreateRequest,
    TaskSpec,
    pool_key,
)
from gateway._dispatch import Dispatcher
from gateway._runs import ChildrenHere
from gateway._sessions import AgentSession


def pooled(env: str) -> TaskSpec:
    return TaskSpec(
        name=f"{env}.work",
        short_name="work",
        signature="() -> None",
        interface_digest="0" * 16,
        resources=flyte.Resources(cpu=0.1, memory="1Mi").to_dict(),
        reusable=ReusableSpec(min_replicas=1, max_replicas=1, concurrency=8),
    )


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    for env in ("pool", "elsewhere"):
        await d.runs.registry.deploy(
            DeployRequest(
                project=PROJECT, domain=DOMAIN, env=env, version="v1", bundle_digest="b" * 64, tasks=[pooled(env)]
            )
        )
    yield d
    await d.close()


@pytest.fixture
async def leader(d: Domain) -> AsyncIterator[tuple[Dispatcher, AgentSession]]:
    async with leader_holding_east(d, cpu=8.0) as held:
        yield held


async def assigned(session: AgentSession) -> AssignMessage:
    """What the agent was sent next (the root's assignment, or a batch of children's)."""
    await settle(lambda: not session.outbox.empty())
    return AssignMessage.model_validate_json(session.outbox.get_nowait())


async def test_children_of_the_submitters_pool_go_back_to_it_as_far_as_its_room_and_the_agent_holds_them(
    d: Domain, leader: tuple[Dispatcher, AgentSession]
) -> None:
    dispatch, session = leader
    created, _ = await d.runs.create_run(RunCreateRequest(project=PROJECT, domain=DOMAIN, task="pool.work"))
    run = created.name
    (root,) = (await assigned(session)).assignments
    assert root.cluster == "east"
    await settle(lambda: not dispatch.placer._fresh and not dispatch.placer._full_pass)
    names = [f"a{c * 20}" for c in "bcde"]
    tasks = ["pool.work", "pool.work", "pool.work", "elsewhere.work"]
    requests = [ActionSubmitRequest(name=n, parent="a0", task=t) for n, t in zip(names, tasks, strict=True)]
    sent: list[list[Assignment]] = []
    here = ChildrenHere("east", pool_key(PROJECT, DOMAIN, "pool", "v1"), room=2, send=sent.append)
    await d.runs.submit_many(await d.runs.get_run(run), requests, here=here)
    # Every child was placed at its submission; the submitter had room for two of its own pool's.
    await settle(lambda: sum(map(len, sent)) == 2)
    given = [a for batch in sent for a in batch]
    assert len(given) == here.given == 2
    assert {a.action for a in given} < set(names[:3])
    assert here.room == 0
    message = await assigned(session)
    assert sorted(a.action for a in message.assignments) == sorted(names)
    assert sorted(message.held) == sorted(str(AttemptKey.of(a)) for a in given)
    assert not session.held  # each held key is said once, with its assignment


async def test_nothing_is_given_to_a_worker_on_another_cluster(
    d: Domain, leader: tuple[Dispatcher, AgentSession]
) -> None:
    dispatch, session = leader
    created, _ = await d.runs.create_run(RunCreateRequest(project=PROJECT, domain=DOMAIN, task="pool.work"))
    await assigned(session)
    await settle(lambda: not dispatch.placer._fresh and not dispatch.placer._full_pass)
    sent: list[list[Assignment]] = []
    here = ChildrenHere("west", pool_key(PROJECT, DOMAIN, "pool", "v1"), room=4, send=sent.append)
    request = ActionSubmitRequest(name="a" + "b" * 20, parent="a0", task="pool.work")
    await d.runs.submit_many(await d.runs.get_run(created.name), [request], here=here)
    assert (here.given, here.room) == (0, 4)
    message = await assigned(session)
    assert [a.action for a in message.assignments] == [request.name]
    assert message.held == []
    assert sent == []

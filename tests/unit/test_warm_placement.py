"""Placement's warm scorer counts free warm slots per pool (`project/domain/env@version`): a project's own warm
pool draws its actions, another project's pool of the same environment and version does not (its workers run that
project's code, settings and secrets, so they are no warm start for anyone else)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dispatcher_parts import DOMAIN, PROJECT, Domain, cluster, dispatcher, domain, leading, settle, socket

import flyte
from flyte._wire import DeployRequest, ReusableSpec, RunCreateRequest, TaskSpec, pool_key
from gateway._dispatch import Dispatcher

OTHER = "other"


@pytest.fixture
async def d() -> AsyncIterator[Domain]:
    d = await domain()
    spec = TaskSpec(
        name="pooled.work",
        short_name="work",
        signature="() -> None",
        interface_digest="0" * 16,
        resources=flyte.Resources(cpu=1, memory="1Mi").to_dict(),
        reusable=ReusableSpec(min_replicas=1, max_replicas=1, concurrency=4),
    )
    for project in (PROJECT, OTHER):
        await d.runs.registry.deploy(
            DeployRequest(
                project=project, domain=DOMAIN, env="pooled", version="v1", bundle_digest="b" * 64, tasks=[spec]
            )
        )
    yield d
    await d.close()


async def _placed_on(d: Domain, leader: Dispatcher, warm_on_east: dict[str, int]) -> str:
    """Where a run of `PROJECT`'s pooled task goes, between `east` (less free room, with `warm_on_east`) and `west`."""
    east = await leader.open_session(cluster("east", cpu=4.0), socket())
    west = await leader.open_session(cluster("west", cpu=4.0), socket())
    await leader.heartbeat(east, {"cpu": 1.0, "memory": float(2**34)}, warm_on_east)
    await leader.heartbeat(west, {"cpu": 4.0, "memory": float(2**34)}, {})
    created, _ = await d.runs.create_run(RunCreateRequest(project=PROJECT, domain=DOMAIN, task="pooled.work"))
    run = created.name
    async with leading(d, leader):
        await settle(lambda: leader.index.where.get((run, "a0")) is not None)
    return leader.index.where[(run, "a0")]


@pytest.mark.parametrize(
    ("warm_project", "placed_on"),
    [(PROJECT, "east"), (OTHER, "west")],
    ids=["the project's own pool draws its action", "another project's pool is no warm start"],
)
async def test_warm_slots_count_for_their_own_pool_only(d: Domain, warm_project: str, placed_on: str) -> None:
    leader = dispatcher(d)
    await leader.start()
    try:
        assert await _placed_on(d, leader, {pool_key(warm_project, DOMAIN, "pooled", "v1"): 2}) == placed_on
    finally:
        await leader.stop()

"""A worker's link given several gateway replicas (FLYTE_ENDPOINT as an agent sets it: its own replica first, then
the others) moves past one that does not answer, for its connection and for its HTTP calls alike."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from gateway_api import Api, new_run
from processes import GatewayProcess, refused_endpoint

from flyte._wire import ConditionCreate
from flyte._worker_link import WorkerLink

pytestmark = pytest.mark.timeout(60)


async def test_a_worker_link_moves_past_a_replica_that_does_not_answer(tmp_path: Path) -> None:
    gateway = GatewayProcess(f"sqlite:{tmp_path / 'state.db'}", tmp_path / "home").start()
    link: WorkerLink | None = None
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as session:
            run = (await new_run(Api(gateway.endpoint, session)))["name"]
        # The admin token stands in for the worker's: which replica the link reaches is what is tested.
        link = WorkerLink(f"{refused_endpoint()},{gateway.endpoint}", gateway.token, run)
        await link.connect()
        assert link.endpoint == gateway.endpoint
        created = await link.create_condition("a0", "approval", ConditionCreate(data_type="bool"))
        assert created.state == "waiting"
    finally:
        if link is not None:
            await link.close()
        gateway.stop()

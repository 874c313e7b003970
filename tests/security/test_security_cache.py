"""Finding 2: cache poisoning across projects. The cache key had no project or domain, so a project-beta task with
the same name, interface and cache version wrote the answer project alpha's cached call then read. Now a cache entry
belongs to a project and domain, and only the attempt that produced a result (its worker token) writes it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import pytest
from tenants import Tenants, json_value
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for

pytestmark = pytest.mark.timeout(180)

HONEST = """
import asyncio
import os

import flyte

env = flyte.TaskEnvironment("sec_cache")


@env.task(cache=flyte.Cache("auto", version_override="v1"))
async def double(x: int) -> int:
    return x * 2


@env.task
async def main(x: int) -> int:
    return await double(x)


@env.task(cache=flyte.Cache("auto", version_override="v1"))
async def gated(x: int, gate: str) -> int:
    while not os.path.exists(gate):
        await asyncio.sleep(0.05)
    return x * 2
"""
# Beta's copy answers 2000 under the same task name, interface and cache version.
POISON = HONEST.replace("return x * 2", "return 2000")


def _child(run: str) -> flyte.remote.Action:
    (child,) = [a for a in call_sync(client_for().list_actions(run)) if a.parent == "a0"]
    return child


def test_a_poisoned_result_in_beta_never_answers_alpha(tenants: Tenants) -> None:
    honest = tenants.load("sec_cache_honest", HONEST)
    poison = tenants.load("sec_cache_poison", POISON)

    tenants.as_admin("alpha")
    first = flyte.run(honest.main, x=7)
    assert first.outputs() == (14,)

    tenants.as_admin("beta")
    poisoned = flyte.with_runcontext(overwrite_cache=True).run(poison.main, x=7)
    assert poisoned.outputs() == (2000,), "beta's own run is beta's business"
    again = flyte.run(poison.main, x=7)
    assert again.outputs() == (2000,)
    assert _child(again.name).cached, "beta's cache answers beta"

    tenants.as_admin("alpha")
    second = flyte.run(honest.main, x=7)
    assert second.outputs() == (14,), "alpha's cached answer is unchanged"
    assert _child(second.name).cached


def test_a_result_a_client_reports_is_never_cached(tenants: Tenants, tmp_path: Path) -> None:
    """A `run` token speaking the worker protocol ends (at most) its own action; the cache keeps only what an
    attempt computed, so the next identical call answers 16, never the client's 9999."""
    tenants.deploy("alpha", tenants.load("sec_cache_gated", HONEST))
    gate = tmp_path / "gate"
    inputs = {"x": json_value("8"), "gate": json_value(json.dumps(str(gate)))}

    def create(name: str) -> str:
        body = {"project": "alpha", "domain": "development", "task": "sec_cache.gated", "name": name, "inputs": inputs}
        status, answer = tenants.call("POST", "/api/v1/runs", body)
        assert status == 201, answer
        return str(answer["name"])

    def phase(name: str) -> str:
        return str(tenants.call("GET", f"/api/v1/runs/{name}/actions/a0")[1]["phase"])

    forged = create(f"forged-{uuid.uuid4().hex[:8]}")
    assert_eventually(lambda: phase(forged) == "running", timeout=60)
    report = {
        "type": "report",
        "id": 1,
        "run": forged,
        "action": "a0",
        "event": {"phase": "succeeded", "attempt": 1, "output": json_value("9999")},
    }
    asyncio.run(_speak_as_worker(tenants, report))
    gate.touch()
    assert_eventually(lambda: phase(forged) in ("succeeded", "failed"), timeout=60)

    honest = create(f"honest-{uuid.uuid4().hex[:8]}")
    assert_eventually(lambda: phase(honest) == "succeeded", timeout=60)
    status, run = tenants.call("GET", f"/api/v1/runs/{honest}")
    assert status == 200
    assert run["output"]["json_text"] == "16", "the client's 9999 was never cached"


async def _speak_as_worker(tenants: Tenants, message: dict[str, object]) -> None:
    headers = {"Authorization": f"Bearer {tenants.tokens['alpha']}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.ws_connect(tenants.fed.endpoint + "/api/v1/workers/connect") as ws,
    ):
        await ws.send_str(json.dumps(message))
        await ws.receive_json(timeout=30)

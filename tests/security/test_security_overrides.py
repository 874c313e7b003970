"""Finding 3: one bad override stalled placement for everyone. A child submitted with
`overrides.resources = {"cpu": {"request": "abc"}}` was accepted and made every placement pass fail. Now overrides are
validated at submission with the models deployment uses (400 naming the field), and an action a placement pass
cannot judge anyway fails alone with `NonRecoverableError` while every other action is placed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tenants import Tenants, json_value
from waiting import assert_eventually

from flyte._wire import ActionSummary, Phase
from gateway._keys import action_key
from gateway.store import open_store

pytestmark = pytest.mark.timeout(120)


BAD_OVERRIDES = [
    ({"resources": {"cpu": {"request": "abc"}}}, "cpu.request"),
    ({"resources": {"memory": {"request": [1], "limit": [1]}}}, "memory.request"),
    ({"resources": {"memory": {"request": 10**30, "limit": 10**30}}}, "memory.request"),
    ({"resources": {"cpu": {"request": 5000.0, "limit": 5000.0}}}, "cpu.request"),
    ({"resources": {"gpu": {"count": 10**6}}}, "gpu.count"),
    ({"timeout_seconds": 1e308}, "timeout_seconds"),
    ({"timeout_seconds": 8 * 24 * 3600}, "timeout_seconds"),
    ({"reusable": {"min_replicas": 1, "max_replicas": 1, "concurrency": "x"}}, "concurrency"),
    ({"placement": {"clusters": "us-east", "spread": "yes"}}, "placement"),
]


def _create(tenants: Tenants, task: str, inputs: dict[str, Any]) -> str:
    name = f"{task.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
    body = {"project": "alpha", "domain": "development", "task": f"sec_tasks.{task}", "name": name}
    body["inputs"] = inputs
    status, answer = tenants.call("POST", "/api/v1/runs", body)
    assert status == 201, answer
    return str(answer["name"])


def _action(tenants: Tenants, run: str, action: str = "a0") -> dict[str, Any]:
    status, answer = tenants.call("GET", f"/api/v1/runs/{run}/actions/{action}")
    assert status == 200, answer
    return dict(answer)


@pytest.mark.parametrize(("overrides", "field"), BAD_OVERRIDES, ids=[f for _, f in BAD_OVERRIDES])
def test_a_bad_override_is_refused_at_submission(
    deployed: Tenants, tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    release = tmp_path / "release"
    run = _create(deployed, "hold", {"path": json_value(json.dumps(str(release)))})
    child = {
        "name": "a" + uuid.uuid4().hex[:20],
        "parent": "a0",
        "task": "sec_tasks.add_one",
        "inputs": {"x": json_value("1")},
        "overrides": overrides,
    }
    status, answer = deployed.call("POST", f"/api/v1/runs/{run}/actions", child)
    assert status == 400, answer
    assert "overrides" in answer["message"]
    assert field in answer["message"]
    assert deployed.call("GET", f"/api/v1/runs/{run}/actions/{child['name']}")[0] == 404, "nothing was written"
    release.touch()
    assert_eventually(lambda: _action(deployed, run)["phase"] == "succeeded", timeout=60)


def test_an_action_placement_cannot_judge_fails_alone(deployed: Tenants, tmp_path: Path) -> None:
    """An action written before these checks (here: straight into the store, naming a task that is not deployed)
    fails with NonRecoverableError; a run created after it is still placed and succeeds."""
    release = tmp_path / "release"
    holder = _create(deployed, "hold", {"path": json_value(json.dumps(str(release)))})
    bogus = "a" + uuid.uuid4().hex[:20]
    asyncio.run(_write_unjudgeable(deployed, holder, bogus))

    assert_eventually(lambda: _action(deployed, holder, bogus)["phase"] == "failed", timeout=30)
    error = _action(deployed, holder, bogus)["error"]
    assert error["error_type"] == "NonRecoverableError"
    assert "placement cannot judge" in error["message"]
    assert "sec_gone.main" in error["message"]

    other = _create(deployed, "add_one", {"x": json_value("41")})
    assert_eventually(lambda: _action(deployed, other)["phase"] == "succeeded", timeout=60)
    assert _action(deployed, other)["output"]["json_text"] == "42"
    release.touch()
    assert_eventually(lambda: _action(deployed, holder)["phase"] == "succeeded", timeout=60)


def test_a_bad_override_already_in_the_store_stalls_nobody(deployed: Tenants, tmp_path: Path) -> None:
    """An action with `cpu.request: "abc"` written before overrides were validated (here: straight into the store)
    is ignored by the placement watch, which goes on placing everyone else's work."""
    release = tmp_path / "release"
    holder = _create(deployed, "hold", {"path": json_value(json.dumps(str(release)))})
    bogus = "a" + uuid.uuid4().hex[:20]
    now = time.time()
    record = {
        "name": bogus,
        "parent": "a0",
        "task": "sec_tasks.add_one",
        "version": _action(deployed, holder)["version"],
        "phase": "queued",
        "run": holder,
        "inputs": {"x": json_value("1")},
        "created_at": now,
        "updated_at": now,
        "overrides": {"resources": {"cpu": {"request": "abc"}}},
    }
    key = action_key(holder, bogus)
    gateway = deployed.fed.gateway
    assert gateway is not None
    asyncio.run(_put(deployed, key, json.dumps(record).encode()))
    assert_eventually(lambda: f"ignoring the unreadable action record {key}" in gateway.text(), timeout=30)
    other = _create(deployed, "add_one", {"x": json_value("1")})
    assert_eventually(lambda: _action(deployed, other)["phase"] == "succeeded", timeout=60)
    release.touch()
    assert_eventually(lambda: _action(deployed, holder)["phase"] == "succeeded", timeout=60)
    assert gateway.alive()


async def _put(tenants: Tenants, key: str, value: bytes) -> None:
    store = await open_store(tenants.fed.etcd.url)
    try:
        await store.put(key, value)
    finally:
        await store.close()


async def _write_unjudgeable(tenants: Tenants, run: str, name: str) -> None:
    now = time.time()
    action = ActionSummary(
        name=name,
        parent="a0",
        task="sec_gone.main",
        version="v1",
        phase=Phase.QUEUED,
        run=run,
        created_at=now,
        updated_at=now,
    )
    await _put(tenants, action_key(run, name), action.model_dump_json(exclude={"revision"}).encode())

"""Retention on a real gateway process, once on the embedded SQLite store and once on a real etcd: an ended run
older than its project's retention goes with its actions, the log chunks its agent sent, its notification
deliveries and every key named after it; running and recent runs stay, with their logs and deliveries; blobs
nothing retained names are collected while referenced ones (directly, or through a directory's manifest) stay.

The runs are placed on an agent whose socket the test speaks by hand, so their logs reach the store as a real
agent's do, and they notify a webhook receiver the test runs, so their delivery records are the notifier's own."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from http_receiver import http_receiver
from integration.gateway_api import Api, task_spec, unique, value
from processes import GatewayProcess
from security.channels import AgentSocket, agent_socket, token
from waiting import async_assert_eventually, eventually_async

import flyte.notify as notify
from gateway._keys import deliveries_key, logs_prefix
from gateway.store import open_store

pytestmark = pytest.mark.timeout(120)


async def _blob(api: Api, data: bytes, project: str = "scratch") -> str:
    """A blob of `project` (a blob is readable, and deployable, only by the projects that uploaded it)."""
    digest = hashlib.sha256(data).hexdigest()
    status, _ = await api.call("PUT", f"/api/v1/blobs/{digest}?project={project}", raw=data)
    assert status in (200, 201)
    return digest


async def _run(api: Api, project: str, hook: str, ref: str | None = None) -> tuple[str, str]:
    env = unique("env")
    bundle = await _blob(api, f"bundle of {env}".encode(), project)
    deployment = {
        "project": project,
        "domain": "development",
        "env": env,
        "version": "v1",
        "bundle_digest": bundle,
        "tasks": [task_spec(env)],
    }
    status, answer = await api.call("POST", "/api/v1/deployments", deployment)
    assert status == 201, answer
    x: dict[str, Any] = value(1) if ref is None else {"kind": "json", "digest": ref, "ref": f"blob:{ref}"}
    rule = notify.Webhook(on_phase="succeeded", url=hook).to_wire().model_dump(mode="json")
    body = {"project": project, "domain": "development", "task": f"{env}.main", "inputs": {"x": x}}
    body["notifications"] = [rule]
    body["idempotency_key"] = unique("key")
    status, run = await api.call("POST", "/api/v1/runs", body)
    assert status == 201, run
    return str(run["name"]), env


async def _log_and_end(api: Api, agent: AgentSocket, run: str) -> None:
    """The run's root action runs on the agent, which sends its output (stored as chunks), then succeeds."""
    await agent.assignment(run)
    await agent.logs(run, "a0", f"hello from {run}\n")

    async def logged() -> bool:
        status, text = await api.call("GET", f"/api/v1/runs/{run}/actions/a0/logs")
        return status == 200 and f"hello from {run}" in str(text)

    await eventually_async(logged, within=20, every=0.1)
    await agent.event(run, "a0", "running")
    await agent.acknowledged()
    await agent.event(run, "a0", "succeeded", output=value(2))
    await agent.acknowledged()


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[str, set[str]]]:
    """A webhook receiver's URL, and the runs it was notified of."""
    notified: set[str] = set()

    async def handle(request: web.Request) -> web.Response:
        notified.add((await request.json())["run"])
        return web.Response(text="ok")

    async with http_receiver(handle) as url:
        yield f"{url}/hook", notified


async def test_old_ended_runs_and_unreferenced_blobs_go_the_rest_stays(
    store_url: str, tmp_path: Path, hooks: tuple[str, set[str]]
) -> None:
    hook, notified = hooks
    home = tmp_path / "gateway-home"
    args = ["--retain-runs", "1h", "--retain-project", "scratch=1s", "--blob-grace", "1s"]
    gateway = GatewayProcess(store_url, home, extra_args=args).start()
    try:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as http,
            agent_socket(gateway.endpoint, await token(Api(gateway.endpoint, http), "agent:c1"), "c1") as agent,
        ):
            api = Api(gateway.endpoint, http)
            old_input = await _blob(api, b"input of the old run " + uuid.uuid4().hex.encode())
            orphan = await _blob(api, b"referenced by nothing " + uuid.uuid4().hex.encode())
            in_dir = await _blob(api, b"a file in a directory " + uuid.uuid4().hex.encode())
            manifest = await _blob(api, json.dumps({"files": [["f.txt", in_dir]]}).encode())

            old, env = await _run(api, "scratch", hook, ref=old_input)
            child = {
                "name": "a" + uuid.uuid4().hex[:20],
                "parent": "a0",
                "task": f"{env}.main",
                "inputs": {"x": value(3)},
            }
            status, answer = await api.call("POST", f"/api/v1/runs/{old}/actions", child)
            assert status == 201, answer
            running, _ = await _run(api, "scratch", hook, ref=manifest)
            recent, _ = await _run(api, "default", hook)
            await _log_and_end(api, agent, recent)
            await _log_and_end(api, agent, old)

            async def status_of(path: str) -> int:
                status, _ = await api.call("GET", path)
                return status

            gone: dict[str, int] = {}

            async def poll() -> None:
                gone["run"] = await status_of(f"/api/v1/runs/{old}")
                gone["orphan"] = await status_of(f"/api/v1/blobs/{orphan}")
                gone["input"] = await status_of(f"/api/v1/blobs/{old_input}")

            async def all_gone() -> bool:
                await poll()
                return set(gone.values()) == {404}

            await eventually_async(all_gone, within=30, every=0.2)
            assert not (home / "flyte" / "gateway" / "logs").exists(), "logs are kept in the store, not on disk"
            # The notifier writes a run's delivery record before it sends: the old run had one.
            await async_assert_eventually(lambda: {old, recent} <= notified, within=20)
            assert await status_of(f"/api/v1/runs/{running}") == 200, "a running run is never deleted"
            assert await status_of(f"/api/v1/runs/{recent}") == 200, "a run inside its retention stays"
            for digest in (manifest, in_dir):
                assert await status_of(f"/api/v1/blobs/{digest}") == 200, "a referenced blob (and its files) stays"
    finally:
        gateway.stop()

    store = await open_store(store_url)
    try:
        kvs, _ = await store.range("/flyte/")
    finally:
        await store.close()
    keys = [kv.key for kv in kvs]
    assert [k for k in keys if old in k] == [], "no key of the deleted run is left"
    assert [k for k in keys if orphan in k or old_input in k] == [], "a collected blob's readers go with it"
    assert any(k.endswith(manifest) for k in keys), "a kept blob keeps its readers"
    assert any(running in k for k in keys)
    assert any(recent in k for k in keys)
    assert deliveries_key(recent) in keys, "a kept run keeps its notification deliveries"
    assert any(k.startswith(logs_prefix(recent)) for k in keys), "a kept run keeps its logs"
    assert any(k.startswith(f"/flyte/spans/{recent}/") for k in keys), "runs have spans, so the old run's went too"
    assert len([k for k in keys if k.startswith("/flyte/idempotency/scratch/")]) == 1, "the running run's key stays"

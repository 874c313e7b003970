"""Talking to a gateway process's HTTP API from tests: `Api` (status and decoded body of any call) and small
builders of task specs, values, runs and children."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from typing import Any

import aiohttp
from waiting import eventually_async


class Api:
    def __init__(self, endpoint: str, session: aiohttp.ClientSession):
        self.endpoint = endpoint
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> tuple[int, Any]:
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        data = io.BytesIO(payload) if payload is not None else None
        async with self.session.request(
            method, self.endpoint + path, data=data, params=params or None, headers=headers
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except json.JSONDecodeError:
                return response.status, text

    async def revision(self) -> int:
        """The store's revision once every run's `action_count` has caught up with its actions (the runs of the
        default project and domain, where `new_run` makes them). The gateway adds new actions to their run's count
        in the background, a quarter second after they were submitted: a test comparing revisions around a request
        that must write nothing would otherwise see an earlier test's count."""
        await eventually_async(self._every_run_counted)
        status, body = await self.call("GET", "/readyz")
        assert status == 200
        return int(body["revision"])

    async def _every_run_counted(self) -> bool:
        status, runs = await self.call("GET", "/api/v1/runs", limit=1000)
        assert status == 200, runs
        for run in runs:
            status, actions = await self.call("GET", f"/api/v1/runs/{run['name']}/actions")
            assert status == 200, actions
            if run["action_count"] != len(actions):
                return False
        return True

    async def deploy(
        self, env: str, version: str = "v1", tasks: list[dict[str, Any]] | None = None, bundle: bytes = b"bundle"
    ) -> tuple[int, Any]:
        digest = hashlib.sha256(bundle).hexdigest()
        status, _ = await self.call("PUT", f"/api/v1/blobs/{digest}", raw=bundle)
        assert status in (200, 201)
        body = {
            "project": "default",
            "domain": "development",
            "env": env,
            "version": version,
            "bundle_digest": digest,
            "tasks": tasks if tasks is not None else [task_spec(env)],
        }
        return await self.call("POST", "/api/v1/deployments", body)


def task_spec(env: str, func: str = "main", params: tuple[str, ...] = ("x",)) -> dict[str, Any]:
    return {
        "name": f"{env}.{func}",
        "short_name": func,
        "signature": f"{func}({', '.join(p + ': int' for p in params)}) -> int",
        "interface_digest": "0123456789abcdef",
        "inputs": [{"name": p, "type": "int"} for p in params],
        "output": "int",
    }


def value(obj: Any) -> dict[str, Any]:
    text = json.dumps(obj)
    return {"kind": "json", "digest": hashlib.sha256(text.encode()).hexdigest(), "json_text": text}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def new_run(api: Api, **extra: Any) -> dict[str, Any]:
    env = unique("env")
    status, _ = await api.deploy(env)
    assert status == 201
    body = {"project": "default", "domain": "development", "task": f"{env}.main", "inputs": {"x": value(1)}, **extra}
    status, run = await api.call("POST", "/api/v1/runs", body)
    assert status == 201, run
    return dict(run)


def child(parent: str = "a0", env: str | None = None, x: int = 2) -> dict[str, Any]:
    name = "a" + hashlib.sha256(f"{parent}{x}{uuid.uuid4()}".encode()).hexdigest()[:20]
    return {"name": name, "parent": parent, "task": f"{env}.main", "inputs": {"x": value(x)}}

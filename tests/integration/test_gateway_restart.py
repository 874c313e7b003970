"""Kill the gateway with SIGKILL and start it again on the same store: every acknowledged write is there, and a
watch resumes from the last revision it saw. Once on the embedded SQLite store, once on a real etcd."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aiohttp
import pytest
from processes import GatewayProcess

pytestmark = pytest.mark.timeout(90)


def _value(obj: object) -> dict[str, str]:
    text = json.dumps(obj)
    return {"kind": "json", "digest": hashlib.sha256(text.encode()).hexdigest(), "json_text": text}


async def test_everything_survives_sigkill_and_watches_resume(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "gateway-home"
    gateway = GatewayProcess(store_url, home).start()
    try:
        headers = {"Authorization": f"Bearer {gateway.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            bundle = b"code"
            digest = hashlib.sha256(bundle).hexdigest()
            async with http.put(f"{gateway.endpoint}/api/v1/blobs/{digest}", data=bundle) as response:
                assert response.status == 201
            deploy = {
                "project": "default",
                "domain": "development",
                "env": "restart",
                "version": "v1",
                "bundle_digest": digest,
                "tasks": [
                    {
                        "name": "restart.main",
                        "short_name": "main",
                        "signature": "main(x: int) -> int",
                        "interface_digest": "0123456789abcdef",
                        "inputs": [{"name": "x", "type": "int"}],
                    }
                ],
            }
            async with http.post(f"{gateway.endpoint}/api/v1/deployments", json=deploy) as response:
                assert response.status == 201
            runs = []
            for i in range(3):
                body = {
                    "project": "default",
                    "domain": "development",
                    "task": "restart.main",
                    "inputs": {"x": _value(i)},
                }
                async with http.post(f"{gateway.endpoint}/api/v1/runs", json=body) as response:
                    assert response.status == 201
                    runs.append((await response.json())["name"])
            watched = runs[0]
            async with http.ws_connect(f"{gateway.endpoint}/api/v1/runs/{watched}/watch") as ws:
                while json.loads((await ws.receive(timeout=10)).data)["type"] != "marker":
                    pass
                event = {"phase": "running", "attempt": 1}
                async with http.post(f"{gateway.endpoint}/api/v1/runs/{watched}/actions/a0/events", json=event) as r:
                    assert r.status == 200
                change = json.loads((await ws.receive(timeout=10)).data)
                last_seen = change["revision"]

        gateway.kill()
        # The gateway is gone; its port is free. Start it again on the same store (and the same token).
        token = gateway.token
        gateway = GatewayProcess(store_url, home).start()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async with http.get(f"{gateway.endpoint}/api/v1/tasks/restart.main") as response:
                assert response.status == 200, "the deployment and the old token survived"
            async with http.get(f"{gateway.endpoint}/api/v1/runs") as response:
                assert {r["name"] for r in await response.json()} >= set(runs)
            async with http.get(f"{gateway.endpoint}/api/v1/runs/{watched}/actions/a0") as response:
                assert (await response.json())["phase"] == "running"

            event = {"phase": "succeeded", "attempt": 1, "output": _value(0)}
            async with http.post(f"{gateway.endpoint}/api/v1/runs/{watched}/actions/a0/events", json=event) as r:
                assert r.status == 200
            url = f"{gateway.endpoint}/api/v1/runs/{watched}/watch?from_revision={last_seen + 1}"
            async with http.ws_connect(url) as ws:
                message = json.loads((await ws.receive(timeout=10)).data)
            assert message["type"] == "change"
            assert [(a["name"], a["phase"]) for a in message["actions"]] == [("a0", "succeeded")]
            async with http.get(f"{gateway.endpoint}/api/v1/runs/{watched}") as response:
                assert (await response.json())["phase"] == "succeeded"
    finally:
        gateway.stop()

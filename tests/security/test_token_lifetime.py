"""Issue 15, deliverable 6: tokens end. Against a real gateway process, a token made with an expiry and a token an
admin revoked are refused (401) on HTTP and on sockets they opened while they were good, at those sockets' next
message; listing shows every stored token but never a secret; only an admin lists or revokes; and the CLI does the
same through the gateway's API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from channels import AgentSocket, admin_api, agent_socket, ask, gateway_process, headers, token, worker_socket
from integration.gateway_api import Api
from processes import GatewayProcess

pytestmark = pytest.mark.timeout(90)
PROBE = {"type": "submit", "run": "no-such-run", "actions": []}
"""A worker message any good token may send: it answers 404 (no such run), or 401 once the token is no good."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # A long lease: the hand-spoken agent sockets send no heartbeats while a test waits for a token to expire.
    with gateway_process(tmp_path_factory.mktemp("gateway"), FLYTE_LEASE_TTL="120") as process:
        yield process


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with admin_api(gateway) as called:
        yield called


async def made(api: Api, *scopes: str, expires_in: float | None = None, description: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"scopes": list(scopes), "description": description}
    if expires_in is not None:
        body["expires_in_seconds"] = expires_in
    status, answer = await api.call("POST", "/api/v1/tokens", body)
    assert status == 201, answer
    return dict(answer)


async def status_with(api: Api, bearer: str) -> int:
    status, _ = await api.call("GET", "/api/v1/runs", headers=headers(bearer))
    return int(status)


async def until_refused(api: Api, bearer: str, deadline: float) -> None:
    while await status_with(api, bearer) != 401:
        assert time.monotonic() < deadline, "the token was still accepted after it expired"


async def session_ended(api: Api, agent: AgentSocket) -> None:
    """Send a heartbeat on an agent's socket and wait until the gateway ended that agent's session."""
    await agent.send({"type": "heartbeat", "free": {"cpu": 8.0}, "warm": {}})
    deadline = time.monotonic() + 20
    while (await api.call("GET", f"/api/v1/clusters/{agent.cluster}"))[1].get("connected"):
        assert time.monotonic() < deadline, f"{agent.cluster} stayed connected"


async def test_an_expired_token_is_refused_on_http_and_on_open_sockets(api: Api, gateway: GatewayProcess) -> None:
    lifetime = 4.0
    run_token = await made(api, "run", expires_in=lifetime)
    agent_token = await made(api, "agent:expiring", expires_in=lifetime)
    assert run_token["expires_at"] is not None
    assert run_token["expires_at"] <= time.time() + lifetime
    ends = time.monotonic() + lifetime
    async with (
        worker_socket(gateway.endpoint, run_token["token"]) as ws,
        agent_socket(gateway.endpoint, agent_token["token"], "expiring") as agent,
    ):
        assert time.monotonic() < ends, "the machine was too slow to open both sockets before the tokens expired"
        assert (await ask(ws, PROBE))["code"] == "not_found", "while good, the token is answered"
        await until_refused(api, run_token["token"], ends + 20)
        reply = await ask(ws, PROBE)
        assert (reply["type"], reply["code"]) == ("error", "unauthorized"), reply
        assert "expired" in reply["message"]
        await session_ended(api, agent)
    status, body = await api.call("GET", "/api/v1/runs", headers=headers(agent_token["token"]))
    assert (status, body["code"]) == (401, "unauthorized")


async def test_a_revoked_token_is_refused_at_once_on_http_and_on_open_sockets(
    api: Api, gateway: GatewayProcess
) -> None:
    run_token = await made(api, "run", description="to be revoked")
    agent_token = await made(api, "agent:revoked")
    kept = await made(api, "run", description="kept")
    async with (
        worker_socket(gateway.endpoint, run_token["token"]) as ws,
        agent_socket(gateway.endpoint, agent_token["token"], "revoked") as agent,
    ):
        assert await status_with(api, run_token["token"]) == 200, "a good token is answered (and now cached)"
        assert (await ask(ws, PROBE))["code"] == "not_found"
        for item in (run_token, agent_token):
            status, body = await api.call("DELETE", f"/api/v1/tokens/{item['id']}")
            assert (status, body["id"]) == (200, item["id"]), body
        # At once: no waiting out the gateway's cache of tokens.
        assert await status_with(api, run_token["token"]) == 401
        reply = await ask(ws, PROBE)
        assert (reply["type"], reply["code"]) == ("error", "unauthorized"), reply
        await session_ended(api, agent)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with agent_socket(gateway.endpoint, agent_token["token"], "revoked"):
            pass
    assert refused.value.status == 401
    assert await status_with(api, kept["token"]) == 200, "revoking one token leaves the others"
    status, body = await api.call("DELETE", f"/api/v1/tokens/{run_token['id']}")
    assert (status, body["code"]) == (404, "not_found"), "a revoked token is gone"


async def test_only_an_admin_lists_and_revokes_and_no_secret_is_listed(api: Api) -> None:
    mine = await made(api, "deploy", description="listed")
    status, listed = await api.call("GET", "/api/v1/tokens")
    assert status == 200
    entry = next(item for item in listed if item["id"] == mine["id"])
    assert entry["scopes"] == ["deploy"]
    assert entry["description"] == "listed"
    assert entry["expires_at"] is None
    assert set(entry) == {"id", "scopes", "projects", "description", "created_at", "expires_at"}
    assert mine["token"] not in json.dumps(listed)
    for bearer in (mine["token"], await token(api, "run")):
        status, body = await api.call("GET", "/api/v1/tokens", headers=headers(bearer))
        assert (status, body["code"]) == (403, "forbidden")
        status, body = await api.call("DELETE", f"/api/v1/tokens/{mine['id']}", headers=headers(bearer))
        assert (status, body["code"]) == (403, "forbidden")
    for bad in ("0" * 16, "not-an-id", mine["id"][:8]):
        status, body = await api.call("DELETE", f"/api/v1/tokens/{bad}")
        assert (status, body["code"]) == (404, "not_found"), bad
    for expiry in (0, -1, 1e12):
        status, body = await api.call("POST", "/api/v1/tokens", {"scopes": ["run"], "expires_in_seconds": expiry})
        assert status == 400, (expiry, body)
    assert await status_with(api, mine["token"]) == 200, "refused attempts revoked nothing"


def flyte_cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLYTE_ENDPOINT": gateway.endpoint, "FLYTE_API_KEY": gateway.token}
    return subprocess.run(
        [sys.executable, "-m", "flyte.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_the_cli_makes_lists_and_revokes_tokens(api: Api, gateway: GatewayProcess) -> None:
    made_ = flyte_cli(gateway, "gateway", "token", "create", "--scope", "run", "--expires", "7d", "--description", "ci")
    assert made_.returncode == 0, made_.stderr
    secret = made_.stdout.strip()
    assert await status_with(api, secret) == 200
    listed = flyte_cli(gateway, "gateway", "token", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout
    entry = next(item for item in json.loads(listed.stdout) if item["description"] == "ci")
    assert 7 * 86400 - 120 < entry["expires_at"] - entry["created_at"] <= 7 * 86400
    revoked = flyte_cli(gateway, "gateway", "token", "revoke", entry["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert await status_with(api, secret) == 401
    bad = flyte_cli(gateway, "gateway", "token", "create", "--scope", "run", "--expires", "soon")
    assert bad.returncode == 2
    assert "duration" in bad.stderr

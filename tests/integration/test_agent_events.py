"""An agent's events against a real gateway process, with the agent's socket spoken by hand: each batch is
acknowledged once applied, and a batch sent again (as the agent's outbox does after a reconnect or an overdue
acknowledgement) is acknowledged without being applied again (`gateway._event_acks`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from integration.gateway_api import new_run
from security.channels import AgentSocket, admin_api, agent_socket, gateway_process, token

pytestmark = pytest.mark.timeout(60)

OOM = {"error_type": "OOMError", "code": "OOMError", "kind": "user", "message": "killed by the memory limit"}


async def send(agent: AgentSocket, since: int, *events: tuple[int, str, dict[str, Any]]) -> int:
    """Send events (seq, run, event) as one outbox batch; the gateway's acknowledgement."""
    items = [{"run": run, "action": "a0", "event": event, "seq": seq} for seq, run, event in events]
    await agent.ws.send_str(json.dumps({"type": "events", "incarnation": "be1", "since": since, "events": items}))
    return await agent.acknowledged()


async def test_a_batch_sent_again_is_acknowledged_and_applied_once(tmp_path: Path) -> None:
    with gateway_process(tmp_path) as gateway:
        async with admin_api(gateway) as api:
            cluster = "events-a"
            agent_token = await token(api, f"agent:{cluster}")
            async with agent_socket(gateway.endpoint, agent_token, cluster) as agent:
                run = (await new_run(api))["name"]
                await agent.assignment(run)
                base = {"attempt": 1, "cluster": cluster, "epoch": agent.epoch}
                running = (1, run, {**base, "phase": "running"})
                failed = (2, run, {**base, "phase": "failed", "error": OOM})
                assert await send(agent, 1, running, failed) == 2
                status, first = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
                assert status == 200
                assert (first["phase"], first["error"]["error_type"]) == ("failed", "OOMError")
                revision = (await api.call("GET", "/readyz"))[1]["revision"]
                # The same batch again, then a batch starting past events the gateway never saw (given up).
                assert await send(agent, 1, running, failed) == 2
                assert await send(agent, 5, (5, run, {**base, "phase": "running"})) == 5
                assert (await api.call("GET", "/readyz"))[1]["revision"] == revision, "a repeat wrote something"
                assert (await api.call("GET", f"/api/v1/runs/{run}/actions/a0"))[1] == first

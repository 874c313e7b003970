"""An agent socket that leaves what the gateway sends unread: the gateway keeps a bounded amount for it, then cuts it
off, and the work that session was given is placed again once the agent is back (`gateway._agent_outbox`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from channels import (
    RECEIVE_TIMEOUT,
    admin_api,
    agent_socket,
    events_total,
    gateway_process,
    headers,
    small_receive_buffer,
    token,
)
from integration.gateway_api import Api, new_run
from processes import GatewayProcess

pytestmark = pytest.mark.timeout(120)
UNREAD_LIMIT = 256 * 1024
CLUSTER = "unread-agent"
FLOOD = 400_000
"""Batches of events sent without reading an answer: each is answered (~100 bytes), ~40 MB in all, far past the
limit and the kernel's socket buffers."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with gateway_process(tmp_path_factory.mktemp("gateway"), FLYTE_AGENT_UNREAD_LIMIT=str(UNREAD_LIMIT)) as process:
        yield process


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with admin_api(gateway) as called:
        yield called


async def cut_offs(api: Api) -> int:
    return await events_total(api, "agent_sockets_cut_off")


async def sent_until_cut_off(ws: aiohttp.ClientWebSocketResponse, message: str) -> int:
    """How many times `message` was sent before the socket failed; `FLOOD` if it never did."""
    for sent in range(FLOOD):
        try:
            await ws.send_str(message)
        except (ConnectionError, aiohttp.ClientError):
            return sent
    return FLOOD


@asynccontextmanager
async def unread_agent_socket(endpoint: str, bearer: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """An agent's socket that says hello and reads its welcome, and is then left to the test."""
    record = {"name": CLUSTER, "region": "r1", "cloud": "c1", "capacity": {"cpu": 8.0, "memory": 8e9}}
    record["free"] = record["capacity"]
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer)
    async with (
        aiohttp.ClientSession(headers=headers(bearer), connector=connector) as http,
        http.ws_connect(f"{endpoint}/api/v1/agents/connect") as ws,
    ):
        await ws.send_str(json.dumps({"type": "hello", "cluster": record, "running": []}))
        welcome = await ws.receive_json(timeout=RECEIVE_TIMEOUT)
        assert welcome["type"] == "welcome", welcome
        yield ws


async def test_an_agent_that_leaves_what_it_is_sent_unread_is_cut_off_and_its_work_is_placed_again(
    api: Api, gateway: GatewayProcess
) -> None:
    before = await cut_offs(api)
    bearer = await token(api, f"agent:{CLUSTER}")
    async with unread_agent_socket(gateway.endpoint, bearer) as ws:
        run = (await new_run(api))["name"]
        while True:  # its root's assignment: the work this session holds when it is cut off
            message = await ws.receive_json(timeout=RECEIVE_TIMEOUT)
            if any(item["run"] == run for item in message.get("assignments", [])):
                break
        batch = json.dumps({"type": "events", "incarnation": "e" * 64, "since": 1, "events": []})
        assert await sent_until_cut_off(ws, batch) < FLOOD, "every answer was kept for an agent that read none"
    assert await cut_offs(api) == before + 1
    # Nothing was lost: the agent comes back without it, and the root is placed again, on its new session.
    async with agent_socket(gateway.endpoint, bearer, CLUSTER) as agent:
        again = await agent.assignment(run)
        assert again["attempt"] > 1


async def test_an_agent_that_reads_slowly_within_the_limit_gets_every_answer_in_order(
    api: Api, gateway: GatewayProcess
) -> None:
    before = await cut_offs(api)
    bearer = await token(api, f"agent:{CLUSTER}")
    async with unread_agent_socket(gateway.endpoint, bearer) as ws:
        for upto in range(1, 501):  # ~50 KB of answers, within the limit: they wait for the agent to read them
            await ws.send_str(json.dumps({"type": "events", "incarnation": "e" * 64, "since": upto, "events": []}))
        answered = []
        while len(answered) < 500:
            message = await ws.receive_json(timeout=RECEIVE_TIMEOUT)
            if message["type"] == "events_ack":
                answered.append(message["upto"])
        assert answered == sorted(answered)
    assert await cut_offs(api) == before

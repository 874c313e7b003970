"""A worker socket that stops reading its answers is cut off, not buffered without end: any task's code holds its
attempt's token, so a worker may be hostile. Against a real gateway process, with its limit lowered."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from channels import admin_api, agent_socket, ask, events_total, gateway_process, token, worker_socket
from integration.gateway_api import Api, new_run
from processes import GatewayProcess

pytestmark = pytest.mark.timeout(90)
UNREAD_LIMIT = 2 * 1024 * 1024
TRACE_BYTES = 512 * 1024
ASKED = 40
"""Answers of ~700 KB each, asked for and never read: far past the limit and the kernel's socket buffers."""
CLUSTER = "unread"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with gateway_process(tmp_path_factory.mktemp("gateway"), FLYTE_WORKER_UNREAD_LIMIT=str(UNREAD_LIMIT)) as process:
        yield process


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with admin_api(gateway) as called:
        yield called


async def cut_offs(api: Api) -> int:
    return await events_total(api, "worker_sockets_cut_off")


async def test_a_worker_that_leaves_its_answers_unread_is_cut_off_and_loses_nothing(
    api: Api, gateway: GatewayProcess
) -> None:
    run = (await new_run(api))["name"]
    before = await cut_offs(api)
    async with agent_socket(gateway.endpoint, await token(api, f"agent:{CLUSTER}"), CLUSTER) as agent:
        worker = (await agent.assignment(run))["token"]
        async with worker_socket(gateway.endpoint, worker, reads_little=True) as ws:
            payload = await write_a_big_trace(ws, run)
            await ask_unread(ws, run)
            # Only now read: what the kernel's buffers held arrives, then the end of the connection.
            answered = 0
            while answered < ASKED:
                message = await ws.receive(timeout=30)
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                answered += 1
            assert answered < ASKED, "every answer was kept for a worker that did not read them"
        assert await cut_offs(api) == before + 1
        # Nothing was lost: the worker reconnects and asks again.
        async with worker_socket(gateway.endpoint, worker) as again:
            reply = await ask(again, {"type": "traces", "run": run, "action": "a0"})
            assert reply["traces"]["big"]["payload_b64"] == payload


async def test_answers_left_unread_within_the_limit_all_arrive_whole_once_read(tmp_path: Path) -> None:
    """Past the kernel's buffers the gateway's sends wait for the socket to drain, and the answers put meanwhile wait
    behind them (`_WorkerOutbox`): once the worker reads, each arrives, whole, once."""
    with gateway_process(tmp_path) as roomy:  # the default limit: 64 MB, past what is asked here
        async with admin_api(roomy) as api:
            run = (await new_run(api))["name"]
            async with agent_socket(roomy.endpoint, await token(api, f"agent:{CLUSTER}"), CLUSTER) as agent:
                worker = (await agent.assignment(run))["token"]
                async with worker_socket(roomy.endpoint, worker, reads_little=True) as ws:
                    payload = await write_a_big_trace(ws, run)
                    await ask_unread(ws, run)
                    answered: list[int] = []
                    while len(answered) < ASKED:
                        message = await ws.receive(timeout=30)
                        assert message.type is aiohttp.WSMsgType.TEXT, f"the socket ended after {len(answered)}"
                        reply = json.loads(message.data)
                        assert reply["traces"]["big"]["payload_b64"] == payload
                        answered.append(reply["id"])
                    assert sorted(answered) == [1000 + i for i in range(ASKED)]
            assert await cut_offs(api) == 0


async def write_a_big_trace(ws: aiohttp.ClientWebSocketResponse, run: str) -> str:
    """Write a trace of `TRACE_BYTES` under the root; its payload. Each `traces` answer then carries it."""
    payload = base64.b64encode(os.urandom(TRACE_BYTES)).decode()
    trace = {"type": "trace", "run": run, "action": "a0", "key": "big", "trace": {"kind": "json"}}
    await ws.send_str(json.dumps({**trace, "trace": {"kind": "json", "payload_b64": payload}}))
    # Answered once the trace is written (a worker's messages are handled concurrently).
    for _ in range(100):
        if (await ask(ws, {"type": "traces", "run": run, "action": "a0"}))["traces"]:
            return payload
    raise AssertionError("the trace was never written")


async def ask_unread(ws: aiohttp.ClientWebSocketResponse, run: str) -> None:
    """Ask for the traces `ASKED` times (ids 1000 on), reading none of the answers yet, on a socket that reads
    little (`worker_socket(reads_little=True)`)."""
    for i in range(ASKED):
        await ws.send_str(json.dumps({"type": "traces", "run": run, "action": "a0", "id": 1000 + i}))

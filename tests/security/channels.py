"""An attacker's tools against a real gateway process: tokens of each kind, an agent's socket spoken by hand (to
take the assignments, and the worker tokens, that a real agent would get), and a worker's socket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from integration.gateway_api import Api
from processes import GatewayProcess

RECEIVE_TIMEOUT = 20.0


@contextmanager
def gateway_process(directory: Path, *args: str, store: str = "memory", **env: str) -> Iterator[GatewayProcess]:
    """A gateway process on `store` (the in-memory store unless a test reads the store itself), started with `args`
    (more `serve` options) and `env` (limits lowered for a test) added."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        process = GatewayProcess(store, directory, extra_args=list(args)).start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        yield process
    finally:
        process.stop()


@asynccontextmanager
async def admin_api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers=headers(gateway.token)) as session:
        yield Api(gateway.endpoint, session)


async def token(api: Api, *scopes: str, projects: tuple[str, ...] = ()) -> str:
    status, body = await api.call("POST", "/api/v1/tokens", {"scopes": list(scopes), "projects": list(projects)})
    assert status == 201, body
    return str(body["token"])


def headers(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


async def events_total(api: Api, event: str) -> int:
    """The gateway's count of `event` (`flyte_gateway_events_total`), 0 before the first."""
    status, text = await api.call("GET", "/metrics")
    assert status == 200
    found = re.search(rf'^flyte_gateway_events_total\{{event="{event}"\}} (\d+)$', str(text), re.M)
    return int(found.group(1)) if found else 0


class AgentSocket:
    """The agent protocol spoken by hand: hello, then whatever the test sends; assignments are collected."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, cluster: str):
        self.ws = ws
        self.cluster = cluster
        self.epoch = 0
        self.assignments: dict[tuple[str, str], dict[str, Any]] = {}
        self.seq = 0
        """The last event number sent (the agent's outbox numbers its events; see `agent._outbox`)."""

    async def assignment(self, run: str, action: str = "a0") -> dict[str, Any]:
        """The assignment of `run/action`, waiting for it to arrive."""
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        while (run, action) not in self.assignments:
            assert time.monotonic() < deadline, f"no assignment of {run}/{action} came to {self.cluster}"
            message = await self.ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
            for item in message.get("assignments", []):
                self.assignments[(item["run"], item["action"])] = item
        return self.assignments[(run, action)]

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def event(self, run: str, action: str, phase: str, attempt: int = 1, **extra: Any) -> None:
        event = {"phase": phase, "attempt": attempt, "cluster": self.cluster, "epoch": self.epoch, **extra}
        self.seq += 1
        item = {"run": run, "action": action, "event": event, "seq": self.seq}
        await self.send({"type": "events", "incarnation": "5ec", "since": 1, "events": [item]})

    async def acknowledged(self) -> int:
        """The next `EventsAck`'s `upto` (other messages are skipped)."""
        while True:
            message = await self.ws.receive_json(timeout=RECEIVE_TIMEOUT)
            if message["type"] == "events_ack":
                return int(message["upto"])

    async def logs(self, run: str, action: str, text: str, attempt: int = 1) -> None:
        message = {"type": "logs", "run": run, "action": action, "attempt": attempt, "stream": "stdout", "text": text}
        await self.send(message)

    async def sync(self) -> None:
        """Wait until the gateway handled everything sent so far (it handles one socket's messages in order)."""
        await self.send({"type": "heartbeat", "free": {"cpu": 8.0, "memory": 8e9}, "warm": {}})
        await asyncio.sleep(0)


@asynccontextmanager
async def agent_socket(endpoint: str, bearer: str, cluster: str) -> AsyncIterator[AgentSocket]:
    record = {"name": cluster, "region": "r1", "cloud": "c1", "capacity": {"cpu": 8.0, "memory": 8e9}}
    record["free"] = record["capacity"]
    async with (
        aiohttp.ClientSession(headers=headers(bearer)) as http,
        http.ws_connect(f"{endpoint}/api/v1/agents/connect") as ws,
    ):
        await ws.send_str(json.dumps({"type": "hello", "cluster": record, "running": []}))
        welcome = await ws.receive_json(timeout=RECEIVE_TIMEOUT)
        assert welcome["type"] == "welcome", welcome
        socket = AgentSocket(ws, cluster)
        socket.epoch = welcome["epoch"]
        yield socket


def small_receive_buffer(addr_info: AddrInfoType) -> socket.socket:
    """A socket (`aiohttp.TCPConnector(socket_factory=...)`) whose receive buffer is 64 KiB from its first byte, as a
    default kernel keeps it: one that lets it grow (this machine's `tcp_rmem` allows 32 MB) takes in much of what a
    test leaves unread, and the gateway then holds little of it."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


@asynccontextmanager
async def worker_socket(
    endpoint: str, bearer: str, *, reads_little: bool = False
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """`reads_little`: its receive buffer stays small (`small_receive_buffer`)."""
    connector = aiohttp.TCPConnector(socket_factory=small_receive_buffer) if reads_little else None
    async with (
        aiohttp.ClientSession(headers=headers(bearer), connector=connector) as http,
        http.ws_connect(f"{endpoint}/api/v1/workers/connect") as ws,
    ):
        yield ws


async def ask(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> dict[str, Any]:
    """Send a worker message and return the gateway's reply to it."""
    request_id = int(time.monotonic_ns() % 1_000_000_000)
    await ws.send_str(json.dumps({**message, "id": request_id}))
    while True:
        reply = await ws.receive_json(timeout=RECEIVE_TIMEOUT)
        # A message that does not validate is answered before its id is read, with id 0.
        if reply.get("id") in (request_id, 0):
            return dict(reply)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

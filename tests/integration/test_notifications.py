"""Notifications through a real gateway process: a run created with `flyte.notify` rules ends (aborted), and the
gateway posts to a webhook receiver, Slack and Teams endpoints and an SMTP receiver that the test runs on
127.0.0.1; a receiver failing with 503 gets the message on a retry, one refusing with 400 is recorded as failed;
the deliveries are on the run's notifications; the run's own record shows no webhook URL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from gateway_api import Api, task_spec
from http_receiver import http_receiver
from processes import GatewayProcess
from waiting import eventually_async

import flyte.notify as notify

pytestmark = pytest.mark.timeout(120)


@dataclass
class Receiver:
    """Webhook endpoints: each call is recorded; `/flaky` answers 503 the first time, `/refuse` always 400."""

    calls: list[tuple[str, str, dict[str, str], object]] = field(default_factory=list)
    flaky_seen: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.calls.append((request.path, request.method, dict(request.headers), body))
        if request.path == "/flaky":
            self.flaky_seen += 1
            if self.flaky_seen == 1:
                return web.Response(status=503, text="try later")
        if request.path == "/refuse":
            return web.Response(status=400, text="no such channel")
        return web.Response(text="ok")


class SmtpReceiver:
    """The least of an SMTP server that smtplib talks to: it keeps each message with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        recipients: list[str] = []
        writer.write(b"220 test ESMTP\r\n")
        while line := await reader.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                writer.write(b"250 test\r\n")
            elif command.startswith("RCPT TO:"):
                recipients.append(line.decode().strip()[8:].strip("<> "))
                writer.write(b"250 ok\r\n")
            elif command == "DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append((recipients, data))
                recipients = []
                writer.write(b"250 queued\r\n")
            elif command == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # MAIL FROM, RSET, NOOP
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, SmtpReceiver, int, int]]:
    receiver, smtp = Receiver(), SmtpReceiver()
    async with http_receiver(receiver.handle) as url:
        server = await asyncio.start_server(smtp.serve, "127.0.0.1", 0)
        smtp_port = server.sockets[0].getsockname()[1]
        try:
            yield receiver, smtp, int(url.rsplit(":", 1)[1]), smtp_port
        finally:
            server.close()


async def test_a_run_that_ends_notifies_every_channel_and_records_the_deliveries(
    receivers: tuple[Receiver, SmtpReceiver, int, int], tmp_path: Path
) -> None:
    receiver, smtp, http_port, smtp_port = receivers
    base = f"http://127.0.0.1:{http_port}"
    gateway = GatewayProcess(
        "memory",
        tmp_path / "home",
        extra_args=["--smtp-url", f"smtp://127.0.0.1:{smtp_port}", "--smtp-from", "flyte@example.com"],
    ).start()
    try:
        rules = [
            notify.Webhook(
                on_phase="aborted", url=f"{base}/hook?key=SECRET", headers={"X-Run": "{{.Run.Name}}"}, method="PUT"
            ),
            notify.Webhook(on_phase="aborted", url=f"{base}/flaky"),
            notify.Webhook(on_phase="aborted", url=f"{base}/refuse"),
            notify.Webhook(on_phase="succeeded", url=f"{base}/never"),
            notify.Slack(on_phase="ABORTED", webhook_url=f"{base}/slack", message="{{.Run.Name}} is {{.Phase}}"),
            notify.Teams(on_phase=("failed", "aborted"), webhook_url=f"{base}/teams"),
            notify.Email(on_phase="aborted", recipients=["oncall@example.com"], bcc=["audit@example.com"]),
        ]
        headers = {"Authorization": f"Bearer {gateway.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            api = Api(gateway.endpoint, session)
            status, body = await api.deploy("notify_it", tasks=[task_spec("notify_it", params=())])
            assert status == 201, body
            request = {
                "project": "default",
                "domain": "development",
                "task": "notify_it.main",
                "notifications": [rule.to_wire().model_dump(mode="json") for rule in rules],
            }
            status, run = await api.call("POST", "/api/v1/runs", request)
            assert status == 201, run
            assert "SECRET" not in json.dumps(run)
            name = run["name"]
            status, body = await api.call("POST", f"/api/v1/runs/{name}/abort", {"reason": "test"})
            assert status == 200, body

            async def settled() -> bool:
                status, record = await api.call("GET", f"/api/v1/runs/{name}/notifications")
                assert status == 200, record
                deliveries = record["deliveries"]
                return len(deliveries) == 6 and all(d["status"] != "pending" for d in deliveries)

            await eventually_async(settled, within=60)
            _, record = await api.call("GET", f"/api/v1/runs/{name}/notifications")
            _, metrics = await api.call("GET", "/metrics")
        assert 'flyte_gateway_events_total{event="notifications_delivered"} 5' in metrics
        assert 'flyte_gateway_events_total{event="notifications_failed"} 1' in metrics
        by_rule = {d["rule"]: d for d in record["deliveries"]}
        assert set(by_rule) == {0, 1, 2, 4, 5, 6}, "the rule on succeeded is not sent"
        assert {i: d["status"] for i, d in by_rule.items()} == {
            0: "delivered",
            1: "delivered",
            2: "failed",
            4: "delivered",
            5: "delivered",
            6: "delivered",
        }
        assert by_rule[1]["attempts"] == 2
        assert (by_rule[2]["attempts"], by_rule[2]["error"]) == (1, f"400 from {base}: no such channel")
        assert by_rule[0]["target"] == f"http://127.0.0.1:{http_port}"
        assert by_rule[6]["target"] == "oncall@example.com"

        calls = {path: (method, headers, body) for path, method, headers, body in receiver.calls}
        method, hook_headers, hook_body = calls["/hook"]
        assert method == "PUT"
        assert hook_headers["X-Run"] == run["name"]
        assert hook_body == {
            "run": run["name"],
            "project": "default",
            "domain": "development",
            "phase": "ABORTED",
            "error": "test",  # the abort reason
        }
        assert calls["/slack"][2] == {"text": f"{run['name']} is ABORTED"}
        teams = calls["/teams"][2]
        assert isinstance(teams, dict)
        assert teams["title"] == f"Run {run['name']} ABORTED"
        [(recipients, data)] = smtp.messages
        assert sorted(recipients) == ["audit@example.com", "oncall@example.com"]
        mail = message_from_bytes(data)
        assert mail["Subject"] == f"Run {run['name']} ABORTED"
        assert mail["To"] == "oncall@example.com"
        assert mail["Bcc"] is None
    finally:
        gateway.stop()

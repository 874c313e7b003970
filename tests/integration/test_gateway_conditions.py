"""Conditions through a gateway process: created on an action, signalled with a value of the declared type, timed
out by the gateway, refused to other projects, and kept across a SIGKILL of the gateway while a worker waits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gateway_api import Api, new_run
from http_receiver import http_receiver
from processes import GatewayProcess
from waiting import async_assert_eventually

from flyte._wire import ConditionCreate
from flyte._worker_link import WorkerLink

pytestmark = pytest.mark.timeout(90)


def _one(run: str, name: str, action: str = "a0") -> str:
    return f"/api/v1/runs/{run}/actions/{action}/conditions/{name}"


def _signal(run: str, name: str) -> str:
    return f"/api/v1/runs/{run}/conditions/{name}/signal"


async def _scoped(api: Api, scopes: list[str], projects: list[str]) -> dict[str, str]:
    status, made = await api.call("POST", "/api/v1/tokens", {"scopes": scopes, "projects": projects})
    assert status == 201, made
    return {"Authorization": f"Bearer {made['token']}"}


async def test_a_condition_takes_one_value_of_its_type(api: Api) -> None:
    run = (await new_run(api))["name"]
    body = {"prompt": "How many?", "data_type": "int"}
    status, record = await api.call("PUT", _one(run, "count"), body)
    assert status == 201, record
    assert record["state"] == "waiting"
    # A re-attempt creating it again gets the same record, not a second condition.
    status, again = await api.call("PUT", _one(run, "count"), body)
    assert (status, again["created_at"]) == (200, record["created_at"])

    status, refused = await api.call("POST", _signal(run, "count"), {"value": "three"})
    assert status == 400
    assert refused["message"] == "condition 'count' takes a int; 'three' is a str"
    status, refused = await api.call("POST", _signal(run, "count"), {"value": True})
    assert status == 400, "a bool is not an int"
    status, missing = await api.call("POST", _signal(run, "nope"), {"value": 3})
    assert status == 404
    assert "no condition 'nope'" in missing["message"]

    status, signalled = await api.call("POST", _signal(run, "count"), {"value": 3})
    assert status == 200, signalled
    assert (signalled["state"], signalled["value"]) == ("signalled", 3)
    status, _ = await api.call("POST", _signal(run, "count"), {"value": 3})
    assert status == 200, "the same signal again is answered as the first"
    status, late = await api.call("POST", _signal(run, "count"), {"value": 4})
    assert status == 409
    assert "already signalled with 3" in late["message"]
    status, listed = await api.call("GET", f"/api/v1/runs/{run}/conditions")
    assert [(c["name"], c["state"], c["value"]) for c in listed] == [("count", "signalled", 3)]


async def test_the_gateway_times_a_condition_out(api: Api) -> None:
    run = (await new_run(api))["name"]
    status, _ = await api.call("PUT", _one(run, "ok"), {"timeout_seconds": 0.5})
    assert status == 201
    started = time.monotonic()
    status, record = await api.call("GET", _one(run, "ok"), wait="20")
    assert status == 200
    assert record["state"] == "timed_out"
    assert time.monotonic() - started < 10, "the long poll ends at the deadline"
    status, refused = await api.call("POST", _signal(run, "ok"), {"value": True})
    assert status == 409
    assert "timed out" in refused["message"]


async def test_a_long_poll_answers_when_signalled(api: Api) -> None:
    run = (await new_run(api))["name"]
    await api.call("PUT", _one(run, "go"), {"data_type": "str"})
    waiting = asyncio.ensure_future(api.call("GET", _one(run, "go"), wait="30"))
    await asyncio.sleep(0)  # the poll is sent before the signal; it must not matter which arrives first
    status, _ = await api.call("POST", _signal(run, "go"), {"value": "ship it"})
    assert status == 200
    status, record = await asyncio.wait_for(waiting, 15)
    assert (status, record["state"], record["value"]) == (200, "signalled", "ship it")


async def test_other_projects_cannot_see_or_signal(api: Api, gateway: GatewayProcess) -> None:
    run = (await new_run(api))["name"]
    await api.call("PUT", _one(run, "approval"), {})
    other = await _scoped(api, ["run"], ["other"])
    deployer = await _scoped(api, ["deploy"], ["default"])
    async with aiohttp.ClientSession() as session:
        status, body = await Api(gateway.endpoint, session).call(
            "POST", _signal(run, "approval"), {"value": True}, headers=other
        )
        assert status == 404, body
        assert "approval" not in body["message"], "nothing about the run's conditions leaks"
        status, body = await Api(gateway.endpoint, session).call(
            "POST", _signal(run, "approval"), {"value": True}, headers=deployer
        )
        assert status == 403, "a deploy token reads the project but may not signal"
        status, body = await Api(gateway.endpoint, session).call(
            "PUT", _one(run, "forged"), {}, headers=await _scoped(api, ["run"], ["default"])
        )
        assert status == 403, "only the action's own worker creates its conditions"


async def test_a_wait_outlives_a_gateway_sigkill(tmp_path: Path) -> None:
    gateway = GatewayProcess(f"sqlite:{tmp_path / 'state.db'}", tmp_path / "home").start()
    link: WorkerLink | None = None
    try:
        headers = {"Authorization": f"Bearer {gateway.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            api = Api(gateway.endpoint, session)
            run = (await new_run(api))["name"]
            # The admin token stands in for the worker's: the link's long polls are what is tested.
            link = WorkerLink(gateway.endpoint, gateway.token, run)
            await link.connect()
            await link.create_condition("a0", "approval", ConditionCreate(data_type="bool"))
            waiting: asyncio.Future[Any] = asyncio.ensure_future(link.wait_condition("a0", "approval"))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            gateway.kill()
            gateway.start()  # the same port and store, as a restarted gateway
        async with aiohttp.ClientSession(headers=headers) as session:
            status, _ = await Api(gateway.endpoint, session).call("POST", _signal(run, "approval"), {"value": False})
            assert status == 200
            record = await asyncio.wait_for(waiting, 30)
            assert (record.state, record.value) == ("signalled", False)
    finally:
        if link is not None:
            await link.close()
        gateway.stop()


async def _running(api: Api) -> str:
    run = (await new_run(api))["name"]
    status, body = await api.call("POST", f"/api/v1/runs/{run}/actions/a0/events", {"phase": "running", "attempt": 1})
    assert status == 200, body
    return str(run)


async def test_a_suspended_attempt_is_queued_until_its_signal(api: Api) -> None:
    run = await _running(api)
    await api.call("PUT", _one(run, "ok"), {"timeout_seconds": 3600})
    suspend = f"/api/v1/runs/{run}/actions/a0/suspend"
    traces = {"k": {"kind": "json", "payload_b64": "MQ=="}}
    status, answer = await api.call("POST", suspend, {"attempt": 1, "condition": "ok", "traces": traces})
    assert (status, answer) == (200, {"suspended": True, "condition": None})
    status, action = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
    assert (action["phase"], action["attempts"], action["cluster"]) == ("queued", 1, None)
    assert action["waiting"] == "suspended: waiting for condition 'ok'"
    assert action["user_failures"] == action["system_failures"] == 0
    status, condition = await api.call("GET", _one(run, "ok"))
    assert action["not_before"] == condition["deadline"], "it is placed again at the timeout, to time out"

    status, stale = await api.call("POST", suspend, {"attempt": 1, "condition": "ok"})
    assert (status, stale["code"]) == (409, "stale_attempt"), "an ended attempt never changes"

    before = time.time()
    status, _ = await api.call("POST", _signal(run, "ok"), {"value": True})
    assert status == 200
    status, action = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
    assert action["phase"] == "queued"
    assert action["waiting"] is None
    assert before <= action["not_before"] <= time.time(), "the signal made it due now"


async def test_a_condition_signalled_first_is_answered_instead_of_suspending(api: Api) -> None:
    run = await _running(api)
    await api.call("PUT", _one(run, "ok"), {"data_type": "float"})
    await api.call("POST", _signal(run, "ok"), {"value": 2})
    status, answer = await api.call("POST", f"/api/v1/runs/{run}/actions/a0/suspend", {"attempt": 1, "condition": "ok"})
    assert status == 200
    assert answer["suspended"] is False
    assert (answer["condition"]["state"], answer["condition"]["value"]) == ("signalled", 2.0)
    status, action = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
    assert action["phase"] == "running"


async def test_a_durable_sleep_suspends_until_it_ends(api: Api) -> None:
    run = await _running(api)
    until = time.time() + 600
    status, answer = await api.call("POST", f"/api/v1/runs/{run}/actions/a0/suspend", {"attempt": 1, "until": until})
    assert (status, answer["suspended"]) == (200, True)
    status, action = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
    assert (action["phase"], action["not_before"]) == ("queued", until)
    assert action["waiting"].startswith("suspended: durable sleep until ")
    status, refused = await api.call("POST", f"/api/v1/runs/{run}/actions/a0/suspend", {"attempt": 1})
    assert status == 400
    assert "give either condition or until" in refused["message"]


async def test_a_suspended_action_is_woken_by_a_signal_after_a_gateway_sigkill(tmp_path: Path) -> None:
    gateway = GatewayProcess(f"sqlite:{tmp_path / 'state.db'}", tmp_path / "home").start()
    try:
        headers = {"Authorization": f"Bearer {gateway.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            api = Api(gateway.endpoint, session)
            run = await _running(api)
            await api.call("PUT", _one(run, "ok"), {})
            status, answer = await api.call(
                "POST", f"/api/v1/runs/{run}/actions/a0/suspend", {"attempt": 1, "condition": "ok"}
            )
            assert (status, answer["suspended"]) == (200, True)
        gateway.kill()
        gateway.start()
        async with aiohttp.ClientSession(headers=headers) as session:
            api = Api(gateway.endpoint, session)
            status, action = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
            assert action["waiting"] == "suspended: waiting for condition 'ok'"
            assert action["not_before"] > time.time() + 86400, "no timeout: only the signal wakes it"
            status, _ = await api.call("POST", _signal(run, "ok"), {"value": True})
            assert status == 200
            status, action = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
            assert (action["phase"], action["waiting"]) == ("queued", None)
            assert action["not_before"] <= time.time()
    finally:
        gateway.stop()


async def test_a_conditions_webhook_is_posted_once_with_its_callback(api: Api) -> None:
    received: list[dict[str, Any]] = []
    flaky = {"left": 1}

    async def hook(request: web.Request) -> web.Response:
        if request.path == "/flaky" and flaky["left"]:
            flaky["left"] -= 1
            return web.Response(status=503)
        received.append({"path": request.path, **await request.json()})
        return web.Response(text="ok")

    async with http_receiver(hook) as url:
        port = int(url.rsplit(":", 1)[1])
        run = (await new_run(api))["name"]
        payload = {"text": "Approve at {callback_uri}", "links": ["{callback_uri}"], "n": 1}
        body = {"prompt": "Ship?", "webhook": {"url": f"http://127.0.0.1:{port}/flaky", "payload": payload}}
        status, record = await api.call("PUT", _one(run, "ship"), body)
        assert status == 201, record
        assert "webhook" not in record, "the webhook URL is not on the record every reader of the run sees"
        callback = f"{api.endpoint}{_signal(run, 'ship')}"
        await async_assert_eventually(lambda: bool(received), within=20)
        # The receiver's 503 was retried; the payload's `{callback_uri}` is the condition's signal URL.
        assert received == [
            {"path": "/flaky", "text": f"Approve at {callback}", "links": [callback], "n": 1},
        ]
        # A re-attempt creating it again sends nothing; a condition without a payload gets the default one.
        assert (await api.call("PUT", _one(run, "ship"), body))[0] == 200
        plain = {"data_type": "int", "webhook": {"url": f"http://127.0.0.1:{port}/plain"}}
        assert (await api.call("PUT", _one(run, "count"), plain))[0] == 201
        await async_assert_eventually(lambda: len(received) == 2, within=20)
        assert received[1] == {
            "path": "/plain",
            "run": run,
            "action": "a0",
            "condition": "count",
            "prompt": "Approve?",
            "data_type": "int",
            "callback_uri": f"{api.endpoint}{_signal(run, 'count')}",
        }
        # The callback is the signal endpoint: a receiver holding a token may answer through it.
        async with api.session.post(callback, json={"value": True}) as answered:
            assert answered.status == 200
        status, done = await api.call("GET", _one(run, "ship"))
        assert (done["state"], done["value"]) == ("signalled", True)
        assert len(received) == 2

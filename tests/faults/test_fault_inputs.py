"""Fault matrix rows 9 and 13-15: bad input, oversized input, bad credentials and duplicate submissions, against
a real gateway on etcd. Each refusal is a 4xx with `{code, message}` and leaves the store's revision where it was:
nothing was written."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
from etcd_process import EtcdProcess
from federation import Federation, call, require_etcd

import flyte
from flyte._wire import ActionEvent, AgentHello, CloseCode, ClusterRecord, Phase

pytestmark = pytest.mark.timeout(120)

PROGRAM = """
import flyte

env = flyte.TaskEnvironment("faults-api")


@env.task
async def echo(x: int) -> int:
    return x
"""
TASK = "faults-api.echo"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """One gateway for the module's rows: they only talk to its API, and no agent runs anything."""
    require_etcd()
    root = tmp_path_factory.mktemp("api")
    server = EtcdProcess(root / "etcd-data").start()
    fed = Federation(root / "fed", server)
    fed.root.mkdir()
    try:
        fed.start_gateway()
        yield fed
    finally:
        fed.close()
        server.stop()


@pytest.fixture
def deployed(api: Federation) -> Federation:
    api.connect()
    program = api.load("faults_api_program", PROGRAM)
    flyte.deploy(program.env)
    return api


def revision(fed: Federation) -> int:
    status, answer = call(fed, "GET", "/readyz", token=None)
    assert status == 200
    return int(answer["revision"])


def value(x: Any, pad: int = 0) -> dict[str, str]:
    text = json.dumps(x) + " " * pad
    return {"kind": "json", "digest": hashlib.sha256(text.encode()).hexdigest(), "json_text": text}


def run_request(**fields: Any) -> dict[str, Any]:
    return {"project": "default", "domain": "development", "task": TASK, "inputs": {"x": value(1)}, **fields}


def refused(
    fed: Federation, method: str, path: str, body: bytes | None, status: int, token: str | None = "admin"
) -> str:
    """Send a request that must be refused with `status`, and check it wrote nothing; returns the error code."""
    before = revision(fed)
    got, answer = call(fed, method, path, body, token)
    assert got == status, f"{method} {path}: {got} {answer}"
    assert revision(fed) == before, f"{method} {path} was refused ({answer['code']}) but wrote to the store"
    return str(answer["code"])


# -- row 9: idempotency -----------------------------------------------------------------------------------------


def test_concurrent_submissions_with_one_idempotency_key_make_one_run(deployed: Federation) -> None:
    body = json.dumps(run_request(idempotency_key="faults-row-9")).encode()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: call(deployed, "POST", "/api/v1/runs", body), range(10)))
    assert {status for status, _ in answers} <= {200, 201}, answers
    assert [status for status, _ in answers].count(201) == 1, "exactly one submission created the run"
    assert len({answer["name"] for _, answer in answers}) == 1
    _, runs = call(deployed, "GET", "/api/v1/runs?limit=1000")
    assert sum(r["idempotency_key"] == "faults-row-9" for r in runs) == 1
    other = json.dumps(run_request(idempotency_key="faults-row-9", inputs={"x": value(2)})).encode()
    assert refused(deployed, "POST", "/api/v1/runs", other, 409) == "idempotency_mismatch"


# -- row 13: size limits ----------------------------------------------------------------------------------------


def test_inputs_over_the_inline_limit_are_refused_before_any_write(deployed: Federation) -> None:
    big = json.dumps(run_request(inputs={"x": value(1, pad=1024 * 1024 + 1)})).encode()
    assert refused(deployed, "POST", "/api/v1/runs", big, 413) == "value_too_large"


def test_a_body_over_the_limit_is_refused_before_any_write(deployed: Federation) -> None:
    huge = json.dumps(run_request(labels={"k": "v"}, custom_context={"c": "x" * (17 * 1024 * 1024)})).encode()
    assert refused(deployed, "POST", "/api/v1/runs", huge, 413) == "too_large"


# -- row 14: malformed input ------------------------------------------------------------------------------------

BAD_BODIES = {
    "empty": b"",
    "malformed": b'{"project": "default",',
    "not_utf8": b"\xff\xfe{}",
    "wrong_types": json.dumps(run_request(project=5, inputs=[1, 2])).encode(),
    "unknown_field": json.dumps(run_request(surprise=True)).encode(),
    "deeply_nested": b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "nested_under_the_limit": json.dumps(run_request(labels={"k": json.loads("[" * 500 + "]" * 500)})).encode(),
    "not_an_object": b"[1, 2, 3]",
}
POSTS = ["/api/v1/runs", "/api/v1/deployments", "/api/v1/tokens", "/api/v1/runs/r1/abort"]


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_malformed_input_is_a_4xx_that_writes_nothing(api: Federation, kind: str, path: str) -> None:
    before = revision(api)
    status, answer = call(api, "POST", path, BAD_BODIES[kind])
    assert 400 <= status < 500, f"{kind} to {path}: {status} {answer}"
    assert answer["message"]
    assert revision(api) == before


async def say_hello(endpoint: str, token: str, hello: AgentHello) -> int | None:
    """Open an agent session with `hello`; the close code the gateway answers with."""
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.ws_connect(endpoint + "/api/v1/agents/connect") as ws,
    ):
        await ws.send_str(hello.model_dump_json())
        message = await ws.receive(timeout=10)
        assert message.type is aiohttp.WSMsgType.CLOSE
        return ws.close_code


# -- row 15: credentials ----------------------------------------------------------------------------------------


def test_missing_invalid_expired_and_wrong_scope_tokens_change_nothing(deployed: Federation) -> None:
    body = json.dumps(run_request()).encode()
    expired = deployed.mint("run", expires_in=-1.0)
    deploy_only = deployed.mint("deploy")
    other_project = deployed.mint("run", projects=["other"])
    assert refused(deployed, "POST", "/api/v1/runs", body, 401, token=None) == "unauthorized"
    assert refused(deployed, "POST", "/api/v1/runs", body, 401, token="fft_not-a-token") == "unauthorized"
    assert refused(deployed, "POST", "/api/v1/runs", body, 401, token=expired) == "unauthorized"
    assert refused(deployed, "POST", "/api/v1/runs", body, 403, token=deploy_only) == "forbidden"
    assert refused(deployed, "POST", "/api/v1/runs", body, 403, token=other_project) == "forbidden"
    assert refused(deployed, "GET", "/api/v1/runs", None, 401, token=expired) == "unauthorized"


def test_an_agent_cannot_speak_for_another_cluster(deployed: Federation) -> None:
    status, run = call(deployed, "POST", "/api/v1/runs", json.dumps(run_request()).encode())
    assert status == 201
    events = f"/api/v1/runs/{run['name']}/actions/a0/events"
    # The root is placed on cluster b (as the dispatcher would, had b an agent).
    placed = ActionEvent(phase=Phase.PLACED, attempt=1, cluster="b", epoch=1)
    assert call(deployed, "POST", events, placed.model_dump_json().encode())[0] == 200
    agent_a = deployed.mint("agent:a")
    as_b = ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="b", epoch=1).model_dump_json().encode()
    assert refused(deployed, "POST", events, as_b, 403, token=agent_a) == "forbidden"
    as_a = ActionEvent(phase=Phase.RUNNING, attempt=1, cluster="a", epoch=1).model_dump_json().encode()
    assert refused(deployed, "POST", events, as_a, 403, token=agent_a) == "forbidden"
    # Nor can it open cluster b's session.
    before = revision(deployed)
    hello = AgentHello(cluster=ClusterRecord(name="b", region="r", cloud="c", capacity={"cpu": 1.0}))
    assert asyncio.run(say_hello(deployed.endpoint, agent_a, hello)) == CloseCode.FORBIDDEN
    assert revision(deployed) == before
    status, action = call(deployed, "GET", f"/api/v1/runs/{run['name']}/actions/a0")
    assert (action["phase"], action["cluster"]) == ("placed", "b")

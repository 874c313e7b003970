"""Finding 1: code execution through an input. A `pickle` value for an input declared `int` was accepted and the
worker unpickled it. Now a type with a JSON form is only ever JSON: the gateway refuses a pickle for it (and a
value whose digest is not its bytes' sha256) at submission, and the SDK's decoder refuses one too."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tenants import Tenants, json_value, pickle_value
from waiting import assert_eventually

from flyte._codec import EncodedValue, ValueCodec, encoded
from flyte.errors import ValueEncodingError

pytestmark = pytest.mark.timeout(120)


def _run(name: str, task: str, inputs: dict[str, object]) -> dict[str, object]:
    return {"project": "alpha", "domain": "development", "task": f"sec_tasks.{task}", "name": name, "inputs": inputs}


def test_a_pickled_value_for_an_int_input_is_refused_and_never_unpickled(deployed: Tenants, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    name = f"pickle-{uuid.uuid4().hex[:8]}"
    status, answer = deployed.call("POST", "/api/v1/runs", _run(name, "add_one", {"x": pickle_value(marker)}))
    assert (status, answer["code"]) == (400, "value_kind_mismatch")
    assert "'x'" in answer["message"]
    assert "int" in answer["message"]
    assert deployed.call("GET", f"/api/v1/runs/{name}?project=alpha")[0] == 404, "no run was written"
    assert not marker.exists(), "nothing unpickled the payload"


def test_a_value_whose_digest_is_not_its_bytes_is_refused(deployed: Tenants) -> None:
    name = f"forged-{uuid.uuid4().hex[:8]}"
    forged = json_value("1000", digest_of="7")
    status, answer = deployed.call("POST", "/api/v1/runs", _run(name, "add_one", {"x": forged}))
    assert (status, answer["code"]) == (400, "digest_mismatch")
    assert deployed.call("GET", f"/api/v1/runs/{name}?project=alpha")[0] == 404


def test_json_that_is_not_the_declared_scalar_is_refused(deployed: Tenants) -> None:
    name = f"notint-{uuid.uuid4().hex[:8]}"
    status, answer = deployed.call("POST", "/api/v1/runs", _run(name, "add_one", {"x": json_value('"seven"')}))
    assert (status, answer["code"]) == (400, "invalid_value")
    assert deployed.call("GET", f"/api/v1/runs/{name}?project=alpha")[0] == 404


def test_a_blob_reference_names_its_own_digest(deployed: Tenants) -> None:
    """A reference is `blob:<digest>`: never a path on a worker's host, nor another value's blob."""
    digest = hashlib.sha256(b"7").hexdigest()
    for ref in ("file:///etc/passwd", f"blob:{hashlib.sha256(b'8').hexdigest()}"):
        name = f"ref-{uuid.uuid4().hex[:8]}"
        value = {"kind": "json", "digest": digest, "ref": ref}
        status, answer = deployed.call("POST", "/api/v1/runs", _run(name, "add_one", {"x": value}))
        assert (status, answer["code"]) == (400, "invalid_value"), ref
        assert deployed.call("GET", f"/api/v1/runs/{name}?project=alpha")[0] == 404


def test_inputs_over_the_tasks_inline_limit_are_refused(deployed: Tenants) -> None:
    name = f"big-{uuid.uuid4().hex[:8]}"
    text = json.dumps("x" * 100)
    status, answer = deployed.call("POST", "/api/v1/runs", _run(name, "small", {"text": json_value(text)}))
    assert (status, answer["code"]) == (413, "inline_io_too_large")
    assert deployed.call("GET", f"/api/v1/runs/{name}?project=alpha")[0] == 404
    status, answer = deployed.call("POST", "/api/v1/runs", _run(name, "small", {"text": json_value('"ok"')}))
    assert status == 201, answer


def test_a_pickled_child_input_is_refused_too(deployed: Tenants, tmp_path: Path) -> None:
    release, marker = tmp_path / "release", tmp_path / "pwned"
    name = f"parent-{uuid.uuid4().hex[:8]}"
    path = json_value(json.dumps(str(release)))
    status, run = deployed.call("POST", "/api/v1/runs", _run(name, "hold", {"path": path}))
    assert status == 201, run
    name = run["name"]  # the run's identity: its chosen name is alpha's, reached with ?project=alpha
    child = {"name": "a" + uuid.uuid4().hex[:20], "parent": "a0", "task": "sec_tasks.add_one"}
    body = {**child, "inputs": {"x": pickle_value(marker)}}
    # A run token may not submit children at all (only the parent's worker may); even a token that may (admin's)
    # cannot pass a pickle for an `int`.
    status, answer = deployed.call("POST", f"/api/v1/runs/{name}/actions", body)
    assert (status, answer["code"]) == (403, "forbidden")
    status, answer = deployed.call("POST", f"/api/v1/runs/{name}/actions", body, as_="admin")
    assert (status, answer["code"]) == (400, "value_kind_mismatch")
    assert deployed.call("GET", f"/api/v1/runs/{name}/actions/{child['name']}")[0] == 404, "no child was written"
    release.touch()
    assert_eventually(lambda: deployed.call("GET", f"/api/v1/runs/{name}")[1]["phase"] == "succeeded", timeout=60)
    assert not marker.exists()


def test_a_pickled_result_for_an_int_output_is_refused(deployed: Tenants, tmp_path: Path) -> None:
    """A result is checked like an input: a pickle reported for `hold`'s `int` output is refused and the action runs
    on to its own result. (The reporter here is a client's `run` token on the worker socket; a worker token gets the
    same refusal from the value check.)"""
    release, marker = tmp_path / "release", tmp_path / "pwned"
    path = json_value(json.dumps(str(release)))
    status, run = deployed.call("POST", "/api/v1/runs", _run(f"result-{uuid.uuid4().hex[:8]}", "hold", {"path": path}))
    assert status == 201, run
    name = run["name"]

    def root() -> dict[str, Any]:
        return dict(deployed.call("GET", f"/api/v1/runs/{name}/actions/a0")[1])

    assert_eventually(lambda: root()["phase"] == "running", timeout=60)
    event = {"phase": "succeeded", "attempt": 1, "output": pickle_value(marker)}
    reply = asyncio.run(_report(deployed, {"type": "report", "id": 1, "run": name, "action": "a0", "event": event}))
    assert reply["type"] == "error"
    assert reply["code"] in ("value_kind_mismatch", "forbidden"), reply
    assert root()["phase"] == "running", "the forged result changed nothing"
    release.touch()
    assert_eventually(lambda: root()["phase"] == "succeeded", timeout=60)
    assert root()["output"]["json_text"] == "1"
    assert not marker.exists()


async def _report(tenants: Tenants, message: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {tenants.tokens['alpha']}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.ws_connect(tenants.fed.endpoint + "/api/v1/workers/connect") as ws,
    ):
        await ws.send_str(json.dumps(message))
        return dict(await ws.receive_json(timeout=30))


def test_the_sdk_decoder_refuses_a_pickle_for_a_json_typed_annotation(tmp_path: Path) -> None:
    """Defence in depth: a worker given such a value (by a gateway without the check) does not unpickle it."""
    marker = tmp_path / "pwned"
    wire = pickle_value(marker)
    value = EncodedValue("pickle", wire["digest"], payload=base64.b64decode(wire["pickle_b64"]))
    with pytest.raises(ValueEncodingError, match="refusing a pickled value"):
        ValueCodec(int, "input 'x' of task sec.t").decode(value)
    assert not marker.exists()
    assert ValueCodec(int, "input 'x'").decode(encoded("json", b"7")) == 7

"""The gateway's HTTP API against a real gateway process on the embedded store: registry, runs, actions, the state
machine, watches, auth, and bad input (every kind answered 4xx with `{code, message}` and no state change)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_api import Api, child, new_run, task_spec, unique, value
from processes import GatewayProcess

pytestmark = pytest.mark.timeout(60)


# -- the registry --------------------------------------------------------------------------------------------------


async def test_deploy_get_list_and_versions_are_immutable(api: Api) -> None:
    env = unique("reg")
    status, versions = await api.deploy(env, "v1")
    assert status == 201
    assert [v["spec"]["name"] for v in versions] == [f"{env}.main"]

    status, _ = await api.deploy(env, "v1")
    assert status == 200, "the same version with the same content is a no-op"

    status, body = await api.deploy(env, "v1", [task_spec(env, params=("x", "y"))])
    assert status == 409
    assert body["code"] == "version_exists"

    status, _ = await api.deploy(env, "v2", [task_spec(env, params=("x", "y"))])
    assert status == 201
    status, latest = await api.call("GET", f"/api/v1/tasks/{env}.main")
    assert (status, latest["version"]) == (200, "v2")
    status, first = await api.call("GET", f"/api/v1/tasks/{env}.main", version="v1")
    assert (status, [p["name"] for p in first["spec"]["inputs"]]) == (200, ["x"])
    status, all_versions = await api.call("GET", f"/api/v1/tasks/{env}.main/versions")
    assert [v["version"] for v in all_versions] == ["v1", "v2"]
    status, tasks = await api.call("GET", "/api/v1/tasks")
    assert {(t["spec"]["name"], t["version"]) for t in tasks} >= {(f"{env}.main", "v2")}


async def test_the_same_code_deployed_from_another_checkout_is_the_same_version(api: Api) -> None:
    env = unique("roots")
    status, _ = await api.deploy(env, "v1", [{**task_spec(env), "source_root": "/home/ana/project"}])
    assert status == 201
    status, _ = await api.deploy(env, "v1", [{**task_spec(env), "source_root": "/builds/ci/project"}])
    assert status == 200, "where the files were deployed from is not content"
    status, kept = await api.call("GET", f"/api/v1/tasks/{env}.main", version="v1")
    assert (status, kept["spec"]["source_root"]) == (200, "/home/ana/project")


async def test_head_on_a_blob_says_whether_it_is_stored(api: Api) -> None:
    data = unique("bundle").encode()
    digest = hashlib.sha256(data).hexdigest()
    assert (await api.call("HEAD", f"/api/v1/blobs/{digest}"))[0] == 404
    assert (await api.call("PUT", f"/api/v1/blobs/{digest}", raw=data))[0] == 201
    assert (await api.call("HEAD", f"/api/v1/blobs/{digest}"))[0] == 200
    assert (await api.call("HEAD", "/api/v1/blobs/not-a-digest"))[0] == 400


async def test_deploy_needs_its_bundle_uploaded_first(api: Api) -> None:
    env = unique("nobundle")
    body = {
        "project": "default",
        "domain": "development",
        "env": env,
        "version": "v1",
        "bundle_digest": "f" * 64,
        "tasks": [task_spec(env)],
    }
    before = await api.revision()
    status, answer = await api.call("POST", "/api/v1/deployments", body)
    assert (status, answer["code"]) == (400, "missing_bundle")
    assert await api.revision() == before


async def test_unknown_task_or_version_is_404(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/tasks/nowhere.main")
    assert (status, body["code"]) == (404, "not_found")
    env = unique("known")
    await api.deploy(env)
    status, body = await api.call("GET", f"/api/v1/tasks/{env}.main", version="v9")
    assert status == 404
    before = await api.revision()
    status, body = await api.call(
        "POST", "/api/v1/runs", {"project": "default", "domain": "development", "task": f"{env}.main", "version": "v9"}
    )
    assert status == 404
    assert await api.revision() == before


# -- runs, actions and the state machine ---------------------------------------------------------------------------


async def test_create_run_makes_a_queued_root_action(api: Api) -> None:
    run = await new_run(api, labels={"team": "ml"})
    assert run["phase"] == "queued"
    status, actions = await api.call("GET", f"/api/v1/runs/{run['name']}/actions")
    assert status == 200
    assert [(a["name"], a["phase"], a["parent"]) for a in actions] == [("a0", "queued", None)]
    status, runs = await api.call("GET", "/api/v1/runs", label="team=ml")
    assert run["name"] in [r["name"] for r in runs]
    status, runs = await api.call("GET", "/api/v1/runs", phase="succeeded")
    assert run["name"] not in [r["name"] for r in runs]


async def test_ten_concurrent_creates_with_one_idempotency_key_make_one_run(api: Api) -> None:
    env = unique("idem")
    await api.deploy(env)
    body = {
        "project": "default",
        "domain": "development",
        "task": f"{env}.main",
        "inputs": {"x": value(1)},
        "idempotency_key": unique("key"),
    }
    answers = await asyncio.gather(*(api.call("POST", "/api/v1/runs", body) for _ in range(10)))
    names = {answer["name"] for _, answer in answers}
    assert len(names) == 1
    assert sorted(status for status, _ in answers).count(201) == 1

    other = {**body, "inputs": {"x": value(2)}}
    status, answer = await api.call("POST", "/api/v1/runs", other)
    assert (status, answer["code"]) == (409, "idempotency_mismatch")


async def test_child_submission_is_idempotent_by_name(api: Api) -> None:
    run = await new_run(api)
    request = child(env=run["task"].split(".")[0])
    status, first = await api.call("POST", f"/api/v1/runs/{run['name']}/actions", request)
    assert status == 201
    status, second = await api.call("POST", f"/api/v1/runs/{run['name']}/actions", request)
    assert status == 200
    assert second["created_at"] == first["created_at"]
    status, body = await api.call("POST", f"/api/v1/runs/{run['name']}/actions", {**request, "inputs": {"x": value(9)}})
    assert (status, body["code"]) == (409, "name_collision")
    status, children = await api.call("GET", f"/api/v1/runs/{run['name']}/actions", parent="a0")
    assert [c["name"] for c in children] == [request["name"]]


async def event(api: Api, run: str, action: str, phase: str, attempt: int = 1, **extra: Any) -> tuple[int, Any]:
    return await api.call(
        "POST", f"/api/v1/runs/{run}/actions/{action}/events", {"phase": phase, "attempt": attempt, **extra}
    )


async def test_state_machine_moves_forward_only_and_ends_the_run(api: Api) -> None:
    run = (await new_run(api))["name"]
    assert (await event(api, run, "a0", "placed", cluster="east"))[0] == 200
    status, running = await event(api, run, "a0", "running", cluster="east")
    assert (status, running["phase"], running["attempts"]) == (200, "running", 1)
    status, again = await event(api, run, "a0", "running", cluster="east")
    assert (status, again["phase"]) == (200, "running"), "a duplicate event is answered, not applied twice"
    status, body = await event(api, run, "a0", "succeeded", attempt=2, output=value(5))
    assert (status, body["code"]) == (409, "stale_attempt")
    status, done = await event(api, run, "a0", "succeeded", output=value(5))
    assert (status, done["phase"]) == (200, "succeeded")
    status, late = await event(api, run, "a0", "running")
    assert (status, late["phase"], late["started_at"]) == (200, "succeeded", running["started_at"]), (
        "a late start of the ended attempt changes nothing once its start is known"
    )
    status, body = await event(api, run, "a0", "running", attempt=2)
    assert (status, body["code"]) == (409, "stale_attempt")
    status, summary = await api.call("GET", f"/api/v1/runs/{run}")
    assert (summary["phase"], json.loads(summary["output"]["json_text"])) == ("succeeded", 5)


async def test_a_result_carries_its_start_and_a_late_start_changes_nothing(api: Api) -> None:
    # A warm pool worker reports its result at once, with when it began; its agent's `running` follows in the next
    # batch and must not change the ended record (the fault matrix holds every ended record unchanged).
    run = (await new_run(api))["name"]
    assert (await event(api, run, "a0", "placed", cluster="east"))[0] == 200
    status, placed = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
    started = placed["created_at"] + 0.001
    status, done = await event(api, run, "a0", "succeeded", cluster="east", output=value(5), started_at=started)
    assert (status, done["phase"]) == (200, "succeeded")
    assert done["started_at"] == pytest.approx(started)
    before = await api.revision()
    status, late = await event(api, run, "a0", "running", cluster="east", at=started + 1)
    assert (status, late["phase"], late["started_at"]) == (200, "succeeded", pytest.approx(started))
    assert await api.revision() == before, "an ended record never changes"
    status, body = await event(api, run, "a0", "running", cluster="west", at=started)
    assert (status, body["code"]) == (403, "wrong_cluster")


async def test_a_retry_is_a_new_attempt(api: Api) -> None:
    run = (await new_run(api))["name"]
    await event(api, run, "a0", "running")
    status, requeued = await event(api, run, "a0", "queued")
    assert (status, requeued["phase"]) == (200, "queued")
    status, body = await event(api, run, "a0", "running", attempt=1)
    assert (status, body["code"]) == (409, "stale_attempt"), "a late event of the old attempt is refused"
    status, second = await event(api, run, "a0", "running", attempt=2)
    assert (status, second["attempts"]) == (200, 2)


async def test_failed_event_must_carry_its_error(api: Api) -> None:
    run = (await new_run(api))["name"]
    await event(api, run, "a0", "running")
    before = await api.revision()
    status, _body = await event(api, run, "a0", "failed")
    assert status == 400
    assert await api.revision() == before
    error = {"error_type": "RuntimeUserError", "code": "ValueError", "kind": "user", "message": "bad"}
    status, failed = await event(api, run, "a0", "failed", error=error)
    assert (status, failed["error"]["code"]) == (200, "ValueError")
    status, summary = await api.call("GET", f"/api/v1/runs/{run}")
    assert (summary["phase"], summary["error"]["message"]) == ("failed", "bad")


async def test_action_count_follows_the_actions_created(api: Api) -> None:
    run = await new_run(api)
    name, env = run["name"], run["task"].split(".")[0]
    assert run["action_count"] == 1
    children = [child(env=env, x=i) for i in range(3)]
    for request in children:
        assert (await api.call("POST", f"/api/v1/runs/{name}/actions", request))[0] == 201
    assert (await api.call("POST", f"/api/v1/runs/{name}/actions", children[0]))[0] == 200, "a resubmission"

    async def counted() -> int:
        return int((await api.call("GET", f"/api/v1/runs/{name}"))[1]["action_count"])

    deadline = asyncio.get_running_loop().time() + 10
    while (count := await counted()) != 4:  # counted in the background, a quarter second at a time
        assert asyncio.get_running_loop().time() < deadline, f"action_count is {count}, not 4"
        await asyncio.sleep(0.05)
    # Counted the moment the run ends, too: what is not yet counted rides in the run's final write.
    assert (await api.call("POST", f"/api/v1/runs/{name}/actions", child(env=env, x=3)))[0] == 201
    await event(api, name, "a0", "running")
    await event(api, name, "a0", "succeeded", output=value(1))
    status, summary = await api.call("GET", f"/api/v1/runs/{name}")
    assert (status, summary["phase"], summary["action_count"]) == (200, "succeeded", 5)
    status, listed = await api.call("GET", "/api/v1/runs")
    assert next(r["action_count"] for r in listed if r["name"] == name) == 5


async def test_abort_cascades_to_every_live_action(api: Api) -> None:
    run = await new_run(api)
    name, env = run["name"], run["task"].split(".")[0]
    children = [child(env=env, x=i) for i in range(3)]
    for request in children:
        assert (await api.call("POST", f"/api/v1/runs/{name}/actions", request))[0] == 201
    await event(api, name, children[0]["name"], "running")
    await event(api, name, children[1]["name"], "running")
    await event(api, name, children[1]["name"], "succeeded", output=value(1))

    status, aborted = await api.call("POST", f"/api/v1/runs/{name}/abort", {"reason": "test says stop"})
    assert (status, aborted["phase"], aborted["abort_reason"]) == (200, "aborted", "test says stop")
    status, actions = await api.call("GET", f"/api/v1/runs/{name}/actions")
    phases = {a["name"]: a["phase"] for a in actions}
    assert phases == {
        "a0": "aborted",
        children[0]["name"]: "aborted",
        children[1]["name"]: "succeeded",
        children[2]["name"]: "aborted",
    }
    status, body = await api.call("POST", f"/api/v1/runs/{name}/actions", child(env=env, x=7))
    assert (status, body["code"]) == (409, "run_ended")


# -- the watch stream --------------------------------------------------------------------------------------------


async def test_watch_sends_snapshot_marker_then_changes_and_resumes(api: Api) -> None:
    run = await new_run(api)
    name, env = run["name"], run["task"].split(".")[0]
    first = child(env=env, x=1)
    await api.call("POST", f"/api/v1/runs/{name}/actions", first)
    url = f"{api.endpoint}/api/v1/runs/{name}/watch"
    async with api.session.ws_connect(url) as ws:
        snapshot = json.loads((await ws.receive(timeout=10)).data)
        assert snapshot["type"] == "snapshot"
        assert {a["name"] for a in snapshot["actions"]} == {"a0", first["name"]}
        marker = json.loads((await ws.receive(timeout=10)).data)
        assert marker["type"] == "marker"
        await event(api, name, first["name"], "running")
        change = json.loads((await ws.receive(timeout=10)).data)
        assert change["type"] == "change"
        assert [(a["name"], a["phase"]) for a in change["actions"]] == [(first["name"], "running")]
        resume_from = change["revision"] + 1

    # Changes made while disconnected arrive after a reconnect from the last revision seen.
    await event(api, name, first["name"], "succeeded", output=value(1))
    second = child(env=env, x=2)
    await api.call("POST", f"/api/v1/runs/{name}/actions", second)
    async with api.session.ws_connect(f"{url}?from_revision={resume_from}") as ws:
        seen: list[tuple[str, str]] = []
        while len(seen) < 2:
            message = json.loads((await ws.receive(timeout=10)).data)
            assert message["type"] == "change"
            seen += [(a["name"], a["phase"]) for a in message["actions"]]
    assert seen == [(first["name"], "succeeded"), (second["name"], "queued")]


async def test_watch_filters_by_parent(api: Api) -> None:
    run = await new_run(api)
    name, env = run["name"], run["task"].split(".")[0]
    async with api.session.ws_connect(f"{api.endpoint}/api/v1/runs/{name}/watch?parent=a0") as ws:
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "marker", "a0 has no children yet"
        await event(api, name, "a0", "running")
        request = child(env=env)
        await api.call("POST", f"/api/v1/runs/{name}/actions", request)
        change = json.loads((await ws.receive(timeout=10)).data)
        assert [a["name"] for a in change["actions"]] == [request["name"]], "the root's own change is filtered out"


# -- auth ----------------------------------------------------------------------------------------------------------


async def test_missing_or_wrong_token_is_401(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{gateway.endpoint}/api/v1/tasks") as response:
            assert response.status == 401
            assert (await response.json())["code"] == "unauthorized"
        headers = {"Authorization": "Bearer fft_not-a-token"}
        async with anonymous.get(f"{gateway.endpoint}/api/v1/tasks", headers=headers) as response:
            assert response.status == 401


async def test_wrong_scope_or_project_is_403(api: Api, gateway: GatewayProcess) -> None:
    status, made = await api.call("POST", "/api/v1/tokens", {"scopes": ["run"], "projects": ["ml"]})
    assert status == 201
    limited = {"Authorization": f"Bearer {made['token']}"}
    async with aiohttp.ClientSession(headers=limited) as session:
        scoped = Api(gateway.endpoint, session)
        status, body = await scoped.deploy(unique("nodeploy"))
        assert (status, body["code"]) == (403, "forbidden")
        status, body = await scoped.call("GET", "/api/v1/runs", project="default")
        assert status == 403
        status, _ = await scoped.call("GET", "/api/v1/runs", project="ml")
        assert status == 200
        status, body = await scoped.call("POST", "/api/v1/tokens", {"scopes": ["admin"]})
        assert status == 403


async def test_public_endpoints_need_no_token(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
            async with anonymous.get(gateway.endpoint + path) as response:
                assert response.status == 200, path
        async with anonymous.get(gateway.endpoint + "/api/v1/openapi.json") as response:
            document = await response.json()
        assert "/api/v1/runs/{run}/actions" in document["paths"]
        assert "RunCreateRequest" in document["components"]["schemas"]
        async with anonymous.get(gateway.endpoint + "/metrics") as response:
            assert "flyte_gateway_store_up 1" in await response.text()


# -- bad input: 4xx with {code, message}, nothing written ---------------------------------------------------------

BAD_BODIES = [
    pytest.param(b"{not json", "malformed_json", id="malformed-json"),
    pytest.param(b"", "malformed_json", id="empty"),
    pytest.param(b'{"project": "default", "domain": "development", "task": 42}', "invalid", id="wrong-type"),
    pytest.param(
        b'{"project": "default", "domain": "development", "task": "e.m", "surprise": 1}', "invalid", id="unknown-field"
    ),
    pytest.param(b'{"project": "Not Valid", "domain": "development", "task": "e.m"}', "invalid", id="bad-name"),
    pytest.param(b"[1, 2, 3]", "invalid", id="not-an-object"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
async def test_bad_run_requests_are_400_and_write_nothing(api: Api, body: bytes, code: str) -> None:
    before = await api.revision()
    status, answer = await api.call("POST", "/api/v1/runs", raw=body, headers={"Content-Type": "application/json"})
    assert status == 400
    assert answer["code"] == code
    assert answer["message"]
    assert "Traceback" not in answer["message"]
    assert await api.revision() == before


async def test_wrong_type_names_the_field(api: Api) -> None:
    body = {"project": "default", "domain": "development", "task": "e.m", "labels": {"k": 5}}
    status, answer = await api.call("POST", "/api/v1/runs", body)
    assert status == 400
    assert "labels.k" in answer["message"]


async def test_oversized_bodies_are_413_before_any_write(api: Api) -> None:
    huge = (
        b'{"project": "default", "domain": "development", "task": "e.m", "labels": {"k": "'
        + b"x" * (17 * 1024 * 1024)
        + b'"}}'
    )
    status, answer = await api.call("POST", "/api/v1/runs", raw=huge)
    assert (status, answer["code"]) == (413, "too_large")
    run = await new_run(api)
    big = child(env=run["task"].split(".")[0])
    big["inputs"] = {"x": value("y" * (1024 * 1024 + 10))}
    status, answer = await api.call("POST", f"/api/v1/runs/{run['name']}/actions", big)
    assert (status, answer["code"]) == (413, "value_too_large")
    # Nothing of the child was written. (The new run's own background writes, its action count, may move the
    # store's revision meanwhile: the revision proved a write of the child only by luck of timing.)
    status, children = await api.call("GET", f"/api/v1/runs/{run['name']}/actions", parent="a0")
    assert (status, children) == (200, [])
    status, _ = await api.call("GET", f"/api/v1/runs/{run['name']}/actions/{big['name']}")
    assert status == 404


@pytest.mark.parametrize("key", ["..%2F..%2Fetc%2Fpasswd", "%2E%2E", "abc", "A" * 64, "g" * 64])
async def test_blob_keys_are_digests_not_paths(api: Api, key: str) -> None:
    status, answer = await api.call("PUT", f"/api/v1/blobs/{key}", raw=b"data")
    assert status in (400, 404)
    assert isinstance(answer, dict)
    assert answer["code"]
    status, _ = await api.call("GET", f"/api/v1/blobs/{key}")
    assert status in (400, 404)


async def test_blob_content_must_match_its_digest(api: Api, tmp_path: Path) -> None:
    status, answer = await api.call("PUT", f"/api/v1/blobs/{'0' * 64}", raw=b"other content")
    assert (status, answer["code"]) == (400, "digest_mismatch")
    data = b"some bytes"
    digest = hashlib.sha256(data).hexdigest()
    assert (await api.call("PUT", f"/api/v1/blobs/{digest}", raw=data))[0] == 201
    async with api.session.get(f"{api.endpoint}/api/v1/blobs/{digest}") as response:
        assert await response.read() == data


async def test_bad_query_parameters_are_400(api: Api) -> None:
    assert (await api.call("GET", "/api/v1/runs", phase="sleeping"))[0] == 400
    assert (await api.call("GET", "/api/v1/runs", limit="many"))[0] == 400
    assert (await api.call("GET", "/api/v1/runs", project="../x"))[0] == 400
    assert (await api.call("GET", "/api/v1/runs", label="novalue"))[0] == 400


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert (status, body["code"]) == (404, "not_found")
    status, body = await api.call("DELETE", "/api/v1/runs")
    assert status == 405
    assert body["code"] == "method_not_allowed"


async def test_watch_of_one_action_sends_only_its_changes(api: Api) -> None:
    run = await new_run(api)
    name, env = run["name"], run["task"].split(".")[0]
    async with api.session.ws_connect(f"{api.endpoint}/api/v1/runs/{name}/watch?action=a0") as ws:
        snapshot = json.loads((await ws.receive(timeout=10)).data)
        assert [a["name"] for a in snapshot["actions"]] == ["a0"]
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "marker"
        await api.call("POST", f"/api/v1/runs/{name}/actions", child(env=env))
        await event(api, name, "a0", "running")
        change = json.loads((await ws.receive(timeout=10)).data)
        assert [(a["name"], a["phase"]) for a in change["actions"]] == [("a0", "running")]

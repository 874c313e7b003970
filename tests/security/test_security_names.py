"""Finding 11: run names were global (project beta could take `alpha-nightly`, and 403 versus 404 told other
projects which names exist). Now names are unique per project and domain, and an unreadable run is a 404 like a
missing one."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest
from tenants import TASKS, Tenants, json_value

import flyte

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def both(deployed: Tenants) -> Tenants:
    deployed.deploy("beta", deployed.load("sec_tasks_program_beta", TASKS))
    return deployed


def _create(tenants: Tenants, project: str, name: str) -> tuple[int, Any]:
    body = {
        "project": project,
        "domain": "development",
        "task": "sec_tasks.add_one",
        "name": name,
        "inputs": {"x": json_value("1")},
    }
    return tenants.call("POST", "/api/v1/runs", body, as_=project)


def test_run_names_are_unique_per_project_and_domain(both: Tenants) -> None:
    name = f"alpha-nightly-{uuid.uuid4().hex[:6]}"
    status, alpha = _create(both, "alpha", name)
    assert status == 201, alpha
    status, beta = _create(both, "beta", name)
    assert status == 201, beta
    assert alpha["name"] != beta["name"]
    assert alpha["display_name"] == beta["display_name"] == name
    status, again = _create(both, "alpha", name)
    assert (status, again["code"]) == (409, "run_exists")

    for project, created in (("alpha", alpha), ("beta", beta)):
        status, found = both.call("GET", f"/api/v1/runs/{name}?project={project}", as_=project)
        assert status == 200, found
        assert (found["name"], found["project"]) == (created["name"], project)
        both.as_admin(project)
        run = flyte.remote.Run.get(name)
        assert run.name == name, "the SDK shows the chosen name"
        assert run.url.endswith(f"/runs/{created['name']}")
        assert [a.name for a in run.actions()] == ["a0"]


def test_another_projects_run_is_a_404_like_a_missing_one(both: Tenants) -> None:
    name = f"secret-{uuid.uuid4().hex[:6]}"
    status, alpha = _create(both, "alpha", name)
    assert status == 201, alpha
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    for run, query in ((missing, ""), (alpha["name"], ""), (name, "?project=alpha")):
        for method, suffix, body in (
            ("GET", "", None),
            ("GET", "/actions", None),
            ("GET", "/actions/a0/logs", None),
            ("POST", "/abort", {"reason": "probe"}),
            ("POST", "/actions", {"name": "a" + "0" * 20, "parent": "a0", "task": "x.y"}),
        ):
            status, answer = both.call(method, f"/api/v1/runs/{run}{suffix}{query}", body, as_="beta")
            assert (status, answer) == (404, {"code": "not_found", "message": f"no run named {run}"}), (method, suffix)
    reply = asyncio.run(_worker_watch(both, alpha["name"]))
    assert (reply["type"], reply["code"]) == ("error", "not_found")
    status, still = both.call("GET", f"/api/v1/runs/{alpha['name']}", as_="alpha")
    assert status == 200
    assert still["phase"] != "aborted", "beta's abort did nothing"


async def _worker_watch(tenants: Tenants, run: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {tenants.tokens['beta']}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.ws_connect(tenants.fed.endpoint + "/api/v1/workers/connect") as ws,
    ):
        await ws.send_str(json.dumps({"type": "watch", "id": 1, "run": run, "parent": "a0"}))
        return dict(await ws.receive_json(timeout=30))

"""The placement API on a real gateway process: the policy in force and its replacement (a bad document refused with
its line and field, nothing written), cordon requests for unknown clusters, and recorded decisions."""

from __future__ import annotations

import aiohttp
import pytest
from gateway_api import Api

pytestmark = pytest.mark.timeout(60)


async def test_a_policy_is_applied_and_served(api: Api) -> None:
    text = "version: v7\nweights:\n  cost: 2\n  least_loaded: 1\n"
    status, body = await api.call("PUT", "/api/v1/policy", {"text": text})
    assert status == 200, body
    assert body["version"] == "v7"
    status, body = await api.call("GET", "/api/v1/policy")
    assert (status, body["text"], body["version"]) == (200, text, "v7")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: v1\nweights:\n  warm: -1\n", "policy line 3: field weights.warm"),
        ("version: v1\ntiers:\n  - name: a\n  - name: a\n", "tier names must be unique"),
        ("version: v1\nbogus: 1\n", "policy line 2: field bogus"),
        ("version: [v1\n", "invalid YAML"),
        ("- just a list\n", "must be a mapping"),
    ],
)
async def test_a_bad_policy_is_refused_with_its_line_and_nothing_changes(api: Api, text: str, expected: str) -> None:
    _, before = await api.call("GET", "/api/v1/policy")
    revision = await api.revision()
    status, body = await api.call("PUT", "/api/v1/policy", {"text": text})
    assert status == 400
    assert body["code"] == "invalid_policy"
    assert expected in body["message"]
    assert await api.revision() == revision
    _, after = await api.call("GET", "/api/v1/policy")
    assert after == before


async def test_policy_and_cordon_requests_are_validated(api: Api) -> None:
    revision = await api.revision()
    for method, path, body in [
        ("PUT", "/api/v1/policy", {"text": ""}),
        ("PUT", "/api/v1/policy", {"text": "version: x\n", "extra": 1}),
        ("POST", "/api/v1/clusters/nowhere/cordon", {"reason": ""}),
        ("POST", "/api/v1/clusters/nowhere/cordon", {"drain": True}),
    ]:
        status, answer = await api.call(method, path, body)
        assert status == 400, (path, body, answer)
        assert set(answer) == {"code", "message"}
    status, answer = await api.call("POST", "/api/v1/clusters/nowhere/cordon", {"reason": "maintenance"})
    assert status == 404
    assert "no cluster named nowhere" in answer["message"]
    status, answer = await api.call("POST", "/api/v1/clusters/nowhere/uncordon")
    assert status == 404
    assert await api.revision() == revision


async def test_only_admins_change_the_policy(api: Api) -> None:
    status, minted = await api.call("POST", "/api/v1/tokens", {"scopes": ["run"]})
    assert status in (200, 201)
    revision = await api.revision()
    headers = {"Authorization": f"Bearer {minted['token']}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        runner = Api(api.endpoint, session)
        status, _ = await runner.call("GET", "/api/v1/policy")
        assert status == 200
        status, answer = await runner.call("PUT", "/api/v1/policy", {"text": "version: mine\n"})
        assert status == 403, answer
        status, _ = await runner.call("GET", "/api/v1/placements")
        assert status == 403
    assert await api.revision() == revision


async def test_recorded_decisions_answer_404_and_check_their_query(api: Api) -> None:
    status, answer = await api.call("GET", "/api/v1/runs/nosuchrun/actions/a0/placement")
    assert status == 404
    for params in ({"since": "yesterday"}, {"limit": "0"}, {"since": "-5"}):
        status, answer = await api.call("GET", "/api/v1/placements", **params)
        assert status == 400, (params, answer)
    status, answer = await api.call("GET", "/api/v1/placements")
    assert (status, answer) == (200, [])

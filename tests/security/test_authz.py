"""Issue 15, findings 4 and 5: every channel checks scope the same way (`gateway._authz`). Against a real gateway
process, each attack is made as the issue's attacker made it and must be refused with nothing written: a `run` token
reporting on the worker socket, a worker token acting for another attempt or after its own ended, and an agent's
token taking queued work, touching another cluster's attempts, reading runs, or writing logs it has no business with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from channels import admin_api, agent_socket, ask, gateway_process, headers, token, worker_socket
from integration.gateway_api import Api, new_run, value
from processes import GatewayProcess

from flyte._wire import ActionSummary, Phase
from gateway._auth import AttemptRef, Principal
from gateway._authz import Act, Target, authorize
from gateway._domain_errors import Forbidden
from gateway._errors import as_api_error
from gateway._keys import logs_prefix
from gateway.store import open_store

pytestmark = pytest.mark.timeout(90)
LOG_LIMIT = 4096
GRACE = 1.0
TRACE = {"kind": "json", "payload_b64": "MQ=="}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("gateway")
    # On a SQLite file, so a test can read what the gateway wrote (`log_keys`) beside it.
    with gateway_process(
        directory,
        store=f"sqlite:{directory / 'state.db'}",
        FLYTE_WORKER_TOKEN_GRACE=str(GRACE),
        FLYTE_ATTEMPT_LOG_LIMIT=str(LOG_LIMIT),
    ) as process:
        yield process


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with admin_api(gateway) as called:
        yield called


async def log_keys(gateway: GatewayProcess, run: str) -> list[str]:
    """The log chunks the gateway keeps for `run` (logs live in the store, under `/flyte/logs/`)."""
    store = await open_store(gateway.store_url, read_only=True)
    try:
        kvs, _ = await store.range(logs_prefix(run))
    finally:
        await store.close()
    return [kv.key for kv in kvs]


async def action(api: Api, run: str, name: str = "a0") -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/runs/{run}/actions/{name}")
    assert status == 200, body
    return dict(body)


async def disconnected(api: Api, cluster: str) -> None:
    """Wait until the gateway closed `cluster`'s session: it handled every message the socket sent before closing."""
    deadline = time.monotonic() + 20
    while (await api.call("GET", f"/api/v1/clusters/{cluster}"))[1].get("connected"):
        assert time.monotonic() < deadline, f"{cluster} stayed connected"
        await asyncio.sleep(0.02)


def succeeded(attempt: int = 1, cluster: str | None = None, epoch: int = 0) -> dict[str, Any]:
    return {"phase": "succeeded", "attempt": attempt, "cluster": cluster, "epoch": epoch, "output": value(666)}


async def test_a_run_token_cannot_report_on_the_worker_socket(api: Api, gateway: GatewayProcess) -> None:
    """Finding 5: a `run` token's `report` on the worker socket marked another user's running action succeeded."""
    victim = (await new_run(api))["name"]
    await api.call("POST", f"/api/v1/runs/{victim}/actions/a0/events", {"phase": "running", "attempt": 1})
    attacker = await token(api, "run", projects=("default",))
    before = await api.revision()
    async with worker_socket(gateway.endpoint, attacker) as ws:
        reply = await ask(ws, {"type": "report", "run": victim, "action": "a0", "event": succeeded()})
        assert (reply["type"], reply["code"]) == ("error", "forbidden"), reply
        reply = await ask(ws, {"type": "submit", "run": victim, "actions": []})
        assert reply["type"] == "submitted", "an empty submission asks for nothing"
    status, body = await api.call(
        "POST", f"/api/v1/runs/{victim}/actions/a0/events", succeeded(), headers=headers(attacker)
    )
    assert (status, body["code"]) == (403, "forbidden")
    assert (await action(api, victim))["phase"] == "running"
    assert await api.revision() == before


async def test_a_worker_token_acts_only_for_its_own_attempt(api: Api, gateway: GatewayProcess) -> None:
    mine, other = (await new_run(api))["name"], (await new_run(api))["name"]
    cluster = "authz-one"
    async with agent_socket(gateway.endpoint, await token(api, f"agent:{cluster}"), cluster) as agent:
        mine_token = (await agent.assignment(mine))["token"]
        await agent.assignment(other)
        before = await api.revision()
        async with worker_socket(gateway.endpoint, mine_token) as ws:
            for attack in (
                {"type": "report", "run": other, "action": "a0", "event": succeeded(cluster=cluster)},
                {"type": "report", "run": mine, "action": "a0", "event": succeeded(2, cluster)},
                {
                    "type": "trace",
                    "run": other,
                    "action": "a0",
                    "key": "k",
                    "trace": {"kind": "json", "payload_b64": "MQ=="},
                },
                {"type": "watch", "run": other, "parent": "a0"},
            ):
                reply = await ask(ws, attack)
                # Another run is one this token may not read: it answers as a run that does not exist.
                refusal = "not_found" if attack["run"] == other else "forbidden"
                assert (reply["type"], reply["code"]) == ("error", refusal), (attack, reply)
            assert await api.revision() == before, "nothing was written"
            assert (await action(api, other))["phase"] == "placed"
            status, _ = await api.call("GET", f"/api/v1/runs/{other}", headers=headers(mine_token))
            assert status == 404
            status, _ = await api.call("GET", f"/api/v1/runs/{mine}", headers=headers(mine_token))
            assert status == 200
            reply = await ask(
                ws, {"type": "report", "run": mine, "action": "a0", "event": succeeded(1, cluster, agent.epoch)}
            )
            assert reply["type"] == "reported", reply["message"]
        # Its attempt ended: after the grace for its final report, the token is refused everywhere.
        deadline = time.monotonic() + 20
        while (await api.call("GET", f"/api/v1/runs/{mine}", headers=headers(mine_token)))[0] != 401:
            assert time.monotonic() < deadline, "the worker token outlived its attempt"
            await asyncio.sleep(0.1)
        async with aiohttp.ClientSession(headers=headers(mine_token)) as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{gateway.endpoint}/api/v1/workers/connect")
            assert refused.value.status == 401


async def test_on_a_shared_socket_each_message_acts_for_the_token_it_says(api: Api, gateway: GatewayProcess) -> None:
    """A pool worker's one socket carries every attempt's messages, each saying its token: a message acts for that
    token alone, whatever opened the socket, and a forged, stored or spent token said in a message is refused."""
    mine, other = (await new_run(api))["name"], (await new_run(api))["name"]
    cluster = "authz-shared"
    attacker = await token(api, "run", projects=("default",))
    async with agent_socket(gateway.endpoint, await token(api, f"agent:{cluster}"), cluster) as agent:
        mine_token = (await agent.assignment(mine))["token"]
        other_token = (await agent.assignment(other))["token"]
        before = await api.revision()
        async with worker_socket(gateway.endpoint, mine_token) as ws:
            forged = other_token[:-4] + ("AAAA" if not other_token.endswith("AAAA") else "BBBB")
            for said, attack, refusal in (
                # The socket's own token says nothing more for another run when a message names it.
                (mine_token, {"type": "report", "run": other, "action": "a0"}, "not_found"),
                (forged, {"type": "report", "run": other, "action": "a0"}, "unauthorized"),
                (attacker, {"type": "report", "run": other, "action": "a0"}, "forbidden"),
                ("not-a-token", {"type": "watch", "run": other, "parent": "a0"}, "unauthorized"),
            ):
                if attack["type"] == "report":
                    attack = {**attack, "event": succeeded(1, cluster, agent.epoch)}
                reply = await ask(ws, {**attack, "token": said})
                assert (reply["type"], reply["code"]) == ("error", refusal), (said[:12], reply)
            assert await api.revision() == before, "nothing was written"
            # The other attempt's own token, said on this socket, reports that attempt.
            report = {"type": "report", "run": other, "action": "a0", "event": succeeded(1, cluster, agent.epoch)}
            reply = await ask(ws, {**report, "token": other_token})
            assert reply["type"] == "reported", reply.get("message")
            assert (await action(api, other))["phase"] == "succeeded"
            # Once that attempt is over (and its grace spent), its token is refused on the socket that still serves
            # the socket's own token.
            deadline = time.monotonic() + 20
            while True:
                reply = await ask(ws, {"type": "traces", "run": other, "action": "a0", "token": other_token})
                if reply["type"] == "error":
                    break
                assert time.monotonic() < deadline, "a spent token kept acting on a shared socket"
                await asyncio.sleep(0.1)
            assert reply["code"] == "unauthorized", reply
            reply = await ask(ws, {"type": "traces", "run": mine, "action": "a0"})
            assert reply["type"] == "traces", reply


async def test_an_agent_cannot_take_queued_work_on_a_cordoned_cluster(api: Api, gateway: GatewayProcess) -> None:
    """Finding 4: a stolen agent token took and completed a queued action on a cordoned cluster."""
    cluster = "authz-cordoned"
    agent_token = await token(api, f"agent:{cluster}")
    async with agent_socket(gateway.endpoint, agent_token, cluster):
        pass
    await disconnected(api, cluster)
    status, _ = await api.call("POST", f"/api/v1/clusters/{cluster}/cordon", {"reason": "security test"})
    assert status == 200
    run = (await new_run(api))["name"]
    async with agent_socket(gateway.endpoint, agent_token, cluster) as agent:
        await agent.event(run, "a0", "running")
        await agent.event(run, "a0", "succeeded", output=value(666))
        for phase in ("running", "succeeded"):
            status, body = await api.call(
                "POST",
                f"/api/v1/runs/{run}/actions/a0/events",
                {"phase": phase, "attempt": 1, "cluster": cluster, "output": value(666)},
                headers=headers(agent_token),
            )
            assert (status, body["code"]) == (403, "forbidden")
    await disconnected(api, cluster)
    current = await action(api, run)
    assert (current["phase"], current["attempts"], current["cluster"]) == ("queued", 0, None)
    await api.call("POST", f"/api/v1/runs/{run}/abort", {"reason": "done"})


async def test_an_agent_acts_and_logs_only_for_attempts_placed_on_its_cluster(
    api: Api, gateway: GatewayProcess
) -> None:
    east, west = "authz-east", "authz-west"
    west_token = await token(api, f"agent:{west}")
    async with agent_socket(gateway.endpoint, await token(api, f"agent:{east}"), east) as owner:
        run = (await new_run(api))["name"]
        await owner.assignment(run)
        async with agent_socket(gateway.endpoint, west_token, west) as thief:
            await thief.event(run, "a0", "running")
            await thief.event(run, "a0", "succeeded", output=value(666))
            await thief.logs(run, "a0", "forged log\n")
            await thief.logs("no-such-run", "a0", "x" * 100_000)
        await disconnected(api, west)
        assert (await action(api, run))["phase"] == "placed"
        assert await log_keys(gateway, run) == [], "the thief's log was kept"
        assert await log_keys(gateway, "no-such-run") == [], "logs for a run that does not exist were kept"
        assert await api.call("GET", f"/api/v1/runs/{run}/actions/a0/logs?attempt=1") == (200, "")

        # The owner's logs are kept, up to the limit per attempt.
        await owner.event(run, "a0", "running")
        await owner.logs(run, "a0", "y" * (LOG_LIMIT * 3))
        await owner.logs(run, "a0", "z" * LOG_LIMIT)
    await disconnected(api, east)
    status, text = await api.call("GET", f"/api/v1/runs/{run}/actions/a0/logs")
    assert status == 200
    assert text.startswith("y" * 100)
    assert "z" not in text
    assert len(text) < LOG_LIMIT + 200, len(text)
    assert "reached its limit" in text
    assert await log_keys(gateway, run), "the owner's logs are in the store, where the checks above looked"


async def test_an_agent_token_reads_no_runs(api: Api, gateway: GatewayProcess) -> None:
    """Finding 4: a stolen agent token read every project's runs, logs and traces."""
    run = (await new_run(api))["name"]
    agent = headers(await token(api, "agent:authz-reader"))
    for path in (
        f"/api/v1/runs/{run}",
        f"/api/v1/runs/{run}/actions",
        f"/api/v1/runs/{run}/actions/a0/logs",
        f"/api/v1/runs/{run}/trace",
        "/api/v1/runs?project=default",
        "/api/v1/placements",
    ):
        status, body = await api.call("GET", path, headers=agent)
        # A run it may not read answers as one that does not exist; listings it may not make are refused.
        assert status == (404 if path.startswith(f"/api/v1/runs/{run}") else 403), (path, status, body)


# -- the table of docs/security.md, decision by decision ------------------------------------------------------------

ALPHA_RUN = Target("alpha", "r1")
OWN = AttemptRef("alpha", "r1", "a0", 1)
ON_C = {"phase": "placed", "attempts": 1, "cluster": "c"}


def principal(kind: str) -> Principal:
    if kind == "worker":
        return Principal(frozenset({"worker:r1"}), frozenset({"alpha"}), OWN)
    if kind == "agent":
        return Principal(frozenset({"agent:c"}), frozenset())
    return Principal(frozenset({kind}), frozenset({"alpha"}))


def stored(**fields: Any) -> ActionSummary:
    return ActionSummary.model_validate(
        {"name": "a0", "parent": None, "task": "e.t", "run": "r1", "phase": "queued", **fields}
    )


TABLE = [
    # (token, act, target, allowed)
    ("run", Act.READ, ALPHA_RUN, True),
    ("run", Act.READ, Target("beta", "r2"), False),
    ("run", Act.REPORT, Target("alpha", "r1", "a0", 1), False),
    ("run", Act.SUBMIT, Target("alpha", "r1", "a0"), False),
    ("run", Act.WATCH_CHILDREN, Target("alpha", "r1", "a0"), True),
    ("run", Act.CREATE_RUN, Target("alpha"), True),
    ("run", Act.DEPLOY, Target("alpha"), False),
    ("deploy", Act.DEPLOY, Target("alpha"), True),
    ("deploy", Act.CREATE_RUN, Target("alpha"), False),
    ("worker", Act.READ, ALPHA_RUN, True),
    ("worker", Act.READ, Target("alpha", "r2"), False),
    ("worker", Act.REPORT, Target("alpha", "r1", "a0", 1), True),
    ("worker", Act.REPORT, Target("alpha", "r1", "a0", 2), False),
    ("worker", Act.REPORT, Target("alpha", "r1", "a1", 1), False),
    ("worker", Act.SUBMIT, Target("alpha", "r1", "a0"), True),
    ("worker", Act.SUBMIT, Target("alpha", "r1", "a1"), False),
    ("worker", Act.CHECKPOINT_WRITE, Target("alpha", "r1", "a1"), False),
    ("worker", Act.CREATE_RUN, Target("alpha"), False),
    ("worker", Act.READ_TASK, Target("alpha"), True),
    ("worker", Act.READ_TASK, Target("beta"), False),
    ("worker", Act.BLOB_READ, Target(projects=frozenset({"alpha"})), True),
    ("worker", Act.BLOB_READ, Target(projects=frozenset({"beta"})), False),
    ("worker", Act.BLOB_WRITE, Target("beta"), False),
    ("run", Act.BLOB_READ, Target(projects=frozenset({"beta"})), False),
    ("run", Act.BLOB_READ, Target(projects=frozenset()), False),
    ("agent", Act.READ, ALPHA_RUN, False),
    ("agent", Act.AGENT_EVENT, Target("alpha", "r1", "a0", 1, current=stored(**ON_C)), True),
    ("agent", Act.AGENT_EVENT, Target("alpha", "r1", "a0", 1, current=stored()), False),
    ("agent", Act.AGENT_EVENT, Target("alpha", "r1", "a0", 1, current=stored(**{**ON_C, "cluster": "d"})), False),
    ("agent", Act.AGENT_EVENT, Target("alpha", "r1", "a0", 1, current=stored(**{**ON_C, "phase": "failed"})), False),
    # A warm pool's `running` may arrive after its result: it only dates the attempt's start.
    (
        "agent",
        Act.AGENT_EVENT,
        Target("alpha", "r1", "a0", 1, current=stored(**{**ON_C, "phase": "succeeded"}), event_phase=Phase.RUNNING),
        True,
    ),
    (
        "agent",
        Act.AGENT_EVENT,
        Target("alpha", "r1", "a0", 1, current=stored(**{**ON_C, "phase": "succeeded"}), event_phase=Phase.FAILED),
        False,
    ),
    ("agent", Act.AGENT_LOGS, Target(run="r1", placed_on="c"), True),
    ("agent", Act.AGENT_LOGS, Target(run="r1", placed_on="d"), False),
    ("agent", Act.READ_TASK, Target("alpha", agent_projects=frozenset({"alpha"})), True),
    ("agent", Act.READ_TASK, Target("beta", agent_projects=frozenset({"alpha"})), False),
    ("agent", Act.BLOB_READ, Target(projects=frozenset({"beta"}), agent_projects=frozenset({"alpha"})), False),
    ("agent", Act.REPORT, Target("alpha", "r1", "a0", 1), False),
    ("run", Act.SIGNAL, ALPHA_RUN, True),
    ("run", Act.SIGNAL, Target("beta", "r2"), False),
    ("deploy", Act.SIGNAL, ALPHA_RUN, False),
    ("worker", Act.SIGNAL, ALPHA_RUN, False),
    ("agent", Act.SIGNAL, ALPHA_RUN, False),
]


@pytest.mark.parametrize(("kind", "act", "target", "allowed"), TABLE)
def test_the_documented_table(kind: str, act: Act, target: Target, allowed: bool) -> None:
    if allowed:
        authorize(principal(kind), act, target)
    else:
        with pytest.raises(Forbidden) as refused:
            authorize(principal(kind), act, target)
        assert as_api_error(refused.value).status == 403
    authorize(Principal(frozenset({"admin"}), frozenset()), act, target)

"""Schedules through a real gateway process: a FixedRate trigger deployed by the CLI fires once, with its firing
time as the task's input; a gateway killed and restarted on the same store does not fire it again; the CLI lists
triggers and deactivates one."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from gateway_api import Api
from processes import GatewayProcess
from waiting import eventually_async

pytestmark = pytest.mark.timeout(120)

PROGRAM = """
import datetime
import os

import flyte

env = flyte.TaskEnvironment("sched_it")
START = datetime.datetime.fromtimestamp(float(os.environ["TRIGGER_START"]), datetime.UTC)


@env.task(triggers=flyte.Trigger("every", flyte.FixedRate(1, start_time=START), inputs={"when": flyte.TriggerTime}))
async def stamp(when: datetime.datetime) -> str:
    return when.isoformat()
"""


REMOTE = """
import flyte

flyte.init_from_config()
paused = flyte.remote.Trigger.get(name="every", task_name="sched_it.stamp")
again = flyte.remote.Trigger.update("every", "sched_it.stamp", True)
print(paused.is_active, again.is_active, again.task_name)
"""


DEPLOYMENT = {
    "project": "default",
    "domain": "development",
    "env": "sched_it",
    "version": "v2",
    "bundle_digest": "0" * 64,
    "tasks": [
        {
            "name": "sched_it.stamp",
            "short_name": "stamp",
            "signature": "stamp() -> None",
            "interface_digest": "0123456789abcdef",
            "triggers": [{"name": "t", "automation": {"kind": "fixed_rate", "interval_minutes": 5}}],
        }
    ],
}


@pytest.fixture
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    state = tmp_path_factory.mktemp("sched-gateway")
    process = GatewayProcess(f"sqlite:{state / 'state.db'}", state / "home").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(gateway.endpoint, session)


def cli(gateway: GatewayProcess, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return python(gateway, "-m", "flyte.cli", *args, cwd=cwd, **env)


def python(gateway: GatewayProcess, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """This interpreter with the gateway's home, whose config points at it with an admin token."""
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, "HOME": str(gateway.home), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _get(api: Api, gateway: GatewayProcess, path: str, **params: str) -> object:
    status, body = await api.call("GET", path, headers={"Authorization": f"Bearer {gateway.token}"}, **params)
    assert status == 200, body
    return body


async def test_a_fixed_rate_trigger_fires_once_and_a_restart_does_not_fire_it_again(
    gateway: GatewayProcess, api: Api, tmp_path: Path
) -> None:
    program = tmp_path / "program"
    program.mkdir()
    (program / "sched.py").write_text(PROGRAM)
    # On a one-minute grid whose next point is a few seconds away: the test sees one firing, then none for a minute.
    start = time.time() - 55
    deployed = cli(gateway, "deploy", "sched.py", "sched_it", "--version", "v1", cwd=program, TRIGGER_START=str(start))
    assert deployed.returncode == 0, deployed.stderr
    assert "trigger every of sched_it.stamp: FixedRate Trigger: every 1 minutes" in deployed.stdout

    async def fired() -> bool:
        records = await _get(api, gateway, "/api/v1/triggers")
        return isinstance(records, list) and bool(records) and records[0]["fired"] == 1

    await eventually_async(fired, within=30)
    runs = await _get(api, gateway, "/api/v1/runs", label="flyte.trigger=every")
    assert isinstance(runs, list)
    assert len(runs) == 1
    when = datetime.datetime.fromisoformat(json.loads(runs[0]["inputs"]["when"]["json_text"]))
    assert abs(when.timestamp() - (start + 60)) < 0.01
    metrics = await _get(api, gateway, "/metrics")
    assert 'flyte_gateway_events_total{event="trigger_firings"} 1' in str(metrics)

    gateway.kill()
    gateway.start()

    async def passed_three() -> bool:
        state = await _get(api, gateway, "/api/v1/scheduler")
        return isinstance(state, dict) and state["running"] and state["passes"] >= 3

    await eventually_async(passed_three, within=30)
    runs = await _get(api, gateway, "/api/v1/runs", label="flyte.trigger=every")
    assert isinstance(runs, list)
    assert len(runs) == 1, "the restarted gateway fired the same firing again"

    listed = cli(gateway, "get", "triggers", "-o", "json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [record] = json.loads(listed.stdout)
    assert (record["name"], record["task"], record["active"], record["fired"]) == ("every", "sched_it.stamp", True, 1)
    off = cli(gateway, "update", "trigger", "every", "sched_it.stamp", "--deactivate", cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "trigger every of sched_it.stamp is inactive"
    table = cli(gateway, "get", "trigger", "sched_it.stamp", "-o", "wide", cwd=tmp_path)
    assert "every 1 min" in table.stdout
    assert "inactive" in table.stdout
    remote = python(gateway, "-c", REMOTE, cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout.split() == ["False", "True", "sched_it.stamp"]
    missing = cli(gateway, "update", "trigger", "nope", "sched_it.stamp", "--activate", cwd=tmp_path)
    assert missing.returncode == 1
    assert "no trigger nope in default/development" in missing.stderr
    usage = cli(gateway, "update", "trigger", "every", "sched_it.stamp", cwd=tmp_path)
    assert usage.returncode == 2

    admin = {"Authorization": f"Bearer {gateway.token}"}
    status, made = await api.call("POST", "/api/v1/tokens", {"scopes": ["run"], "projects": ["default"]}, headers=admin)
    assert status == 201, made
    runner = {"Authorization": f"Bearer {made['token']}"}
    status, listed_by_runner = await api.call("GET", "/api/v1/triggers", headers=runner)
    assert status == 200
    assert [r["name"] for r in listed_by_runner] == ["every"]
    status, refused = await api.call("POST", "/api/v1/triggers/every/activate", headers=runner)
    assert status == 403
    assert "may not deploy" in refused["message"]
    deploy_only = {"scopes": ["deploy"], "projects": ["default"]}
    status, made = await api.call("POST", "/api/v1/tokens", deploy_only, headers=admin)
    assert status == 201, made
    deployer = {"Authorization": f"Bearer {made['token']}"}
    status, refused = await api.call("POST", "/api/v1/deployments", DEPLOYMENT, headers=deployer)
    assert status == 403, "triggers start runs: a deploy-only token may not deploy them"
    assert "may not create run" in refused["message"]

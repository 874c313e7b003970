"""The SDK's remote client and the CLI against a real gateway: `flyte deploy`, `flyte get`, `flyte abort`,
`flyte.deploy`, `flyte.remote.Task.listall/get`, `flyte.remote.Run.get/listall`, and tokens."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import GatewayProcess

import flyte
from flyte._client import GatewayError, call_sync, client_for
from flyte._wire import RunCreateRequest

pytestmark = pytest.mark.timeout(90)

PROGRAM = """
import flyte

env_b = flyte.TaskEnvironment("client_env_b")
env_a = flyte.TaskEnvironment("client_env_a", depends_on=[env_b])


@env_b.task
async def helper(x: int) -> int:
    return x + 1


@env_a.task
async def main(x: int = 3) -> int:
    return await helper(x)
"""


@pytest.fixture
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # Apart from the programs' folder: a bundle carries its whole folder, and the live database would change it.
    state = tmp_path_factory.mktemp("gateway")
    process = GatewayProcess(f"sqlite:{state / 'state.db'}", state / "gateway-home").start()
    try:
        yield process
    finally:
        process.stop()


def cli(gateway: GatewayProcess, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(gateway.home)}
    return subprocess.run(
        [sys.executable, "-m", "flyte.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_cli_deploys_lists_and_aborts(gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "program.py").write_text(PROGRAM)
    deployed = cli(gateway, "deploy", "program.py", "client_env_a", "--version", "v1", cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    assert "client_env_a at version v1" in deployed.stdout
    assert "client_env_b at version v1" in deployed.stdout, "dependencies are deployed with it"

    tasks = cli(gateway, "get", "tasks", cwd=tmp_path)
    assert tasks.returncode == 0, tasks.stderr
    assert "client_env_a.main" in tasks.stdout
    assert "client_env_b.helper" in tasks.stdout

    again = cli(gateway, "deploy", "program.py", "client_env_a", "--version", "v1", cwd=tmp_path)
    assert again.returncode == 0, "redeploying the same content is a no-op"
    (tmp_path / "program.py").write_text(PROGRAM.replace("x + 1", "x + 2"))
    changed = cli(gateway, "deploy", "program.py", "client_env_a", "--version", "v1", cwd=tmp_path)
    assert changed.returncode == 1
    assert "already deployed with other content" in changed.stderr

    flyte.init(endpoint=gateway.endpoint, api_key=gateway.token)
    run = call_sync(
        client_for().create_run(
            RunCreateRequest(project="default", domain="development", task="client_env_a.main", labels={"t": "1"})
        )
    )
    runs = cli(gateway, "get", "runs", cwd=tmp_path)
    assert run.name in runs.stdout
    actions = cli(gateway, "get", "actions", run.name, cwd=tmp_path)
    assert "a0" in actions.stdout
    assert "queued" in actions.stdout
    aborted = cli(gateway, "abort", "run", run.name, "--reason", "enough", cwd=tmp_path)
    assert aborted.returncode == 0, aborted.stderr
    assert f"run {run.name}: aborted" in aborted.stdout
    assert flyte.remote.Run.get(run.name).phase == "aborted"


def test_sdk_deploy_and_remote_views(gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "sdk_program.py").write_text(PROGRAM.replace("client_env", "sdk_env"))
    sys.path.insert(0, str(tmp_path))
    try:
        import sdk_program  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    flyte.init(endpoint=gateway.endpoint, api_key=gateway.token)

    deployments = flyte.deploy(sdk_program.env_a)
    assert [d.env.name for d in deployments] == ["sdk_env_a", "sdk_env_b"]
    assert deployments[0].version == flyte.deploy(sdk_program.env_a, dry_run=True)[0].version, "versions are stable"
    names = {t.name: t for t in flyte.remote.Task.listall()}
    assert names["sdk_env_a.main"].signature == "main(x: int = 3) -> int"
    assert names["sdk_env_a.main"].version == deployments[0].version
    uploads = _blob_requests(gateway, "PUT")
    assert uploads >= 1
    flyte.deploy(sdk_program.env_a, version="same-code-again")
    assert _blob_requests(gateway, "PUT") == uploads, "an unchanged bundle is not uploaded again"
    assert _blob_requests(gateway, "HEAD") >= 2

    run = call_sync(
        client_for().create_run(RunCreateRequest(project="default", domain="development", task="sdk_env_a.main"))
    )
    assert [r.name for r in flyte.remote.Run.listall(in_phase="queued")] == [run.name]
    assert flyte.remote.Run.get(run.name).url.endswith(f"/runs/{run.name}")
    assert [a.name for a in flyte.remote.Run.get(run.name).actions()] == ["a0"]


def _blob_requests(gateway: GatewayProcess, method: str) -> int:
    """How many blob requests of this method the gateway has answered, from its /metrics."""
    with urllib.request.urlopen(f"{gateway.endpoint}/metrics") as response:
        text = response.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("flyte_gateway_requests_total") and f'method="{method}"' in line and "blobs" in line
    )


def test_tokens_are_made_by_an_admin_and_scoped(gateway: GatewayProcess, tmp_path: Path) -> None:
    made = cli(gateway, "gateway", "token", "create", "--scope", "run", "--project", "team", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("fft_")
    flyte.init(endpoint=gateway.endpoint, api_key=token, project="default")
    with pytest.raises(GatewayError) as refused:
        call_sync(client_for().list_runs())
    assert refused.value.status == 403
    flyte.init(endpoint=gateway.endpoint, api_key=token, project="team")
    assert call_sync(client_for().list_runs()) == []
    bad = cli(gateway, "gateway", "token", "create", "--scope", "superuser", cwd=tmp_path)
    assert bad.returncode == 2
    assert "scope 'superuser'" in bad.stderr

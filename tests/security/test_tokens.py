"""Issue 15, findings 4 and 8: agent tokens reach no task, and worker tokens do not outlive their attempts' files.

Through the rig (`flyte rig up`: a gateway and two agents as separate processes), a task looks for the agents'
tokens where the issue's attacker found them, every process's command line and environment and its own
environment, and finds none; the agent refuses a token file others can read, and warns about `--token`.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.test_rig import Rig, start_rig
from waiting import assert_eventually

import flyte
import flyte.errors

pytestmark = pytest.mark.timeout(180)

SNOOP = """
import os
from pathlib import Path

import flyte

env = flyte.TaskEnvironment("snoop_env")


@env.task
async def main(secrets: list[str]) -> list[str]:
    found = [f"my env {k}" for k, v in os.environ.items() if k == "FLYTE_AGENT_TOKEN" or any(s in v for s in secrets)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                text = (proc / part).read_bytes().decode(errors="replace")
            except OSError:
                continue
            found += [f"{part} of {proc.name}" for s in secrets if s in text]
    return found
"""


SNOOP_THERE = SNOOP.replace(
    'flyte.TaskEnvironment("snoop_env")',
    'flyte.TaskEnvironment("snoop_there", placement=flyte.Placement(clusters=["by-env"]))',
)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("tokens-rig"))
    try:
        yield started
    finally:
        started.flyte("rig", "down")


def rig_dir(rig: Rig) -> Path:
    return Path(rig.env["FLYTE_HOME"]) / "rig"


def agent_tokens(rig: Rig) -> dict[str, str]:
    return {p.stem: p.read_text().strip() for p in (rig_dir(rig) / "tokens").iterdir()}


def test_agent_tokens_are_in_private_files_and_on_no_command_line(rig: Rig) -> None:
    tokens = agent_tokens(rig)
    assert set(tokens) == {"agent-us-east", "agent-eu-west"}
    assert stat.S_IMODE((rig_dir(rig) / "tokens").stat().st_mode) == 0o700
    for path in (rig_dir(rig) / "tokens").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for name, pid in rig.pids().items():
        proc = Path(f"/proc/{pid}")
        for part in ("cmdline", "environ"):
            text = (proc / part).read_bytes().decode(errors="replace")
            assert not any(t in text for t in tokens.values()), f"a token is in the {part} of {name}"


def test_a_task_finds_no_agent_token_anywhere(rig: Rig) -> None:
    """Finding 4: a task read both agents' tokens from /proc/*/cmdline (and would have from its environment)."""
    snoop = rig.load("snoop_program", SNOOP)
    rig.connect()
    run = flyte.run(snoop.main, secrets=list(agent_tokens(rig).values()))
    assert run.outputs() == ([],)


def admin_call(rig: Rig, method: str, path: str, body: object = None) -> dict[str, Any]:
    config = yaml.safe_load((rig.cwd / ".flyte" / "config.yaml").read_text())
    request = urllib.request.Request(
        rig_endpoint(rig) + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {config['admin']['api_key']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


@contextmanager
def extra_agent(rig: Rig, root: Path, cluster: str, *args: str) -> Iterator[str]:
    """Another agent for the rig's gateway, given its token in FLYTE_AGENT_TOKEN (the Kubernetes manifest's way);
    yields the token once the agent is connected."""
    secret = admin_call(rig, "POST", "/api/v1/tokens", {"scopes": [f"agent:{cluster}"]})["token"]
    command = [sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", rig_endpoint(rig)]
    command += ["--cluster", cluster, "--region", cluster, "--work-dir", str(root / "work"), *args]
    env = {**rig.env, "FLYTE_HOME": str(root / "home"), "FLYTE_AGENT_TOKEN": secret}
    with (root / "agent.log").open("wb") as log:
        agent = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert_eventually(lambda: connected(rig, cluster), 30)
        yield secret
    finally:
        agent.terminate()
        agent.wait(30)


def test_an_agent_given_its_token_in_the_environment_passes_it_to_no_task(rig: Rig, tmp_path: Path) -> None:
    """The agent removes FLYTE_AGENT_TOKEN before any worker starts, from /proc/PID/environ too."""
    with extra_agent(rig, tmp_path, "by-env", "--spares", "1") as secret:
        snoop = rig.load("snoop_there_program", SNOOP_THERE)
        rig.connect()
        assert flyte.run(snoop.main, secrets=[secret]).outputs() == ([],)


COLD = """
import flyte

env = flyte.TaskEnvironment("cold_env", placement=flyte.Placement(clusters=["cold"]))


@env.task
async def main(x: int) -> int:
    return x + 1
"""


def test_assignment_files_are_removed_after_launch_and_when_a_launch_fails(rig: Rig, tmp_path: Path) -> None:
    """Finding 8: assignment files (0644, holding worker tokens) stayed on disk when a launch failed."""
    with extra_agent(rig, tmp_path, "cold", "--spares", "0"):  # no spares: every attempt is launched cold
        program = rig.load("cold_program", COLD)
        rig.connect()
        assert flyte.run(program.main, x=1).outputs() == (2,)
        assignments = tmp_path / "work" / "assignments"
        assert stat.S_IMODE(assignments.stat().st_mode) == 0o700
        assert list(assignments.iterdir()) == []
        # The bundle the agent extracted is gone: the next launch of that code fails (its working directory).
        shutil.rmtree(tmp_path / "work" / "bundles")
        with pytest.raises(flyte.errors.RetriesExhaustedError, match="the agent could not run it"):
            flyte.run(program.main, x=2).wait(timeout=60)
        assert list(assignments.iterdir()) == []


def connected(rig: Rig, cluster: str) -> bool:
    try:
        return admin_call(rig, "GET", f"/api/v1/clusters/{cluster}").get("connected") is True
    except urllib.error.HTTPError:
        return False  # not registered yet


def rig_endpoint(rig: Rig) -> str:
    return str(json.loads((rig_dir(rig) / "rig.json").read_text())["endpoint"])


def test_assignment_files_are_gone_once_their_attempts_ran(rig: Rig) -> None:
    """Finding 8: assignment files (which hold worker tokens) stayed on disk."""
    snoop = rig.load("snoop_program", SNOOP)
    rig.connect()
    assert flyte.run(snoop.main, secrets=["nothing-to-find"]).outputs() == ([],)
    for cluster in ("us-east", "eu-west"):
        assignments = rig_dir(rig) / "agents" / cluster / "assignments"
        if assignments.exists():
            assert stat.S_IMODE(assignments.stat().st_mode) == 0o700
            assert list(assignments.iterdir()) == []


def agent_command(*args: str) -> list[str]:
    command = [sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", "http://127.0.0.1:9"]
    return [*command, "--cluster", "c1", *args]


def test_the_agent_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    token_file = tmp_path / "agent.token"
    token_file.write_text("fft_secret\n")
    token_file.chmod(0o644)
    work = tmp_path / "work"
    result = subprocess.run(
        agent_command("--token-file", str(token_file), "--work-dir", str(work)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "readable by others (mode 644)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not work.exists(), "the agent started nothing"


def test_the_token_on_the_command_line_is_deprecated(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLYTE_AGENT_TOKEN"}
    result = subprocess.run(
        agent_command("--token", "fft_secret", "--cpu", "not-a-number"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert "--token puts the token on the command line" in result.stderr
    missing = subprocess.run(agent_command(), capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 2
    assert "--token-file" in missing.stderr

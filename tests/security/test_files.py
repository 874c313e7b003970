"""Issue 15, findings 6 and 12: the agent refuses a work directory someone else made, and what the platform keeps at
rest (state, its WAL, logs, blobs, bundles, tokens) is readable by its own user alone.

Real processes: `flyte agent serve` against a squatted socket directory, and a rig (`flyte rig up`) that ran a task.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.test_rig import Rig, start_rig
from waiting import assert_eventually

import flyte

pytestmark = pytest.mark.timeout(180)

TASK = """
import flyte

env = flyte.TaskEnvironment("files_env")


@env.task
async def main(x: int) -> str:
    print("a line for the logs")
    return "x" * (2 * 1024 * 1024) + str(x)  # over the inline limit: it travels as a blob
"""


def socket_dir_of(work_dir: Path) -> Path:
    """Where an agent with this work directory keeps its sockets (as `agent._agent._socket_dir` names it)."""
    digest = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"flyte-agent-{digest}"


@pytest.fixture
def squatted(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    work = tmp_path / "work"
    sockets = socket_dir_of(work)
    shutil.rmtree(sockets, ignore_errors=True)
    sockets.mkdir()
    sockets.chmod(0o777)  # as the local user made it, ready to put a spares.sock of their own there
    try:
        yield work, sockets
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def serve_agent(work: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", "http://127.0.0.1:9"]
    command += ["--cluster", "c1", "--work-dir", str(work)]
    env = {**os.environ, "FLYTE_AGENT_TOKEN": "fft_unused"}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_the_agent_refuses_a_squatted_socket_directory(squatted: tuple[Path, Path]) -> None:
    work, sockets = squatted
    result = serve_agent(work)
    assert result.returncode == 2, result.stderr
    assert f"refusing to start: {sockets} has mode 777" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(sockets.iterdir()) == [], "nothing was put in it"


def test_the_agent_refuses_a_symlink_in_place_of_its_socket_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    sockets = socket_dir_of(work)
    target = tmp_path / "theirs"
    target.mkdir(mode=0o700)
    sockets.symlink_to(target)
    try:
        result = serve_agent(work)
    finally:
        sockets.unlink()
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
    assert list(target.iterdir()) == []


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    # A permissive umask, as a shared machine may have: the modes must not depend on it.
    previous = os.umask(0o022)
    try:
        started = start_rig(tmp_path_factory.mktemp("files-rig"), clusters="us-east")
    finally:
        os.umask(previous)
    try:
        yield started
    finally:
        started.flyte("rig", "down")


def test_files_at_rest_are_the_users_alone(rig: Rig) -> None:
    """Finding 12: state.db, its WAL and the logs were 0644 in 0755 folders (the logs live in state.db now)."""
    program = rig.load("files_program", TASK)
    rig.connect()
    run = flyte.run(program.main, x=1)
    assert run.outputs()[0].endswith("1")
    root = Path(rig.env["FLYTE_HOME"]) / "rig"
    # The agent ships logs in batches: the run can end before its last batch arrives. They are kept in the store
    # (state.db below), so every replica serves them, not in files of the gateway's.
    assert_eventually(lambda: "a line for the logs" in rig.flyte("get", "logs", run.name).stdout, timeout=20)
    kept = {
        "state": root / "state.db",
        "wal": root / "state.db-wal",
        "a blob": next(p for p in (root / "blobs").rglob("*") if p.is_file()),
        "a token": root / "tokens" / "agent-us-east.token",
    }
    for what, path in kept.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{what} {path} is {path.stat().st_mode & 0o777:o}"
    folders = [root, root / "blobs", root / "tokens", root / "agents" / "us-east"]
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, f"{folder} is {folder.stat().st_mode & 0o777:o}"
    # Everything else (bundles, the agent's own blobs, other logs) is inside one of those folders.
    for path in root.rglob("*"):
        assert any(path.is_relative_to(f) for f in folders), path

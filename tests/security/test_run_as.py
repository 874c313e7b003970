"""Issue 15, deliverable 2: on the process backend, attempts run as an unprivileged user (`flyte agent serve --run-as
USER`). A real agent, running as root, starts a task as a test user; the task reports what it could reach: its uid,
the agent's token file, the agent's environment (`/proc/PID/environ`), the agent's own folders, and the folder
another attempt's secrets would be in.

The test needs root (it creates its user with `useradd` once, and keeps it: one fixed name, made idempotently) and a
Python every user may run: this machine's venvs point into /root, which only root may enter, so tasks run on the
system's Python (`FLYTE_WORKER_PYTHON`) with this checkout and the venv's packages on PYTHONPATH.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_process import EtcdProcess
from federation import Federation, require_etcd
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prerequisites import require
from processes import Proc

import flyte

pytestmark = pytest.mark.timeout(180)
USER = "flyte-sec-test"
SYSTEM_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[2]
_CONNECTED = re.compile(r"connected to \S+ as \S+, epoch (\d+)")

PROBE = """
import json
import os

import flyte

env = flyte.TaskEnvironment("run_as_probe")
pooled = flyte.TaskEnvironment("run_as_pooled", reusable=flyte.ReusePolicy(replicas=1))


def readable(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            file.read(1)
        return True
    except OSError:
        return False


def listable(path: str) -> bool:
    try:
        os.listdir(path)
        return True
    except OSError:
        return False


@env.task
async def probe(token_file: str, agent_pid: int, work_dir: str) -> str:
    return json.dumps({
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "groups": os.getgroups(),
        "token_file": readable(token_file),
        "agent_environ": readable(f"/proc/{agent_pid}/environ"),
        "work_dir": listable(work_dir),
        "attempts": listable(os.path.join(work_dir, "attempts")),
        "assignments": listable(os.path.join(work_dir, "assignments")),
        "reported": listable(os.path.join(work_dir, "reported")),
        "other_secret": readable(os.path.join(work_dir, "attempts", "other_a0_1", "secrets", "key")),
        "bundle_writable": os.access(os.getcwd(), os.W_OK),
    })


@pooled.task
async def pooled_uid() -> int:
    return os.getuid()
"""


def ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        return pwd.getpwnam(USER)


SERVER_PACKAGES = ("etcd3aio", "kubernetes-asyncio")
"""Dependencies a task process never imports (the gateway's and the agent's own)."""


def _worker_site(outside: Path) -> str:
    """The SDK and its packages where the task's user can read them: this checkout and this interpreter's
    site-packages may be under /root (a pyenv, a clone in root's home), which only root may enter. The packages are
    this interpreter's own, copied file by file as their records list them (a `pip install --target` of the same
    took ~13 s of the suite)."""
    folder = outside / "worker-site"
    shutil.copytree(REPO / "sdk" / "flyte", folder / "flyte", ignore=shutil.ignore_patterns("__pycache__"))
    needs = [r for r in importlib.metadata.requires("flyte-federation") or [] if "extra ==" not in r]
    for dist in _installed_closure([r for r in needs if not r.startswith(SERVER_PACKAGES)]):
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or not source.is_file():
                continue  # console scripts beside the interpreter, and files a record lists but nothing installed
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, folder / file)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
    return str(folder)


def _installed_closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions `requirements` need, with everything they need in turn (markers as here)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(text), frozenset({""})) for text in requirements]
    while todo:
        requirement, extras = todo.pop()
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate({"extra": extra}) for extra in extras):
            continue
        name = canonicalize_name(requirement.name)
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        dist = found.setdefault(name, importlib.metadata.distribution(requirement.name))
        wanted = frozenset({"", *requirement.extras})
        todo.extend((Requirement(text), wanted) for text in dist.requires or [])
    return list(found.values())


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, Proc, Path, Path]]:
    missing = None
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        missing = "not root with useradd (the test makes a user)"
    elif not os.access(SYSTEM_PYTHON, os.X_OK):
        missing = f"no system Python at {SYSTEM_PYTHON} (one every user may run)"
    require(missing, "run as root on a Debian machine with python3 (apt-get install python3)")
    require_etcd()
    ensure_user()
    root = tmp_path_factory.mktemp("run-as")
    server = EtcdProcess(root / "etcd-data").start()
    fed = Federation(root / "fed", server)
    fed.root.mkdir()
    # Outside pytest's temporary folder (root's, 0700): the task's user must be able to pass through to the agent's.
    outside = Path(tempfile.mkdtemp(prefix="flyte-run-as-"))
    outside.chmod(0o711)
    secrets = Path(tempfile.mkdtemp(prefix="flyte-run-as-token-"))
    token_file = secrets / "agent.token"
    agent = None
    try:
        fed.start_gateway()
        token_file.write_text(fed.mint("agent:runas"))
        token_file.chmod(0o600)
        work = outside / "agent"
        python_path = _worker_site(outside)
        command = [
            sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", fed.endpoint, "--cluster", "runas",
            "--token-file", str(token_file), "--work-dir", str(work), "--cpu", "2", "--spares", "1",
            "--run-as", USER,
        ]  # fmt: skip
        env = {**fed.env, "FLYTE_HOME": str(work), "PYTHONPATH": python_path, "FLYTE_WORKER_PYTHON": SYSTEM_PYTHON}
        agent = Proc("agent-runas", command, fed.root / "agent-runas.log", env)
        agent.start(_CONNECTED, 60)
        # Another attempt's secrets, where the agent puts them: owned by the agent, as every attempt's are until
        # its own process starts.
        other = work / "attempts" / "other_a0_1" / "secrets"
        other.mkdir(parents=True, mode=0o700)
        other.parent.chmod(0o700)
        (other / "key").write_text("another attempt's secret")
        (other / "key").chmod(0o600)
        yield fed, agent, token_file, work
    finally:
        if agent is not None:
            agent.stop()
        fed.close()
        server.stop()
        shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(secrets, ignore_errors=True)


def test_a_task_runs_as_the_run_as_user_and_reaches_none_of_the_agents_files(
    federation: tuple[Federation, Proc, Path, Path],
) -> None:
    fed, agent, token_file, work = federation
    program = fed.load("run_as_probe_program", PROBE)
    fed.connect()
    flyte.deploy(program.env)
    flyte.deploy(program.pooled)
    seen = json.loads(flyte.run(program.probe, token_file=str(token_file), agent_pid=agent.pid, work_dir=str(work))
                      .outputs()[0])  # fmt: skip
    user = pwd.getpwnam(USER)
    assert (seen["uid"], seen["euid"]) == (user.pw_uid, user.pw_uid), seen
    assert seen["groups"] in ([], [user.pw_gid]), "no supplementary groups of the agent's"
    for reached in ("token_file", "agent_environ", "work_dir", "attempts", "assignments", "reported", "other_secret"):
        assert seen[reached] is False, f"the task reached {reached}: {seen}"
    assert seen["bundle_writable"] is False, "attempts share a bundle: one must not change it for the others"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert not list((work / "assignments").iterdir()), "the assignment was removed after use"
    assert flyte.run(program.pooled_uid).outputs()[0] == user.pw_uid, "a reusable pool's worker runs as the user too"


def test_run_as_needs_root_and_a_real_user(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "flyte.cli", "agent", "serve", "--gateway", "http://127.0.0.1:9", "--cluster", "x",
        "--token-file", "-", "--work-dir", str(tmp_path / "w"), "--run-as", "no-such-user-here",
    ]  # fmt: skip
    answer = subprocess.run(command, input="t", capture_output=True, text=True, timeout=60)
    assert answer.returncode == 2
    assert "no user 'no-such-user-here'" in answer.stderr

"""The brief's programs, unchanged, through a gateway and two agents running as separate processes (`flyte rig`),
and what remote execution promises: calls across environments and clusters, OOM recovery through `override`,
aborts that reach running children, and an agent killed mid-run without losing or duplicating work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from prerequisites import CGROUPS_INSTALL, require
from processes import pid_alive
from programs import write_and_import
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))

pytestmark = pytest.mark.timeout(180)


@dataclass
class Rig:
    cwd: Path
    env: dict[str, str]

    def flyte(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flyte.cli", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, program: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(program)], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def load(self, name: str, source: str) -> ModuleType:
        """Write a program into the rig's directory and import it here, as `flyte.run` callers do."""
        return write_and_import(self.cwd, name, source)

    def connect(self) -> None:
        """Point this test process's SDK at the rig (as its config file does for the programs)."""
        flyte.init_from_config(self.cwd / ".flyte" / "config.yaml")

    def pids(self) -> dict[str, int]:
        import json

        state = json.loads((Path(self.env["FLYTE_HOME"]) / "rig" / "rig.json").read_text())
        return dict(state["pids"])


def start_rig(root: Path, *up_args: str, clusters: str = "us-east,eu-west", **extra_env: str) -> Rig:
    """`flyte rig up --clusters CLUSTERS UP_ARGS...` in `root`, with its own FLYTE_HOME and HOME (and `extra_env`)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    # Programs are written here and bundled whole: the rig's own state is not their code.
    (root / ".flyteignore").write_text("flyte-home/\nhome/\n")
    env = {**os.environ, "FLYTE_HOME": str(root / "flyte-home"), "HOME": str(root / "home"), **extra_env}
    rig = Rig(root, env)
    up = rig.flyte("rig", "up", "--clusters", clusters, *up_args, timeout=90)
    assert up.returncode == 0, up.stderr + up.stdout
    return rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("rig"))
    try:
        yield started
    finally:
        started.flyte("rig", "down")


def run_example(rig: Rig, program: Path) -> flyte.remote.Run:
    """Run one of the brief's programs against the rig; returns its run, checked to have succeeded."""
    result = rig.python(program)
    assert result.returncode == 0, result.stderr
    run_name = result.stdout.strip().splitlines()[-2]
    rig.connect()
    run = flyte.remote.Run.get(run_name)
    assert run.phase == "succeeded"
    return run


@pytest.mark.parametrize("program", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_through_the_rig(rig: Rig, program: Path) -> None:
    actions = run_example(rig, program).actions()
    assert all(a.phase == "succeeded" for a in actions)
    assert all(a.attempts == 1 for a in actions), "nothing ran twice"


CROSS = """
import flyte
from flyte import remote

east = flyte.TaskEnvironment("cross_east", placement=flyte.Placement(clusters=["us-east"]))
west = flyte.TaskEnvironment("cross_west", placement=flyte.Placement(clusters=["eu-west"]))
east.add_dependency(west)


@west.task
async def where(x: int) -> str:
    print("computing where for", x, flush=True)
    return flyte.ctx().action.name + ":" + str(x * 2)


@east.task
async def main() -> str:
    ref = remote.Task.get("cross_west.where", auto_version="latest")
    return await ref(x=21)
"""


def test_a_remote_task_call_crosses_environments_and_clusters(rig: Rig) -> None:
    cross_program = rig.load("cross_program", CROSS)
    rig.connect()
    flyte.deploy(cross_program.east)
    run = flyte.run(cross_program.main)
    assert run.outputs()[0].endswith(":42")
    actions = {a.parent: a for a in call_sync(client_for().list_actions(run.name))}
    assert actions[None].cluster == "us-east"
    assert actions["a0"].task == "cross_west.where"
    assert actions["a0"].cluster == "eu-west"
    child = actions["a0"].name
    # The agent ships the worker's output in batches: wait until it has arrived.
    assert_eventually(lambda: "computing where for 21" in rig.flyte("get", "logs", run.name, child).stdout, timeout=20)


OOM = """
import flyte

env = flyte.TaskEnvironment("oom_env")


@env.task
async def hog(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block) // (1024 * 1024)


@env.task
async def main() -> str:
    small = hog.override(resources=flyte.Resources(memory="64Mi"))
    try:
        await small(200)
    except flyte.errors.OOMError:
        big = hog.override(resources=flyte.Resources(memory="1Gi"))
        return "recovered with " + str(await big(200))
    return "no OOM"
"""


def test_an_oom_is_caught_and_retried_with_more_memory(rig: Rig) -> None:
    from agent.backends._cgroups import shared

    require(None if shared().available() else "no writable cgroup v1 memory hierarchy on this machine", CGROUPS_INSTALL)
    program = rig.cwd / "oom_program.py"
    program.write_text(OOM)
    result = rig.flyte("run", str(program), "main")
    assert result.returncode == 0, result.stderr
    assert "recovered with 200" in result.stdout


ABORT = """
import asyncio
import os
from pathlib import Path

import flyte

env = flyte.TaskEnvironment("abort_env")


@env.task
async def sleeper(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    await asyncio.sleep(300)


@env.task
async def main(marker: str) -> None:
    await sleeper(marker)
"""


def test_an_abort_reaches_running_children(rig: Rig) -> None:
    marker = rig.cwd / "sleeper.pid"
    abort_program = rig.load("abort_program", ABORT)
    rig.connect()
    run = flyte.run(abort_program.main, marker=str(marker))
    # The file exists before its content is written: wait for the pid itself.
    assert_eventually(lambda: marker.exists() and marker.read_text().strip().isdigit(), timeout=60)
    pid = int(marker.read_text())
    run.abort("the test is done waiting")
    assert_eventually(lambda: not pid_alive(pid), timeout=30)
    phases = {a.name: a.phase for a in flyte.remote.Run.get(run.name).actions()}
    assert set(phases.values()) == {"aborted"}


FAILOVER = """
import asyncio
import os
from pathlib import Path

import flyte

env = flyte.TaskEnvironment("failover_env", resources=flyte.Resources(cpu=1))


@env.task
async def work(i: int, ledger: str) -> int:
    with open(ledger, "a") as out:
        out.write(f"{i} {os.environ.get('FLYTE_CLUSTER')} {flyte.ctx().attempt} {os.getpid()}\\n")
    await asyncio.sleep(3)
    return i


@env.task
async def main(ledger: str) -> int:
    return sum(await asyncio.gather(*(work(i, ledger) for i in range(4))))
"""


def test_a_killed_agent_does_not_stop_the_run(tmp_path: Path) -> None:
    rig = start_rig(tmp_path / "failover", FLYTE_LEASE_TTL="3")
    try:
        ledger = rig.cwd / "ledger.txt"
        failover_program = rig.load("failover_program", FAILOVER)
        rig.connect()
        run = flyte.run(failover_program.main, ledger=str(ledger))
        # Two cpus per agent and one per action: both clusters run work. Kill one agent while it does.
        assert_eventually(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 4, timeout=60)
        victim = ledger.read_text().splitlines()[0].split()[1]
        orphans = [int(line.split()[3]) for line in ledger.read_text().splitlines() if line.split()[1] == victim]
        os.kill(rig.pids()[f"agent-{victim}"], signal.SIGKILL)
        # The killed agent's workers die with it: nothing keeps running that no agent watches.
        assert_eventually(lambda: not any(pid_alive(pid) for pid in orphans), timeout=15)
        started = time.monotonic()
        assert run.outputs() == (6,)
        assert time.monotonic() - started < 60
        actions = call_sync(client_for().list_actions(run.name))
        moved = [a for a in actions if a.parent == "a0" and a.attempts > 1]
        assert moved, "the killed cluster's work ran again elsewhere"
        assert all(a.cluster != victim for a in moved)
        assert all(a.phase == "succeeded" for a in actions)
        assert all(a.system_failures <= 1 and a.user_failures == 0 for a in actions)
    finally:
        rig.flyte("rig", "down")


CACHED = """
import flyte

env = flyte.TaskEnvironment("cached_env")


@env.task(cache="auto")
async def square(x: int) -> int:
    return x * x


@env.task
async def main(x: int) -> int:
    return await square(x)
"""


def test_the_gateway_cache_answers_without_placing(rig: Rig) -> None:
    cached_program = rig.load("cached_program", CACHED)
    rig.connect()
    first = flyte.run(cached_program.main, x=7)
    assert first.outputs() == (49,)
    second = flyte.run(cached_program.main, x=7)
    assert second.outputs() == (49,)
    (child,) = [a for a in call_sync(client_for().list_actions(second.name)) if a.parent == "a0"]
    assert child.cached
    assert child.cluster is None, "a cache hit is never placed"
    assert child.attempts == 0
    fresh = flyte.with_runcontext(overwrite_cache=True).run(cached_program.main, x=7)
    assert fresh.outputs() == (49,)
    (rerun,) = [a for a in call_sync(client_for().list_actions(fresh.name)) if a.parent == "a0"]
    assert not rerun.cached
    assert rerun.attempts == 1


POOLED_FAN_OUT = """
import asyncio
import os

import flyte

pool = flyte.TaskEnvironment("socket_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=8))
env = flyte.TaskEnvironment("socket_parent", depends_on=[pool])


@pool.task
async def where(i: int) -> int:
    return os.getpid()


@env.task
async def main(n: int) -> list[int]:
    return list(await asyncio.gather(*(where(i) for i in range(n))))
"""


def gateway_events(rig: Rig, event: str) -> int:
    state = json.loads((Path(rig.env["FLYTE_HOME"]) / "rig" / "rig.json").read_text())
    with urllib.request.urlopen(f"{state['endpoint']}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf'^flyte_gateway_events_total\{{event="{event}"\}} (\d+)$', text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def worker_sockets_opened(rig: Rig) -> int:
    return gateway_events(rig, "worker_sockets_opened")


def test_a_pool_workers_attempts_share_one_socket_to_the_gateway(rig: Rig) -> None:
    program = rig.load("pooled_fan_out_program", POOLED_FAN_OUT)
    rig.connect()
    before = worker_sockets_opened(rig)
    run = flyte.run(program.main, n=40)
    (pids,) = run.outputs()
    assert len(pids) == 40
    opened = worker_sockets_opened(rig) - before
    # The parent's worker opens one; each pool worker that ran children opens one, not one per child.
    assert 1 <= opened <= 1 + len(set(pids)) < 40, (opened, set(pids))


CHAIN = """
import flyte

pool = flyte.TaskEnvironment("chain_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2))
env = flyte.TaskEnvironment("chain_parent", depends_on=[pool])


@pool.task
async def step(x: int) -> int:
    return x + 1


@env.task
async def main(n: int) -> int:
    x = 0
    for _ in range(n):
        x = await step(x)
    return x
"""


def test_a_child_submitted_while_nothing_waits_is_placed_in_its_submissions_commit(rig: Rig) -> None:
    program = rig.load("chain_program", CHAIN)
    rig.connect()
    before = gateway_events(rig, "placed_at_submit")
    run = flyte.run(program.main, n=6)
    assert run.outputs() == (6,)
    # Each child arrived alone, with nothing queued before it: the leader placed it as it was submitted.
    assert gateway_events(rig, "placed_at_submit") - before == 6
    children = [a for a in call_sync(client_for().list_actions(run.name)) if a.parent == "a0"]
    assert len(children) == 6
    assert all(a.attempts == 1 and a.cluster in ("us-east", "eu-west") for a in children)
    for child in children:
        # The decision is recorded as a pass's would be (`flyte get placement`, `flyte policy simulate`).
        shown = rig.flyte("get", "placement", run.name, child.name)
        assert shown.returncode == 0, shown.stderr
        assert "attempt 1" in shown.stdout
        assert child.cluster is not None
        assert child.cluster in shown.stdout


POOLED = """
import asyncio
import os
import time

import flyte

pool = flyte.TaskEnvironment(
    "pooled_env",
    resources=flyte.Resources(cpu=1),
    reusable=flyte.ReusePolicy(replicas=1, concurrency=12),
    placement=flyte.Placement(clusters=["us-east"]),
)
env = flyte.TaskEnvironment("pooled_parent", depends_on=[pool])


@pool.task
async def meet(folder: str, i: int, n: int) -> int:
    # Returns only once all n are in flight together: on a cluster of 2 cpu, a request each would allow 2.
    open(os.path.join(folder, str(i)), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {n} were in flight together")
        await asyncio.sleep(0.02)
    return i


@env.task
async def main(folder: str, n: int) -> int:
    return sum(await asyncio.gather(*(meet(folder, i, n) for i in range(n))))
"""


def test_a_pools_actions_hold_its_replicas_room_so_one_replica_takes_its_whole_concurrency(
    rig: Rig, tmp_path: Path
) -> None:
    """Twelve children of a pool of one 1-cpu replica with 12 slots run together on a 2-cpu cluster: they hold the
    replica's room once between them (a request each held the cluster's room after two)."""
    program = rig.load("pooled_program", POOLED)
    rig.connect()
    folder = tmp_path / "met"
    folder.mkdir()
    run = flyte.run(program.main, folder=str(folder), n=12)
    assert run.outputs() == (sum(range(12)),)
    children = [a for a in call_sync(client_for().list_actions(run.name)) if a.parent == "a0"]
    assert len(children) == 12
    assert all(a.cluster == "us-east" and a.attempts == 1 for a in children)


GATED = """
import asyncio
import os

import flyte

pool = flyte.TaskEnvironment(
    "gated_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=1), placement=flyte.Placement(clusters=["us-east"])
)
env = flyte.TaskEnvironment("gated_parent", depends_on=[pool])


@pool.task
async def hold(gate: str, i: int) -> int:
    open(f"{gate}.started-{i}", "w").close()  # for the test to see which children started
    while not os.path.exists(gate):
        await asyncio.sleep(0.02)
    return i


@env.task
async def main(gate: str, n: int) -> int:
    return sum(await asyncio.gather(*(hold(gate, i) for i in range(n))))
"""


def test_children_waiting_for_a_full_pool_each_say_why_and_one_decision_is_recorded_for_them(
    rig: Rig, tmp_path: Path
) -> None:
    program = rig.load("gated_program", GATED)
    rig.connect()
    gate = tmp_path / "gate"
    run = flyte.run(program.main, gate=str(gate), n=4)

    def children() -> list[flyte.remote.Action]:
        return [a for a in call_sync(client_for().list_actions(run.name)) if a.parent == "a0"]

    # One child holds the pool's only slot; the other three wait for it, each with its reason.
    assert_eventually(lambda: sum(a.phase == "queued" and a.waiting is not None for a in children()) == 3, timeout=60)
    waiting = [a for a in children() if a.phase == "queued"]
    assert all((a.waiting or "").startswith("no cluster has room now (busy: 1") for a in waiting), waiting
    shown = [rig.flyte("get", "placement", run.name, a.name) for a in waiting]
    recorded = [s for s in shown if s.returncode == 0]
    assert recorded, "the decision they wait on is recorded"
    assert "its pool is full (1 of 1 slots in flight)" in recorded[0].stdout, recorded[0].stdout
    pointing = [s for s in shown if s.returncode != 0]
    assert pointing, "submitted together, they share the first one's decision"
    for answer in pointing:
        assert "behind an earlier action of a0 with the same task and demand" in answer.stderr + answer.stdout
    gate.touch()
    assert run.outputs() == (6,)
    assert all(a.phase == "succeeded" and a.attempts == 1 for a in children())


@contextmanager
def pool_queue_depth(rig: Rig, folder: Path, depth: int) -> Iterator[None]:
    """The rig's policy lets a full pool take `depth` actions per slot to wait on its agent; restored after."""
    before = rig.flyte("policy", "get").stdout
    deep = folder / "deep.yaml"
    deep.write_text(f"version: deep-pools\npool_queue_depth: {depth}\n")
    assert rig.flyte("policy", "apply", str(deep)).returncode == 0
    try:
        yield
    finally:
        restore = folder / "before.yaml"
        restore.write_text(before)
        assert rig.flyte("policy", "apply", str(restore)).returncode == 0


def test_with_a_pool_queue_depth_children_of_a_full_pool_wait_on_its_agent_and_all_run(
    rig: Rig, tmp_path: Path
) -> None:
    program = rig.load("gated_program", GATED)
    rig.connect()
    with pool_queue_depth(rig, tmp_path, 4):
        gate = tmp_path / "gate"
        run = flyte.run(program.main, gate=str(gate), n=4)

        def children() -> list[flyte.remote.Action]:
            return [a for a in call_sync(client_for().list_actions(run.name)) if a.parent == "a0"]

        # The pool's one slot holds one; the other three are placed too, to wait on its agent, none in the queue.
        assert_eventually(lambda: len(children()) == 4, timeout=60)
        assert_eventually(lambda: all(a.phase in ("placed", "running") for a in children()), timeout=60)
        shown = [rig.flyte("get", "placement", run.name, a.name) for a in children()]
        assert any("waits there for a slot (1 of 1 slots in flight)" in s.stdout for s in shown), shown
        gate.touch()
        assert run.outputs() == (6,)
        assert all(a.phase == "succeeded" and a.attempts == 1 for a in children())


def test_children_waiting_on_their_agent_for_a_slot_never_start_once_their_run_is_aborted(
    rig: Rig, tmp_path: Path
) -> None:
    program = rig.load("gated_program", GATED)
    rig.connect()
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with pool_queue_depth(rig, tmp_path, 4):
        run = flyte.run(program.main, gate=str(first / "gate"), n=4)

        def children() -> list[flyte.remote.Action]:
            return [a for a in call_sync(client_for().list_actions(run.name)) if a.parent == "a0"]

        # One holds the pool's only slot; three wait for it on the agent.
        assert_eventually(
            lambda: len(children()) == 4 and all(a.phase in ("placed", "running") for a in children()), 60
        )
        assert_eventually(lambda: len(list(first.glob("gate.started-*"))) == 1, timeout=60)
        assert rig.flyte("abort", "run", run.name).returncode == 0
        # A later run's child takes the same slot after the aborted ones' turn. A waiting child whose abort reached
        # the agent before its turn came must pass the slot on: handed to the worker, it would hold the slot (its
        # gate never opens, and its abort is past) and this run would never end. (One whose abort comes after its
        # turn starts, and is stopped in its worker by that abort.)
        (second / "gate").touch()
        later = flyte.run(program.main, gate=str(second / "gate"), n=1)
        assert later.outputs() == (0,)
        assert all(a.phase == "aborted" for a in children())


FAILING = """
import flyte

env = flyte.TaskEnvironment("failing_env")


def check(x: int) -> None:
    if x < 0:
        raise ValueError(f"x must not be negative, got {x}")


@env.task
async def fail(x: int) -> int:
    check(x)
    return x


@env.task
async def main(x: int) -> int:
    return await fail(x)
"""


def test_a_remote_traceback_names_the_users_file_not_the_bundle_copy(rig: Rig) -> None:
    failing_program = rig.load("failing_program", FAILING)
    rig.connect()
    run = flyte.run(failing_program.main, x=-1)
    with pytest.raises(flyte.errors.RuntimeUserError) as raised:
        run.wait()
    assert raised.value.code == "ValueError"
    source = str((rig.cwd / "failing_program.py").resolve())
    (child,) = [a for a in call_sync(client_for().list_actions(run.name)) if a.parent == "a0"]
    assert child.error is not None
    assert child.error.traceback is not None
    recorded = child.error.traceback
    assert f'File "{source}", line 9, in check' in recorded, recorded
    assert f'File "{source}", line 14, in fail' in recorded, recorded
    assert "bundles" not in recorded, "no path into an agent's bundle copy"
    assert raised.value.traceback is not None
    assert "bundles" not in raised.value.traceback


TRACED = """
import asyncio
import os

import flyte

env = flyte.TaskEnvironment("traced_env")


@flyte.trace
async def expensive(x: int, ledger: str) -> int:
    with open(ledger, "a") as out:
        out.write(f"expensive {x}\\n")
    return x * 10


@env.task
async def main(x: int, ledger: str) -> int:
    value = await expensive(x, ledger)
    if flyte.ctx().attempt == 1:
        # Give the checkpoint time to leave, then die as a lost worker does: no result, no goodbye.
        await asyncio.sleep(1)
        os._exit(137)
    return value + 1
"""


def test_a_retried_attempt_replays_recorded_traces(rig: Rig) -> None:
    traced_program = rig.load("traced_program", TRACED)
    ledger = rig.cwd / "traced-ledger.txt"
    rig.connect()
    run = flyte.run(traced_program.main, x=4, ledger=str(ledger))
    assert run.outputs() == (41,)
    assert ledger.read_text().splitlines() == ["expensive 4"], "the traced call ran once, then was replayed"
    (root,) = [a for a in call_sync(client_for().list_actions(run.name)) if a.name == "a0"]
    assert root.attempts == 2
    assert root.system_failures == 1
    assert root.user_failures == 0


FILES = """
from pathlib import Path
import tempfile

import flyte
from flyte.io import Dir, File

east = flyte.TaskEnvironment("files_east", placement=flyte.Placement(clusters=["us-east"]))
west = flyte.TaskEnvironment("files_west", placement=flyte.Placement(clusters=["eu-west"]))
east.add_dependency(west)


@east.task
async def produce(text: str) -> tuple[File, Dir]:
    root = Path(tempfile.mkdtemp())
    (root / "note.txt").write_text(text)
    (root / "sub").mkdir()
    (root / "sub" / "more.txt").write_text(text.upper())
    return await File.from_local(root / "note.txt"), await Dir.from_local(root)


@west.task
async def consume(f: File, d: Dir) -> str:
    with f.open_sync() as handle:
        first = handle.read().decode()
    names = sorted(g.name or "" for g in d.walk_sync())
    return first + "|" + ",".join(names)


@east.task
async def main(text: str) -> str:
    f, d = await produce(text)
    return await consume(f, d)
"""


def test_files_and_dirs_cross_clusters_through_the_gateway(rig: Rig) -> None:
    files_program = rig.load("files_program", FILES)
    rig.connect()
    run = flyte.run(files_program.main, text="made in the east")
    assert run.outputs() == ("made in the east|more.txt,note.txt",)
    clusters = {a.task.rsplit(".", 1)[1]: a.cluster for a in call_sync(client_for().list_actions(run.name))}
    assert clusters == {"main": "us-east", "produce": "us-east", "consume": "eu-west"}


SEMANTICS = """
import asyncio

import flyte

env = flyte.TaskEnvironment("semantics_env")


@env.task
async def square(x: int) -> int:
    return x * x


@env.task(retries=flyte.RetryStrategy(2, backoff=flyte.Backoff(base=0.1)))
async def flaky(x: int) -> int:
    if flyte.ctx().attempt == 1:
        raise ValueError("first attempts fail")
    return x + flyte.ctx().attempt


@env.task(timeout=1)
async def slow() -> int:
    await asyncio.sleep(60)
    return 0


@env.task
async def main() -> str:
    with flyte.group("squares"):
        squares = [r async for r in flyte.map.aio(square, range(5), concurrency=2)]
    retried = await flaky(10)
    try:
        await slow()
        timed_out = "no"
    except flyte.errors.TaskTimeoutError:
        timed_out = "yes"
    return f"{sum(squares)} {retried} {timed_out}"
"""


def test_map_group_retries_and_timeouts_behave_as_in_local_mode(rig: Rig) -> None:
    semantics = rig.load("semantics_program", SEMANTICS)
    rig.connect()
    run = flyte.run(semantics.main)
    assert run.outputs() == ("30 12 yes",)
    actions = call_sync(client_for().list_actions(run.name))
    squares = [a for a in actions if a.task.endswith(".square")]
    assert len(squares) == 5
    assert {a.group for a in squares} == {"squares"}
    (flaky,) = [a for a in actions if a.task.endswith(".flaky")]
    assert (flaky.attempts, flaky.user_failures, flaky.system_failures) == (2, 1, 0)
    (slow,) = [a for a in actions if a.task.endswith(".slow")]
    assert slow.phase == "failed"
    assert slow.error is not None
    assert slow.error.code == "TaskTimeoutError"
    # The same program gives the same answer in local mode.
    local = flyte.with_runcontext(mode="local").run(semantics.main)
    assert local.outputs() == ("30 12 yes",)


REPORTED = """
import flyte
import flyte.durable
import flyte.report

env = flyte.TaskEnvironment("reported_env")


@env.task(report=True, retries=flyte.RetryStrategy(1, backoff=flyte.Backoff(base=0.1)))
def main(ledger: str) -> float:
    stamp = flyte.durable.time()
    flyte.durable.sleep(0.5)
    flyte.report.log(f"<p>stamp {stamp}</p>")
    attempt = flyte.ctx().attempt
    with open(ledger, "a") as out:
        out.write(f"{attempt} {stamp}\\n")
    if attempt == 1:
        raise RuntimeError("fail once after the durable sleep")
    return stamp
"""


def test_reports_and_durable_time_in_a_sync_remote_task(rig: Rig) -> None:
    import hashlib

    from flyte.report import Report

    reported = rig.load("reported_program", REPORTED)
    ledger = rig.cwd / "reported-ledger.txt"
    rig.connect()
    run = flyte.run(reported.main, ledger=str(ledger))
    (stamp,) = run.outputs()
    lines = ledger.read_text().splitlines()
    assert lines == [f"1 {stamp}", f"2 {stamp}"], "the retry saw the durable time the first attempt recorded"
    # The page is deterministic, so its digest names the blob the worker put in the gateway's store.
    expected = Report("a0")
    expected.get_tab("main").log(f"<p>stamp {stamp}</p>")
    page = expected.get_final_report().encode()
    stored = call_sync(client_for().get_blob(hashlib.sha256(page).hexdigest()))
    assert stored == page

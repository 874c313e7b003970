"""`flyte run` as a pipe or a CI log sees it, through a real rig (a gateway and an agent as processes): the run's
name and url before it ends, then one line per phase change; detaching, following again, and Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
from processes import ctrl_c_reaches_children
from test_rig import Rig
from waiting import assert_eventually

import flyte
from flyte._wire import Phase

pytestmark = pytest.mark.timeout(180)

# The task waits for a file the test writes: the run is held open exactly as long as the test needs.
GATED = """
import asyncio
from pathlib import Path

import flyte

env = flyte.TaskEnvironment("follow_gated")


@env.task
async def flaky() -> int:
    raise ValueError("flaky says no")


@env.task
async def main(gate: str, fail: bool = False) -> str:
    try:
        await flaky()
    except flyte.errors.RuntimeUserError:
        pass
    while not Path(gate).exists():
        await asyncio.sleep(0.05)
    if fail:
        raise RuntimeError("failed after the gate")
    return Path(gate).read_text()
"""


@pytest.fixture(scope="module")
def rig(one_cluster_rig: Rig) -> Rig:
    (one_cluster_rig.cwd / "gated.py").write_text(GATED)
    return one_cluster_rig


class Lines:
    """A stream's lines as they arrive, read by a thread: the test waits on them with deadlines."""

    def __init__(self, stream: IO[str]):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        assert_eventually(lambda: any(re.search(pattern, line) for line in self.lines), timeout=timeout)
        return next(line for line in self.lines if re.search(pattern, line))

    def fields(self) -> dict[str, str]:
        return dict(line.split(": ", 1) for line in self.lines if ": " in line)


class Flyte:
    """A `flyte` command running in the background with its stdout and stderr pipes read as they arrive."""

    def __init__(self, process: subprocess.Popen[str]):
        self.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        self.out = Lines(process.stdout)
        self.err = Lines(process.stderr)

    def exit_code(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        # The readers end with the pipes; what they read is then complete.
        self.out._thread.join(timeout)
        self.err._thread.join(timeout)
        return code


@contextmanager
def flyte_cli(rig: Rig, *args: str, **env: str) -> Iterator[Flyte]:
    with ctrl_c_reaches_children():
        process = subprocess.Popen(
            [sys.executable, "-m", "flyte.cli", *args],
            cwd=rig.cwd,
            env={**rig.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        yield Flyte(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def phase_of(rig: Rig, run: str) -> Phase:
    """The run's phase through the gateway's API, as this test process sees it."""
    rig.connect()
    return flyte.remote.Run.get(run).phase


def test_name_and_url_come_first_then_a_line_per_phase_change(rig: Rig, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with flyte_cli(rig, "run", "gated.py", "main", "--gate", str(gate)) as run:
        name = run.out.wait_for(r"^run: ").removeprefix("run: ")
        url = run.out.wait_for(r"^url: ").removeprefix("url: ")
        # Printed while the run still waits for the gate: before its end, through a pipe.
        assert not phase_of(rig, name).is_terminal
        assert url.endswith(f"/runs/{name}")
        run.err.wait_for(rf"run {name} running on us-east$")
        run.err.wait_for(r"action \S+ \(follow_gated\.flaky\) failed on us-east: ValueError: flaky says no$")
        gate.write_text("opened")

        assert run.exit_code() == 0, run.err.lines

    assert run.out.fields() == {"run": name, "url": url, "phase": "succeeded", "output": '"opened"'}
    stamped = [line.split(" ", 1) for line in run.err.lines]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", stamp) for stamp, _ in stamped), run.err.lines
    root = [text for _, text in stamped if text.startswith(f"run {name} ")]
    # The first line is the phase the run had when following began (the gateway may have placed it by then).
    order = [Phase.QUEUED, Phase.PLACED, Phase.RUNNING, Phase.SUCCEEDED]
    seen = [Phase(text.split(" ")[2].rstrip(":")) for text in root]
    assert seen == sorted(seen, key=order.index), root
    assert root[-2:] == [f"run {name} running on us-east", root[-1]]
    assert re.fullmatch(rf"run {name} succeeded in .+", root[-1]), root
    assert len(set(root)) == len(root), "each change is shown once"
    assert len(stamped) == len(root) + 1, "the root's changes and the one failed child, nothing else"


def _detached(rig: Rig, gate: Path, *task_args: str) -> str:
    """A run started with --detach: the command returns while the run waits for its gate. The run's name."""
    done = rig.flyte("run", "--detach", "gated.py", "main", "--gate", str(gate), *task_args)
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert list(fields) == ["run", "url"]
    name = fields["run"]
    assert done.stderr.splitlines() == [f"Detached: the run goes on; follow it with flyte get run {name} --follow"]
    assert not phase_of(rig, name).is_terminal
    return name


def test_detach_returns_at_once_and_get_run_follow_attaches(rig: Rig, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    name = _detached(rig, gate)
    shown = rig.flyte("get", "run", name)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:3] == [f"run: {name}", f"url: {rig_url(rig, name)}", "task: follow_gated.main"]

    with flyte_cli(rig, "get", "run", name, "--follow") as attached:
        attached.err.wait_for(rf"run {name} (placed|running)")
        gate.write_text("attached")
        assert attached.exit_code() == 0, attached.err.lines

    assert attached.out.fields() == {
        "run": name,
        "url": rig_url(rig, name),
        "phase": "succeeded",
        "output": '"attached"',
    }
    assert re.fullmatch(rf"\d\d:\d\d:\d\d run {name} succeeded in .+", attached.err.lines[-1]), attached.err.lines


def test_following_a_run_exits_with_its_outcome(rig: Rig, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    name = _detached(rig, gate, "--fail")
    with flyte_cli(rig, "get", "run", name, "-f") as attached:
        attached.err.wait_for(rf"run {name} (placed|running)")
        gate.write_text("go")
        assert attached.exit_code() == 1

    assert attached.out.fields()["phase"] == "failed"
    assert attached.err.lines[-1] == f"Error: run {name} failed: RuntimeError: failed after the gate"
    # Following a run that has ended reports it at once, the same way.
    again = rig.flyte("get", "run", name, "--follow")
    assert (again.returncode, again.stdout.splitlines()[-1]) == (1, "phase: failed")


@contextmanager
def interrupted_once(rig: Rig, tmp_path: Path, grace: str) -> Iterator[tuple[Flyte, str]]:
    """`flyte run` of a gated task, sent one SIGINT once it follows the running run."""
    gate = tmp_path / "gate"
    with flyte_cli(rig, "run", "gated.py", "main", "--gate", str(gate), FLYTE_ABORT_GRACE_SECONDS=grace) as run:
        name = run.out.wait_for(r"^run: ").removeprefix("run: ")
        run.err.wait_for(rf"run {name} running")
        run.process.send_signal(signal.SIGINT)
        yield run, name


def test_ctrl_c_stops_following_and_leaves_the_run_running(rig: Rig, tmp_path: Path) -> None:
    with interrupted_once(rig, tmp_path, grace="0.5") as (run, name):
        assert run.exit_code() == 130, run.err.lines

    assert run.out.lines[-1] == "phase: running"
    assert f"Stopped following run {name}; it goes on in the gateway." in run.err.lines
    assert f"  follow it again: flyte get run {name} --follow" in run.err.lines
    assert f"  abort it:        flyte abort run {name}" in run.err.lines
    assert phase_of(rig, name) is Phase.RUNNING

    aborted = rig.flyte("abort", "run", name)
    assert aborted.returncode == 0, aborted.stderr
    assert_eventually(lambda: phase_of(rig, name) is Phase.ABORTED, timeout=30)


def test_a_second_ctrl_c_aborts_the_run(rig: Rig, tmp_path: Path) -> None:
    # A window wide enough that the second signal cannot miss it on a loaded machine.
    with interrupted_once(rig, tmp_path, grace="120") as (run, name):
        run.err.wait_for(r"^Press Ctrl-C again within 120 s to abort it now\.$")
        run.process.send_signal(signal.SIGINT)
        assert run.exit_code() == 130, run.err.lines

    assert run.out.lines[-1] == "phase: aborted"
    assert run.err.lines[-1] == f"Error: run {name} aborted: ActionAbortedError: interrupted"
    assert_eventually(lambda: phase_of(rig, name) is Phase.ABORTED, timeout=30)


def rig_url(rig: Rig, run: str) -> str:
    rig.connect()
    return flyte.remote.Run.get(run).url

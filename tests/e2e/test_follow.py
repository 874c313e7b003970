"""`flyte run` as a pipe or a CI log sees it, through a real rig (a gateway and an agent as processes): the run's
name and url before it ends, then one line per phase change; detaching, following again, and Ctrl-C."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest
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
async def main(gate: str) -> str:
    try:
        await flaky()
    except flyte.errors.RuntimeUserError:
        pass
    while not Path(gate).exists():
        await asyncio.sleep(0.05)
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

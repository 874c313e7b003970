"""Admission on the agent, through a rig (a gateway and an agent as separate processes): one-off tasks that declare
no resources count as the default request, the agent never runs more worker processes than it admits, and an
attempt waiting for admission stays `placed` until a slot is free or it is aborted."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from processes import pid_alive
from test_rig import Rig, start_rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for

pytestmark = pytest.mark.timeout(600)

FAN_OUT = """
import asyncio
import os
import time
from pathlib import Path
from types import ModuleType

import flyte

env = flyte.TaskEnvironment("admission_env")


@env.task
async def leaf(i: int, ledger: str) -> int:
    started = time.time()
    await asyncio.sleep(0.2)
    Path(ledger, f"{i}").write_text(f"{os.getpid()} {started} {time.time()}")
    return i


@env.task
async def main(n: int, ledger: str) -> int:
    return sum(await asyncio.gather(*(leaf(i, ledger) for i in range(n))))
"""

SLEEPERS = """
import asyncio
import os
from pathlib import Path
from types import ModuleType

import flyte

env = flyte.TaskEnvironment("admission_sleepers")


@env.task
async def sleeper(i: int, markers: str) -> None:
    Path(markers, f"{i}").write_text(str(os.getpid()))
    await asyncio.sleep(300)


@env.task
async def main(n: int, markers: str) -> None:
    await asyncio.gather(*(sleeper(i, markers) for i in range(n)))
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("admission"), "--cpu", "2", clusters="small")
    try:
        yield started
    finally:
        started.flyte("rig", "down")


def admitted(rig: Rig) -> int:
    """The agent's process limit, as it printed it when it started."""
    log = (Path(rig.env["FLYTE_HOME"]) / "rig" / "agent-small.log").read_text()
    found = re.search(r"at most (\d+) one-off processes", log)
    assert found is not None, log
    return int(found.group(1))


def prepare(rig: Rig, name: str, source: str) -> tuple[int, Path, ModuleType]:
    """The agent's process limit, an empty directory for the program's tasks to write in, and the program."""
    directory = rig.cwd / f"{name}-files"
    directory.mkdir()
    program = rig.load(name, source)
    rig.connect()
    return admitted(rig), directory, program


class WorkerSampler:
    """Counts the agent's live worker processes (its children running `flyte._runtime`, warm pools aside) from
    /proc while a run goes on, and keeps the largest count seen."""

    def __init__(self, agent_pid: int) -> None:
        self.agent_pid = agent_pid
        self.most = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> WorkerSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def count(self) -> int:
        live = 0
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                stat = (proc / "stat").read_text()
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # it ended meanwhile
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.agent_pid and fields[0] != "Z" and b"flyte._runtime" in cmdline:
                live += b"--pool" not in cmdline
        return live

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.most = max(self.most, self.count())


WIDTH = 40
"""Five times what the agent admits at once (8 on the rig's 2-CPU agent): enough to queue at admission, and each
child is a cold interpreter start, so the 500-way figures live in bench/admission.py, not here."""


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = live = 0
    for _, step in edges:
        live += step
        most = max(most, live)
    return most


def test_a_wide_fan_out_of_tasks_without_resources_runs_within_the_agents_admission(rig: Rig) -> None:
    limit, ledger, program = prepare(rig, "admission_fan_out", FAN_OUT)
    with WorkerSampler(rig.pids()["agent-small"]) as sampler:
        run = flyte.run(program.main, n=WIDTH, ledger=str(ledger))
        assert run.outputs() == (sum(range(WIDTH)),)
    actions = call_sync(client_for().list_actions(run.name))
    assert len(actions) == WIDTH + 1
    assert all(a.phase == "succeeded" and a.attempts == 1 for a in actions), "no failures, nothing retried"
    # Placement counted each child as the default request (0.1 CPU, 256 MiB), as the agent does.
    child = next(a.name for a in actions if a.parent is not None)
    placement = rig.flyte("get", "placement", run.name, child)
    assert "cpu=0.1" in placement.stdout, placement.stdout + placement.stderr
    assert "memory=256MiB" in placement.stdout
    intervals = []
    for record in ledger.iterdir():
        _, started, ended = record.read_text().split()
        intervals.append((float(started), float(ended)))
    assert len(intervals) == WIDTH
    # The parent holds one slot of its own while its children run in the others.
    assert most_at_once(intervals) <= limit - 1
    spares = 2  # `flyte agent serve --spares`: started ahead of time, idle until one-off attempts take them
    assert 1 <= sampler.most <= limit + spares


def test_an_attempt_waits_placed_for_admission_and_an_abort_ends_the_wait(rig: Rig) -> None:
    limit, markers, program = prepare(rig, "admission_sleepers", SLEEPERS)
    # The parent takes one slot and its children the others; two more children wait.
    run = flyte.run(program.main, n=limit + 1, markers=str(markers))

    def phases() -> list[str]:
        return sorted(a.phase for a in call_sync(client_for().list_actions(run.name)) if a.parent is not None)

    assert_eventually(lambda: len(list(markers.iterdir())) == limit - 1, timeout=120)
    assert_eventually(lambda: phases() == ["placed"] * 2 + ["running"] * (limit - 1), timeout=30)
    run.abort("the test is done waiting")
    assert_eventually(lambda: set(phases()) == {"aborted"}, timeout=60)

    def pids() -> list[int]:
        return [int(m.read_text()) for m in markers.iterdir() if m.read_text().strip().isdigit()]

    assert_eventually(lambda: not any(pid_alive(pid) for pid in pids()), timeout=30)

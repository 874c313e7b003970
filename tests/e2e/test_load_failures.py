"""A code bundle that fails as it loads is the user's error, reported at once: through a gateway and an agent
running as separate processes (`flyte rig`), on a reusable pool and on a one-off worker."""

from __future__ import annotations

import time

import pytest
from test_rig import Rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for
from flyte._remote_run import RemoteRun
from flyte._wire import ActionSummary

pytestmark = pytest.mark.timeout(180)

# As a script it is run as `python argv_program.py 1000`; the guard keeps the test process, which imports it to
# submit the run, from reading pytest's own arguments.
ARGV = """
import sys

import flyte

if "pytest" not in sys.modules:
    SIZE = int(sys.argv[1])

pooled = flyte.TaskEnvironment("argv_pooled", reusable=flyte.ReusePolicy(replicas=1))
oneoff = flyte.TaskEnvironment("argv_oneoff")


@pooled.task(retries=1)
async def pooled_main() -> int:
    return SIZE


@oneoff.task
async def oneoff_main() -> int:
    return SIZE
"""

DYING = """
import os
import sys

import flyte

if "pytest" not in sys.modules:
    print("cannot start without the licence server", flush=True)
    os._exit(3)

env = flyte.TaskEnvironment("dying_pooled", reusable=flyte.ReusePolicy(replicas=1))


@env.task
async def main() -> int:
    return 1
"""


@pytest.fixture(scope="module")
def rig(one_cluster_rig: Rig) -> Rig:
    return one_cluster_rig


def _failed_root(run: RemoteRun, within: float) -> ActionSummary:
    started = time.monotonic()
    with pytest.raises(flyte.errors.RuntimeUserError) as caught:
        run.wait(timeout=within)
    assert time.monotonic() - started < within
    (root,) = [a for a in call_sync(client_for().list_actions(run.name)) if a.parent is None]
    assert root.phase == "failed"
    assert root.error is not None
    assert root.error.kind == "user"
    assert str(caught.value)
    return root


def _logs(rig: Rig, run: str, action: str) -> str:
    return rig.flyte("get", "logs", run, action).stdout


@pytest.mark.parametrize("task", ["pooled_main", "oneoff_main"])
def test_a_module_that_fails_at_import_fails_the_run_with_its_traceback(rig: Rig, task: str) -> None:
    program = rig.load(f"argv_program_{task}", ARGV)
    rig.connect()
    run = flyte.run(getattr(program, task))
    assert isinstance(run, RemoteRun)
    root = _failed_root(run, within=60)
    assert root.error is not None
    # The worker's own arguments are not the program's: `python prog.py` with no arguments says index out of range.
    assert root.error.code == "IndexError", root.error
    assert root.error.error_type == "ModuleLoadError"
    assert "--pool" not in root.error.message
    assert "--assignment" not in root.error.message
    assert "importing argv_program" in root.error.message
    assert root.error.traceback is not None
    assert "SIZE = int(sys.argv[1])" in root.error.traceback
    assert root.attempts == (2 if task == "pooled_main" else 1), "retried by the task's retries, and only by them"
    assert_eventually(lambda: "SIZE = int(sys.argv[1])" in _logs(rig, run.name, root.name), timeout=20)


def test_a_pool_whose_workers_die_at_start_fails_its_attempts_and_backs_off(rig: Rig) -> None:
    program = rig.load("dying_program", DYING)
    rig.connect()
    run = flyte.run(program.main)
    assert isinstance(run, RemoteRun)
    root = _failed_root(run, within=60)
    assert root.error is not None
    assert root.error.code == "WorkerStartFailed"
    assert "exit code 3" in root.error.message
    assert root.error.traceback is not None
    assert "licence server" in root.error.traceback
    assert_eventually(lambda: "licence server" in _logs(rig, run.name, root.name), timeout=20)
    # A second run while the pool backs off fails at once with the same record, without a restart loop.
    again = flyte.run(program.main)
    assert isinstance(again, RemoteRun)
    second = _failed_root(again, within=30)
    assert second.error is not None
    assert second.error.code == "WorkerStartFailed"

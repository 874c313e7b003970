"""Fault matrix: a worker's blob upload and span export when the first gateway replica in its FLYTE_ENDPOINT is
dead. Two replicas on one etcd; the agent dials the first, so its workers are given `first,second`; the first is
killed while a task runs. The task then returns a value too large to travel inline (a blob upload) and ends a span
of its own: the upload and the span batch go on to the second replica, the run succeeds with the value, and the
span is in the run's trace."""

from __future__ import annotations

import pytest
from federation import Federation
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for
from flyte._codec import INLINE_LIMIT

pytestmark = pytest.mark.timeout(120)

PROGRAM = """
import time
from pathlib import Path

import flyte
from opentelemetry import trace

env = flyte.TaskEnvironment("replica-uploads")


@env.task
def main(folder: str, size: int) -> str:
    Path(folder, "started").touch()
    # The test kills the first replica, then says go (a deadline: a lost test must not leave the task behind).
    deadline = time.monotonic() + 60
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with trace.get_tracer("test").start_as_current_span("after the kill"):
        return "x" * size
"""


@pytest.mark.seeds(1)
def test_a_worker_uploads_and_exports_spans_past_a_dead_first_replica(federation: Federation, seed: int) -> None:
    processes = federation.start_replicas(2, leader_ttl=2.0)
    first, second = list(processes)
    federation.start_agent("a", gateway=f"{first},{second}")
    flyte.init(endpoint=second, api_key=federation.tokens["admin"], insecure=True)
    program = federation.load(f"replica_uploads_{seed}", PROGRAM)
    folder = federation.root / "signals"
    folder.mkdir()
    size = INLINE_LIMIT * 2
    run = flyte.run(program.main, folder=str(folder), size=size)
    assert_eventually(lambda: (folder / "started").exists(), timeout=60)
    processes[first].kill()
    (folder / "go").touch()
    run.wait()
    assert federation.run(run.name).phase.value == "succeeded"
    assert run.outputs() == ("x" * size,), "the value went to the blob store through the second replica"

    def span_arrived() -> bool:
        trace = call_sync(client_for().request("GET", f"/api/v1/runs/{run.name}/trace"))
        return any(span["name"] == "after the kill" for span in trace["spans"])

    assert [action.attempts for action in federation.actions(run.name)] == [1], "no attempt was retried"
    assert_eventually(span_arrived, timeout=30, interval=0.2)

"""A schedule end to end, through a rig (a gateway and an agent as processes): a FixedRate trigger's run starts on
time, its task gets the firing time as a `datetime`, and the trigger's webhook notification reaches a receiver the
test runs on 127.0.0.1 when the run succeeds."""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_rig import Rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for
from flyte._wire import Phase, RunSummary

pytestmark = pytest.mark.timeout(240)

PROGRAM = """
import datetime

import flyte
import flyte.notify

env = flyte.TaskEnvironment("sched_rig")
START = datetime.datetime.fromtimestamp({start}, datetime.UTC)
BODY = {{"run": "{{{{.Run.Name}}}}", "phase": "{{{{.Phase}}}}"}}
DONE = flyte.notify.Webhook(on_phase="succeeded", url="{hook}", body=BODY)


@env.task(
    triggers=flyte.Trigger(
        "every", flyte.FixedRate(1, start_time=START), inputs={{"when": flyte.TriggerTime}}, notifications=DONE
    )
)
async def stamp(when: datetime.datetime) -> str:
    return f"{{when.isoformat()}} {{when.tzinfo is not None}}"
"""


@pytest.fixture
def hook() -> Iterator[tuple[str, list[object]]]:
    received: list[object] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/done", received
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _trigger_runs() -> list[RunSummary]:
    return [r for r in call_sync(client_for().list_runs(task="sched_rig.stamp")) if r.labels.get("flyte.trigger")]


def test_a_trigger_runs_its_task_with_the_firing_time_and_notifies(
    one_cluster_rig: Rig, hook: tuple[str, list[object]]
) -> None:
    rig, (url, received) = one_cluster_rig, hook
    start = round(time.time()) - 50  # the next firing is about ten seconds away
    program = rig.load("sched_rig_program", PROGRAM.format(start=start, hook=url))
    rig.connect()
    flyte.deploy(program.env)
    assert_eventually(lambda: [r.phase for r in _trigger_runs()] == [Phase.SUCCEEDED], timeout=120, interval=0.5)
    [run] = _trigger_runs()
    assert run.output is not None
    fired = datetime.datetime.fromtimestamp(start + 60, datetime.UTC)
    assert json.loads(run.output.json_text or "") == f"{fired.isoformat()} True"
    assert_eventually(lambda: received == [{"run": run.name, "phase": "SUCCEEDED"}], timeout=30, interval=0.1)

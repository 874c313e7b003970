"""One OpenTelemetry trace per run, across clusters, through the rig (a gateway and two agents as separate
processes, workers as processes of their own): the spans of every process join up parent to child, a retried or
failed-over attempt continues the same trace, replayed `@flyte.trace` calls say so, and the gateway forwards
the spans to an external OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from test_rig import FAILOVER, TRACED, Rig, start_rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for
from flyte._wire import RunTrace, SpanRecord

pytestmark = pytest.mark.timeout(180)


class Receiver:
    """An external OTLP/HTTP endpoint: a tiny aiohttp server on a thread of its own, keeping what it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    async def _serve(self) -> None:
        async def traces(request: web.Request) -> web.Response:
            self.requests.append(ExportTraceServiceRequest.FromString(await request.read()))
            return web.Response(body=b"", content_type="application/x-protobuf")

        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def services(self, trace_id: str) -> set[str]:
        """The services that sent spans of this trace."""
        found = set()
        for request in self.requests:
            for resource_spans in request.resource_spans:
                service = next(
                    (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
                )
                for scope_spans in resource_spans.scope_spans:
                    if any(span.trace_id.hex() == trace_id for span in scope_spans.spans):
                        found.add(service)
        return found


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Rig]:
    started = start_rig(tmp_path_factory.mktemp("tracing-rig"), OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    try:
        yield started
    finally:
        started.flyte("rig", "down")


def spans_of(run: str) -> list[SpanRecord]:
    return RunTrace.model_validate(call_sync(client_for().request("GET", f"/api/v1/runs/{run}/trace"))).spans


def wait_for_spans(run: str, done: Any, timeout: float = 60) -> list[SpanRecord]:
    """The run's spans once `done(spans)` holds: spans arrive in batches, after the run has ended."""
    found: list[SpanRecord] = []

    def arrived() -> bool:
        found[:] = spans_of(run)
        return bool(done(found))

    assert_eventually(arrived, timeout=timeout, interval=0.2)
    return found


def one(spans: list[SpanRecord], **match: Any) -> SpanRecord:
    found = [s for s in spans if all(_field(s, k) == v for k, v in match.items())]
    shown = "\n".join(f"  {s.service}@{s.cluster} {s.name} {s.attributes}" for s in spans)
    assert len(found) == 1, f"{len(found)} spans match {match} among:\n{shown}"
    return found[0]


def assert_nested(spans: list[SpanRecord]) -> None:
    """Every span lies within its parent's interval, across processes: the gateway's action spans, the agents'
    attempts, the workers' tasks and calls."""
    by_id = {s.span_id: s for s in spans}
    outside = [
        f"  {child.name} [{child.start_ns}, {child.end_ns}] sticks out of {parent.name} [{parent.start_ns}, "
        f"{parent.end_ns}] by {max(parent.start_ns - child.start_ns, child.end_ns - parent.end_ns) / 1e6:.3f} ms"
        for child in spans
        if (parent := by_id.get(child.parent_span_id or "")) is not None
        and not parent.start_ns <= child.start_ns <= child.end_ns <= parent.end_ns
    ]
    assert not outside, "child spans outside their parents:\n" + "\n".join(outside)


def assert_start_up_and_queueing_shown(spans: list[SpanRecord]) -> None:
    """Each action shows its time in the queue, and each attempt its worker's start-up before the task ran."""
    for action in [s for s in spans if s.service == "flyte-gateway" and "flyte.attempts" in s.attributes]:
        assert any(s.name == "queued" and s.parent_span_id == action.span_id for s in spans), action.name
    for task in [s for s in spans if s.name.startswith("task ")]:
        start_up = one(spans, name="start-up", parent_span_id=task.parent_span_id)
        assert start_up.end_ns <= task.start_ns, "start-up ends before the task's function runs"
        assert start_up.service == "flyte-worker"


def _field(span: SpanRecord, key: str) -> Any:
    return getattr(span, key) if key in SpanRecord.model_fields else span.attributes.get(key.replace("__", "."))


ACROSS = """
import flyte

east = flyte.TaskEnvironment("trace_east", placement=flyte.Placement(clusters=["us-east"]))
west = flyte.TaskEnvironment("trace_west", placement=flyte.Placement(clusters=["eu-west"]))
east.add_dependency(west)


@flyte.trace
async def double(x: int) -> int:
    return x * 2


@west.task
async def where(x: int) -> int:
    return await double(x)


@east.task
async def main(x: int) -> int:
    return await where(x) + 1
"""


def test_a_run_across_two_clusters_is_one_trace(rig: Rig, receiver: Receiver) -> None:
    program = rig.load("across_program", ACROSS)
    rig.connect()
    run = flyte.run(program.main, x=20)
    assert run.outputs() == (41,)

    def complete(spans: list[SpanRecord]) -> bool:
        names = {(s.service, s.cluster, s.name) for s in spans}
        return {
            ("flyte-worker", "eu-west", "trace double"),
            ("flyte-worker", "us-east", "task trace_east.main"),
            ("flyte-agent", "us-east", "attempt 1 on us-east"),
            ("flyte-agent", "eu-west", "attempt 1 on eu-west"),
            ("flyte-gateway", None, f"run {run.name}"),
        } <= names

    spans = wait_for_spans(run.name, complete)
    assert len({s.trace_id for s in spans}) == 1, "one trace across the gateway, both agents and every worker"
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id is None or s.parent_span_id in ids for s in spans), "no span hangs off nothing"
    assert all(s.attributes.get("flyte.run") == run.name for s in spans)

    # The chain from the run down to the traced call on the other cluster, one process after another.
    root = one(spans, parent_span_id=None)
    assert root.name == f"run {run.name}"
    main_action = one(spans, service="flyte-gateway", name="trace_east.main")
    east_attempt = one(spans, service="flyte-agent", cluster="us-east", name="attempt 1 on us-east")
    east_task = one(spans, service="flyte-worker", name="task trace_east.main")
    call = one(spans, service="flyte-worker", name="call trace_west.where")
    west_action = one(spans, service="flyte-gateway", name="trace_west.where")
    west_attempt = one(spans, service="flyte-agent", cluster="eu-west", name="attempt 1 on eu-west")
    west_task = one(spans, service="flyte-worker", name="task trace_west.where")
    traced = one(spans, name="trace double")
    chain = [root, main_action, east_attempt, east_task, call, west_action, west_attempt, west_task, traced]
    for parent, child in itertools.pairwise(chain):
        assert child.parent_span_id == parent.span_id, f"{child.name} hangs under {parent.name}"
    assert traced.attributes["flyte.replayed"] is False
    assert one(spans, name="queued", flyte__action="a0").attributes["flyte.cluster"] == "us-east"
    assert one(spans, name="queued", parent_span_id=west_action.span_id).attributes["flyte.cluster"] == "eu-west"
    assert all(s.status == "ok" for s in (main_action, west_action))
    assert_nested(spans)
    assert_start_up_and_queueing_shown(spans)
    assert "flyte.exit_ms" in east_attempt.attributes, "the attempt ends at the report; the process's exit after"

    # Separate processes: each agent is the rig's, each worker a process of its own.
    pids = rig.pids()
    assert east_attempt.attributes["process.pid"] == pids["agent-us-east"]
    assert west_attempt.attributes["process.pid"] == pids["agent-eu-west"]
    worker_pids = {east_task.attributes["process.pid"], west_task.attributes["process.pid"]}
    assert len(worker_pids) == 2
    assert not worker_pids & set(pids.values())
    assert (west_task.attributes["cloud.region"], west_attempt.attributes["cloud.provider"]) == ("eu-west", "local")

    # `flyte get trace` draws the same tree.
    shown = rig.flyte("get", "trace", run.name)
    assert shown.returncode == 0, shown.stderr
    assert "trace double" in shown.stdout
    assert "flyte-agent@eu-west" in shown.stdout

    # The gateway forwards every process's spans, and its own, to the external receiver.
    assert_eventually(
        lambda: receiver.services(root.trace_id) >= {"flyte-gateway", "flyte-agent", "flyte-worker"}, timeout=20
    )


def test_a_retried_attempt_continues_the_trace_and_marks_replayed_calls(rig: Rig) -> None:
    traced_program = rig.load("traced_tracing_program", TRACED)
    rig.connect()
    run = flyte.run(traced_program.main, x=4, ledger=str(rig.cwd / "traced-tracing-ledger.txt"))
    assert run.outputs() == (41,)

    def replayed(spans: list[SpanRecord]) -> bool:
        attempts = {s.attributes.get("flyte.attempt") for s in spans if s.service == "flyte-agent"}
        return attempts >= {1, 2} and any(s.attributes.get("flyte.replayed") is True for s in spans)

    spans = wait_for_spans(run.name, replayed)
    assert len({s.trace_id for s in spans}) == 1
    action = one(spans, service="flyte-gateway", name="traced_env.main")
    attempts = [s for s in spans if s.service == "flyte-agent" and s.name.startswith("attempt")]
    assert sorted(s.attributes["flyte.attempt"] for s in attempts) == [1, 2]
    assert {s.parent_span_id for s in attempts} == {action.span_id}, "both attempts hang under the action"
    second = one(spans, service="flyte-agent", flyte__attempt=2, parent_span_id=action.span_id)
    second_task = one(spans, name="task traced_env.main", parent_span_id=second.span_id)
    replay = one(spans, flyte__replayed=True)
    assert replay.parent_span_id == second_task.span_id
    assert replay.name == "trace expensive"
    assert_nested(spans)
    assert_start_up_and_queueing_shown(spans)


def test_a_failed_over_attempt_stays_in_the_trace(tmp_path: Path) -> None:
    rig = start_rig(tmp_path / "failover", FLYTE_LEASE_TTL="3")
    try:
        ledger = rig.cwd / "ledger.txt"
        program = rig.load("failover_tracing_program", FAILOVER)
        rig.connect()
        run = flyte.run(program.main, ledger=str(ledger))
        assert_eventually(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 4, timeout=60)
        victim = ledger.read_text().splitlines()[0].split()[1]
        os.kill(rig.pids()[f"agent-{victim}"], signal.SIGKILL)
        assert run.outputs() == (6,)
        survivor = "eu-west" if victim == "us-east" else "us-east"
        moved = [a for a in call_sync(client_for().list_actions(run.name)) if a.attempts > 1]
        assert moved, "the killed cluster's work ran again elsewhere"

        def continued(spans: list[SpanRecord]) -> bool:
            ran = {(s.name, s.attributes.get("flyte.action")) for s in spans}
            return all((f"attempt {a.attempts} on {survivor}", a.name) in ran for a in moved)

        spans = wait_for_spans(run.name, continued)
        assert len({s.trace_id for s in spans}) == 1, "the failed-over attempts continue the run's trace"
        for action in moved:
            action_span = one(spans, service="flyte-gateway", name=action.task, flyte__action=action.name)
            queued = [s for s in spans if s.name == "queued" and s.parent_span_id == action_span.span_id]
            assert {s.attributes["flyte.cluster"] for s in queued} == {victim, survivor}
            again = one(spans, name=f"attempt {action.attempts} on {survivor}", flyte__action=action.name)
            assert (again.cluster, again.parent_span_id) == (survivor, action_span.span_id)
            assert one(spans, name=f"task {action.task}", parent_span_id=again.span_id).service == "flyte-worker"
            assert one(spans, name="start-up", parent_span_id=again.span_id).service == "flyte-worker"
    finally:
        rig.flyte("rig", "down")


POOLED = """
import flyte

pool = flyte.TaskEnvironment("traced_pool", reusable=flyte.ReusePolicy(replicas=1, concurrency=2))
front = flyte.TaskEnvironment("traced_front")
front.add_dependency(pool)


@pool.task
async def square(x: int) -> int:
    print("squaring", x, flush=True)
    return x * x


@front.task
async def main(n: int) -> int:
    total = 0
    for i in range(n):
        total += await square(i)
    return total
"""


def test_spans_of_warm_pool_attempts_nest_within_their_actions(rig: Rig) -> None:
    program = rig.load("pooled_tracing_program", POOLED)
    rig.connect()
    run = flyte.run(program.main, n=3)
    assert run.outputs() == (5,)

    def complete(spans: list[SpanRecord]) -> bool:
        # Each process sends its spans in rounds of its own: wait for every span the checks below look at, the
        # agent's attempts and the workers' start-ups included, not only the first to arrive.
        return (
            sum(s.name == "task traced_pool.square" for s in spans) == 3
            and all(
                any(u.name == "start-up" and u.parent_span_id == task.parent_span_id for u in spans)
                for task in spans
                if task.name.startswith("task ")
            )
            and len(pooled_attempts(spans)) == 3
            and any(s.name == f"run {run.name}" for s in spans)
        )

    spans = wait_for_spans(run.name, complete)
    assert_nested(spans)
    assert_start_up_and_queueing_shown(spans)
    pooled = pooled_attempts(spans)
    assert len(pooled) == 3
    assert all("flyte.exit_ms" in s.attributes for s in pooled), "a pool worker says when it reported"


def pooled_attempts(spans: list[SpanRecord]) -> list[SpanRecord]:
    """The agent's attempt spans of the pooled task."""
    return [s for s in spans if s.name.startswith("attempt") and s.attributes.get("flyte.task") == "traced_pool.square"]

"""Spans made without the OpenTelemetry SDK (`flyte._spans`) send what the SDK's spans sent: the same OTLP for the
same span (ids, parent, name, times, attributes, status, events), and in a worker they stay current for users'
SDK spans, which nest under them and may set attributes on them."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from flyte import _otel
from flyte._spans import Batcher, encode_sdk_spans

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
RESOURCE = {"flyte.cluster": "east", "cloud.region": "us-east-1"}


class Posted:
    def __init__(self) -> None:
        self.bodies: list[tuple[str | None, bytes]] = []

    def __call__(self, token: str, body: bytes) -> bool:
        self.bodies.append((token, body))
        return True

    def spans(self) -> list[ExportTraceServiceRequest]:
        return [ExportTraceServiceRequest.FromString(body) for _, body in self.bodies]


def token_of_run(run: str | None) -> str | None:
    """Each run's spans with a token of their own, as a pool worker serving several runs sends them."""
    return None if run is None else f"token of {run}"


@pytest.fixture
def posted() -> Posted:
    return Posted()


@pytest.fixture
def tracing(posted: Posted) -> Iterator[_otel.ProcessTracing]:
    made = _otel.make_tracing("flyte-agent", RESOURCE, posted, token_of_run)
    yield made
    made.shutdown()


def sdk_request(make: object, service: str = "flyte-agent") -> ExportTraceServiceRequest:
    """What the SDK's span sent: `make(tracer, context)` makes and ends one span."""
    batches: list[bytes] = []

    class Keep(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            batches.append(encode_sdk_spans(spans))  # type: ignore[arg-type]
            return SpanExportResult.SUCCESS

    resource = Resource.create({"service.name": service, "process.pid": os.getpid(), **RESOURCE})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    remote = trace.SpanContext(
        int(PARENT[3:35], 16), int(PARENT[36:52], 16), is_remote=True, trace_flags=trace.TraceFlags(1)
    )
    make(provider.get_tracer("flyte"), trace.set_span_in_context(trace.NonRecordingSpan(remote)))  # type: ignore[operator]
    provider.shutdown()
    (body,) = batches
    return ExportTraceServiceRequest.FromString(body)


def test_an_attempt_span_sends_the_bytes_the_sdk_span_sent(tracing: _otel.ProcessTracing, posted: Posted) -> None:
    attributes = {"flyte.run": "r1", "flyte.action": "a0", "flyte.attempt": 2, "flyte.exit_ms": 0.25, "ok": True}
    random.seed(17)
    span = tracing.start("attempt 2 on east", PARENT, attributes, start_time=1_000)
    assert span is not None
    assert span.traceparent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    span.set_attribute("flyte.pool.dispatch_ms", 1.5)
    _otel.end_span(span, "RuntimeError: boom", 5_000)
    tracing.flush()

    def make(tracer: trace.Tracer, context: object) -> None:
        random.seed(17)
        made = tracer.start_span("attempt 2 on east", context, attributes=attributes, start_time=1_000)  # type: ignore[arg-type]
        made.set_attribute("flyte.pool.dispatch_ms", 1.5)
        made.set_status(trace.Status(trace.StatusCode.ERROR, "RuntimeError: boom"))
        made.end(5_000)

    assert posted.bodies[0][0] == "token of r1"
    assert posted.bodies[0][1] == sdk_request(make).SerializeToString()


def test_spans_go_in_one_request_per_token(tracing: _otel.ProcessTracing, posted: Posted) -> None:
    for run in ("r1", "r2", "r1"):
        _otel.end_span(tracing.start("x", PARENT, {"flyte.run": run}))
    _otel.end_span(tracing.start("x", PARENT))
    tracing.flush()
    sent = [
        (token, len(request.resource_spans[0].scope_spans[0].spans))
        for (token, _), request in zip(posted.bodies, posted.spans(), strict=True)
    ]
    assert sent == [("token of r1", 2), ("token of r2", 1)], "a span of no run has no token here: it is not sent"


def test_spans_finished_while_a_batch_is_sent_wait_for_the_next_round(
    monkeypatch: pytest.MonkeyPatch, posted: Posted
) -> None:
    """A busy process finishes spans while its batch is on the way: they go with the next round's batch, not in a
    request of their own right after (a pool worker running a chain sent one request per call that way)."""
    # No sending thread: the test says when a round is sent.
    monkeypatch.setattr(Batcher, "_start", lambda self: threading.Thread(target=lambda: None))
    finished_while_sending: list[int] = []

    def post_while_busy(token: str, body: bytes) -> bool:
        if not finished_while_sending:
            # The next call finishes its span while this batch is being sent.
            finished_while_sending.append(1)
            batcher.start("y", (PARENT[3:35], PARENT[36:52]), {"flyte.run": "r1"}).end()
        return posted(token, body)

    batcher = Batcher({"service.name": "flyte-worker"}, post_while_busy, token_of_run)
    for _ in range(3):
        batcher.start("x", (PARENT[3:35], PARENT[36:52]), {"flyte.run": "r1"}).end()
    batcher.send_round()
    assert [len(r.resource_spans[0].scope_spans[0].spans) for r in posted.spans()] == [3]
    batcher.send_round()  # the next round: what finished meanwhile
    assert [len(r.resource_spans[0].scope_spans[0].spans) for r in posted.spans()] == [3, 1]
    # A flush (at exit, say) sends what finishes while it sends too.
    finished_while_sending.clear()
    batcher.start("z", (PARENT[3:35], PARENT[36:52]), {"flyte.run": "r1"}).end()
    batcher.flush()
    assert [len(r.resource_spans[0].scope_spans[0].spans) for r in posted.spans()] == [3, 1, 1, 1]


def test_no_span_without_a_sampled_parent(tracing: _otel.ProcessTracing) -> None:
    assert tracing.start("x", None) is None
    assert tracing.start("x", "garbage") is None
    assert tracing.start("x", PARENT[:-2] + "00") is None


def test_a_worker_span_is_current_for_users_spans(monkeypatch: pytest.MonkeyPatch, posted: Posted) -> None:
    worker = _otel.make_tracing("flyte-worker", RESOURCE, posted, token_of_run, users_spans=True)
    monkeypatch.setattr(_otel, "_worker", worker)
    assert worker.provider is not None
    tracer = worker.provider.get_tracer("user")
    with _otel.current_span("task env.fit", PARENT, {"flyte.run": "r1"}) as task:
        assert task is not None
        trace.get_current_span().set_attribute("user.rows", 3)
        with (
            tracer.start_as_current_span("load data", attributes={"flyte.run": "r1"}),
            _otel.current_span("call env.child", None, {"flyte.run": "r1"}) as call,
        ):
            assert call is not None
    worker.flush()
    worker.shutdown()
    spans = {
        span.name: span
        for request in posted.spans()
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    }
    assert set(spans) == {"task env.fit", "load data", "call env.child"}
    assert spans["task env.fit"].parent_span_id.hex() == PARENT[36:52]
    assert spans["load data"].parent_span_id == spans["task env.fit"].span_id
    assert spans["call env.child"].parent_span_id == spans["load data"].span_id
    assert call.split("-")[2] == spans["call env.child"].span_id.hex()
    task_attributes = {kv.key: kv.value for kv in spans["task env.fit"].attributes}
    assert task_attributes["user.rows"].int_value == 3


def test_a_failing_block_records_the_exception_as_use_span_did(monkeypatch: pytest.MonkeyPatch, posted: Posted) -> None:
    worker = _otel.make_tracing("flyte-worker", RESOURCE, posted, token_of_run, users_spans=True)
    monkeypatch.setattr(_otel, "_worker", worker)
    with pytest.raises(ValueError, match="bad input"), _otel.current_span("task env.fail", PARENT, {"flyte.run": "r1"}):
        raise ValueError("bad input")
    worker.flush()
    worker.shutdown()
    (span,) = posted.spans()[0].resource_spans[0].scope_spans[0].spans
    assert span.status.code == 2
    assert span.status.message == "ValueError: bad input"
    (event,) = span.events
    assert event.name == "exception"
    assert {kv.key: kv.value.string_value for kv in event.attributes}["exception.type"] == "ValueError"


def test_a_span_without_a_run_gets_the_current_actions(monkeypatch: pytest.MonkeyPatch, posted: Posted) -> None:
    from flyte._context import current_action

    class Action:
        run_name = "r9"

    worker = _otel.make_tracing("flyte-worker", RESOURCE, posted, token_of_run, users_spans=True)
    token = current_action.set(Action())  # type: ignore[arg-type]
    try:
        span = worker.start("blob download", PARENT, {"flyte.bytes": 3})
    finally:
        current_action.reset(token)
    assert span is not None
    assert span.attributes == {"flyte.bytes": 3, "flyte.run": "r9"}
    worker.shutdown()

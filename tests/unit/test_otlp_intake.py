"""The gateway keeps received spans as the OTLP they came in, per run, and decodes them when a trace is read: what
it serves is what decoding every span on arrival served (`records_by_run`), the run's bound still holds, and a
request of several runs is split into one request per run."""

from __future__ import annotations

import base64

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway._otlp import RunSpans, records_by_run, records_of, spans_by_run
from gateway._tracing import GatewayTracing
from gateway.store import open_store

TRACE_ID = "W47/95gDgQPSabYzgT/GDA=="


def span(name: str, span_id: int, run: str | None = None, **extra: object) -> dict[str, object]:
    attributes: list[dict[str, object]] = [{"key": "flyte.action", "value": {"stringValue": name}}]
    if run is not None:
        attributes.append({"key": "flyte.run", "value": {"stringValue": run}})
    return {
        "traceId": TRACE_ID,
        "spanId": base64.b64encode(span_id.to_bytes(8, "big")).decode(),
        "name": name,
        "startTimeUnixNano": str(1_000 + span_id),
        "endTimeUnixNano": str(2_000 + span_id),
        "attributes": attributes,
        **extra,
    }


def request(*resources: tuple[dict[str, str], list[dict[str, object]]]) -> ExportTraceServiceRequest:
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()]},
                "scopeSpans": [{"scope": {"name": "flyte"}, "spans": spans}],
            }
            for attributes, spans in resources
        ]
    }
    return json_format.ParseDict(document, ExportTraceServiceRequest())


AGENT = {"service.name": "flyte-agent", "flyte.cluster": "east", "process.pid": "7"}
WORKER_OF_R2 = {"service.name": "flyte-worker", "flyte.run": "r2"}


def test_a_request_of_one_run_is_kept_as_it_came() -> None:
    export = request((AGENT, [span("a", 1, "r1"), span("b", 2, "r1", status={"code": 2, "message": "no"})]))
    body = export.SerializeToString()
    (kept,) = spans_by_run(export, body).items()
    assert kept == ("r1", RunSpans(2, body))
    assert kept[1].records() == records_by_run(export)["r1"]


def test_a_request_of_several_runs_is_split_per_run_and_reads_back_the_same() -> None:
    export = request(
        (AGENT, [span("a", 1, "r1"), span("b", 2, "r2"), span("c", 3), span("d", 4, "r1")]),
        (WORKER_OF_R2, [span("e", 5), span("f", 6, "r1"), span("g", 7, "Not A Run")]),
    )
    split = spans_by_run(export, export.SerializeToString())
    decoded = records_by_run(export)
    assert {run: spans.count for run, spans in split.items()} == {"r1": 3, "r2": 2, None: 2}
    assert {run: spans.records() for run, spans in split.items()} == decoded


async def test_kept_requests_are_read_back_within_the_runs_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway._tracing as tracing_module

    monkeypatch.setattr(tracing_module, "MAX_SPANS_PER_RUN", 4)
    store = await open_store("memory")
    tracing = GatewayTracing(store, enabled=True, environ={})
    try:
        first = request((AGENT, [span("a", 1, "r1"), span("b", 2, "r1")]))
        second = request((AGENT, [span("c", 3, "r1"), span("d", 4, "r1"), span("e", 5, "r1")]))
        await tracing.keep("r1", spans_by_run(first, first.SerializeToString())["r1"])
        await tracing.flush()
        await tracing.keep("r1", spans_by_run(second, second.SerializeToString())["r1"])
        assert [s.name for s in await tracing.read("r1")] == ["a", "b", "c", "d"], "buffered spans are read too"
        await tracing.flush()
        assert [s.name for s in await tracing.read("r1")] == ["a", "b", "c", "d"]
        assert tracing.dropped == 1
        values = [kv.value for kv in (await store.range("/flyte/spans/r1/"))[0]]
        assert [value[:1] for value in values] == [b"\x0a", b"["], "as it came, then cut to the bound as records"
        assert [record["name"] for value in values for record in records_of(value)] == ["a", "b", "c", "d"]
        # At the bound, a request is counted and dropped as it came: nothing of it is decoded.
        monkeypatch.setattr(RunSpans, "records", lambda self: pytest.fail("decoded a request only to drop it"))
        third = request((AGENT, [span("f", 6, "r1"), span("g", 7, "r1")]))
        await tracing.keep("r1", spans_by_run(third, third.SerializeToString())["r1"])
        assert tracing.dropped == 3
    finally:
        await tracing.close()
        await store.close()

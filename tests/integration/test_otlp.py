"""The gateway's OTLP/HTTP receiver (`POST /v1/traces`) and a run's trace (`GET /api/v1/runs/{run}/trace`), against
a real gateway process: the OpenTelemetry SDK's own exporter and hand-written OTLP/JSON are both accepted and kept
per run; a worker token files spans only under its run; bad input is a 4xx with `{code, message}` and keeps
nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from gateway_api import Api, new_run
from http_receiver import http_receiver
from processes import GatewayProcess

from flyte import _otel
from gateway._tracing import GatewayTracing
from gateway.store import open_store

pytestmark = pytest.mark.timeout(60)

TRACE_ID = "5b8efff798038103d269b633813fc60c"


def otlp_json(run: str | None, *spans: dict[str, Any], service: str = "tests") -> dict[str, Any]:
    attributes = [{"key": "service.name", "value": {"stringValue": service}}]
    for span in spans:
        span.setdefault("traceId", TRACE_ID)
        span.setdefault("spanId", uuid.uuid4().hex[:16])
        span.setdefault("startTimeUnixNano", "1700000000000000000")
        span.setdefault("endTimeUnixNano", "1700000000500000000")
        if run is not None:
            span.setdefault("attributes", []).append({"key": "flyte.run", "value": {"stringValue": run}})
    return {"resourceSpans": [{"resource": {"attributes": attributes}, "scopeSpans": [{"spans": list(spans)}]}]}


async def send(api: Api, document: Any, token: str | None = None, content_type: str = "application/json") -> Any:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await api.call("POST", "/v1/traces", raw=raw, headers=headers)


async def trace(api: Api, run: str) -> list[dict[str, Any]]:
    status, body = await api.call("GET", f"/api/v1/runs/{run}/trace")
    assert status == 200, body
    assert body["run"] == run
    return list(body["spans"])


async def token(api: Api, *scopes: str) -> str:
    status, body = await api.call("POST", "/api/v1/tokens", {"scopes": list(scopes)})
    assert status == 201, body
    return str(body["token"])


async def test_a_run_starts_its_trace_and_keeps_otlp_json_spans(api: Api) -> None:
    run = (await new_run(api))["name"]
    status, root = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
    assert status == 200
    assert root["traceparent"].startswith("00-")
    assert len(root["span_parent"]) == 16, "the root action hangs under the run's span"
    parent = root["traceparent"].split("-")[2]
    status, answer = await send(
        api,
        otlp_json(
            run,
            {"spanId": "00f067aa0ba902b7", "name": "later", "startTimeUnixNano": "1700000001000000000"},
            {
                "spanId": "00f067aa0ba902b8",
                "parentSpanId": parent,
                "name": "first",
                "status": {"code": 2, "message": "boom"},
                "attributes": [{"key": "answer", "value": {"intValue": "42"}}],
            },
        ),
    )
    assert (status, answer) == (200, {})
    spans = await trace(api, run)
    assert [s["name"] for s in spans] == ["first", "later"], "sorted by start"
    first = spans[0]
    assert first["trace_id"] == TRACE_ID
    assert first["span_id"] == "00f067aa0ba902b8"
    assert first["parent_span_id"] == parent
    assert (first["service"], first["cluster"], first["status"]) == ("tests", None, "error")
    assert first["attributes"]["answer"] == 42
    assert first["end_ns"] - first["start_ns"] == 500_000_000
    assert spans[1]["status"] == "unset"


async def test_the_opentelemetry_sdk_exports_protobuf_to_the_gateway(api: Api, gateway: GatewayProcess) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    run = (await new_run(api))["name"]
    exporter = OTLPSpanExporter(
        endpoint=f"{gateway.endpoint}/v1/traces", headers={"Authorization": f"Bearer {gateway.token}"}
    )
    provider = TracerProvider(resource=Resource.create({"service.name": "any-sdk", "flyte.cluster": "c1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def make_spans() -> None:
        tracer = provider.get_tracer("tests")
        with (
            tracer.start_as_current_span("outer", attributes={"flyte.run": run}),
            tracer.start_as_current_span("inner", attributes={"flyte.run": run, "ratio": 0.5, "ok": True}),
        ):
            pass
        provider.shutdown()

    await asyncio.to_thread(make_spans)
    spans = {s["name"]: s for s in await trace(api, run)}
    assert set(spans) == {"outer", "inner"}
    assert spans["inner"]["parent_span_id"] == spans["outer"]["span_id"]
    assert spans["inner"]["trace_id"] == spans["outer"]["trace_id"]
    assert (spans["inner"]["service"], spans["inner"]["cluster"]) == ("any-sdk", "c1")
    assert spans["inner"]["attributes"]["ratio"] == 0.5
    assert spans["inner"]["attributes"]["ok"] is True


async def test_a_worker_token_files_spans_only_under_its_own_run(api: Api) -> None:
    mine, other = (await new_run(api))["name"], (await new_run(api))["name"]
    worker = await token(api, f"worker:{mine}")
    document = otlp_json(mine, {"name": "mine"})
    document["resourceSpans"] += otlp_json(other, {"name": "not mine"})["resourceSpans"]
    document["resourceSpans"] += otlp_json(None, {"name": "no run"})["resourceSpans"]
    document["resourceSpans"] += otlp_json("../not-a-run-name", {"name": "bad run"})["resourceSpans"]
    status, answer = await send(api, document, token=worker)
    assert status == 200
    assert answer["partialSuccess"]["rejectedSpans"] == "1"
    assert [s["name"] for s in await trace(api, mine)] == ["mine"]
    assert await trace(api, other) == []


@pytest.mark.parametrize(
    ("raw", "content_type", "expected"),
    [
        (b"\x0a\xff\xff\xff\x0f", "application/x-protobuf", (400, "malformed_otlp")),
        (b"{not json", "application/json", (400, "malformed_otlp")),
        (b"[1, 2]", "application/json", (400, "malformed_otlp")),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
            "application/json",
            (400, "malformed_otlp"),
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00"}]}]}]}',
            "application/json",
            (400, "malformed_otlp"),
        ),
        (b'{"resourceSpans": "no"}', "application/json", (400, "malformed_otlp")),
        (b"{}", "text/plain", (415, "unsupported_media_type")),
        (b"0" * (8 * 1024 * 1024 + 1), "application/x-protobuf", (413, "too_large")),
    ],
    ids=["protobuf", "json", "not-an-object", "bad-hex", "short-id", "wrong-shape", "content-type", "too-large"],
)
async def test_malformed_otlp_is_refused_and_keeps_nothing(
    api: Api, raw: bytes, content_type: str, expected: tuple[int, str]
) -> None:
    run = (await new_run(api))["name"]
    status, body = await send(api, raw, content_type=content_type)
    assert (status, body["code"]) == expected
    assert body["message"]
    assert await trace(api, run) == []


async def test_sending_spans_needs_an_agent_worker_or_admin_token(api: Api) -> None:
    run = (await new_run(api))["name"]
    document = otlp_json(run, {"name": "x"})
    async with aiohttp.ClientSession() as anonymous:
        status, body = await Api(api.endpoint, anonymous).call(
            "POST", "/v1/traces", raw=json.dumps(document).encode(), headers={"Content-Type": "application/json"}
        )
    assert (status, body["code"]) == (401, "unauthorized")
    status, body = await send(api, document, token=await token(api, "deploy"))
    assert status == 403
    status, answer = await send(api, document, token=await token(api, "agent:somewhere"))
    assert (status, answer["partialSuccess"]["rejectedSpans"]) == (200, "1"), "nothing of this run ran there"
    assert await trace(api, run) == []
    status, _ = await send(api, document, token=await token(api, "admin"))
    assert status == 200
    assert [s["name"] for s in await trace(api, run)] == ["x"]
    status, body = await api.call("GET", "/api/v1/runs/no-such-run/trace")
    assert (status, body["code"]) == (404, "not_found")


async def test_spans_are_bounded_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway._tracing as tracing_module

    monkeypatch.setattr(tracing_module, "MAX_SPANS_PER_RUN", 3)
    store = await open_store("memory")
    tracing = GatewayTracing(store, enabled=True, environ={})
    try:
        record = {
            "trace_id": TRACE_ID,
            "parent_span_id": None,
            "name": "s",
            "start_ns": 1,
            "end_ns": 2,
            "service": "tests",
            "cluster": None,
            "attributes": {},
            "status": "unset",
        }
        await tracing.keep("r1", [{**record, "span_id": f"{i:016x}"} for i in range(2)])
        await tracing.flush()
        await tracing.keep("r1", [{**record, "span_id": f"{i:016x}"} for i in range(2, 5)])
        await tracing.flush()
        assert [s.span_id for s in await tracing.read("r1")] == [f"{i:016x}" for i in range(3)]
        assert tracing.dropped == 2
        # A restarted gateway counts what the store holds before it keeps more.
        again = GatewayTracing(store, enabled=True, environ={})
        await again.keep("r1", [{**record, "span_id": "ffffffffffffffff"}])
        await again.flush()
        assert len(await again.read("r1")) == 3
    finally:
        await tracing.close()
        await store.close()


async def test_an_aborted_run_ends_its_trace(api: Api) -> None:
    run = await new_run(api)
    status, _ = await api.call("POST", f"/api/v1/runs/{run['name']}/abort", {"reason": "enough"})
    assert status == 200
    spans = {s["name"]: s for s in await trace(api, run["name"])}
    assert set(spans) == {f"run {run['name']}", run["task"]}
    root, action = spans[f"run {run['name']}"], spans[run["task"]]
    assert root["parent_span_id"] is None
    assert action["parent_span_id"] == root["span_id"]
    assert action["trace_id"] == root["trace_id"]
    assert (action["service"], action["status"], action["attributes"]["flyte.phase"]) == (
        "flyte-gateway",
        "error",
        "aborted",
    )


@pytest.mark.parametrize("forwarding", [False, True], ids=["kept only", "forwarded too"])
async def test_senders_are_told_a_run_is_full_and_send_no_more_of_its_spans_unless_they_are_forwarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forwarding: bool
) -> None:
    forwarded: list[bytes] = []

    async def collect(request: web.Request) -> web.Response:
        forwarded.append(await request.read())
        return web.Response()

    monkeypatch.setenv("FLYTE_SPANS_PER_RUN", "3")
    monkeypatch.setattr(_otel, "_full", {})
    async with http_receiver(collect) as collector:
        if forwarding:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        gateway = GatewayProcess("memory", tmp_path / "gateway").start()
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as session:
                api = Api(gateway.endpoint, session)
                run = (await new_run(api))["name"]
                status, root = await api.call("GET", f"/api/v1/runs/{run}/actions/a0")
                assert status == 200
                sender = await token(api, "admin")
                posts: list[int] = []
                post = _otel.poster(gateway.endpoint)

                def counted(token: str, body: bytes) -> bool:
                    posts.append(len(body))
                    return post(token, body)

                tracing = _otel.make_tracing("tests", {}, counted, _otel.token_unless_full(sender))

                def spans(count: int) -> None:
                    for _ in range(count):
                        span = tracing.start("work", root["traceparent"], {_otel.RUN_ATTRIBUTE: run})
                        assert span is not None
                        span.end()
                    tracing.flush()

                await asyncio.to_thread(spans, 5)
                assert len(posts) == 1
                kept = [s for s in await trace(api, run) if s["name"] == "work"]
                assert 0 < len(kept) <= 3, "the run's bound holds"
                await asyncio.to_thread(spans, 2)
                # Told the run is full, the sender sends nothing more of it; with a collector, it goes on sending.
                assert len(posts) == (2 if forwarding else 1)
                assert (run in _otel._full) is not forwarding
                tracing.shutdown()
        finally:
            gateway.stop()

"""OTLP/HTTP for traces: `POST /v1/traces` (protobuf or JSON), so agents, workers and any OpenTelemetry SDK can send
spans to the gateway, and the encoding of the gateway's own spans for forwarding.

A request is read completely and decoded before anything is kept: a malformed body is a 400 and changes nothing.
Each span is filed under its run (the `flyte.run` span or resource attribute); a worker's token may file spans
only under its own run (others are refused as a partial success, as OTLP has it); spans with no run are only
forwarded. A run's spans are kept as the OTLP protobuf they came in (`RunSpans`: a request of one run's spans is
kept as it is, one of several is split per run) and decoded to records when the trace is read: decoding every
attribute of every span on arrival was most of what tracing cost the gateway. The body is forwarded as it came to
`OTEL_EXPORTER_OTLP_ENDPOINT` when that is set.

A run's spans past its bound (`gateway._tracing.MAX_SPANS_PER_RUN`) are counted as rejected, and when nothing
forwards them the answer names the run (`flyte._otel.FULL_RUNS`): the agents and workers that sent them stop
sending that run's spans, which a wide fan-out would otherwise make, encode, send and parse only to be dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from flyte._otel import FULL_RUNS, RUN_ATTRIBUTE
from gateway._auth import Authenticator
from gateway._domain_errors import Forbidden
from gateway._errors import ApiError, bad_request, forbidden

MAX_OTLP_BODY = 8 * 1024 * 1024
"""The largest OTLP request; exporters batch far smaller (512 spans)."""
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
AUTHENTICATOR = web.AppKey("otlp_authenticator", Authenticator)

Record = dict[str, Any]
"""A span as `flyte._wire.SpanRecord` fields: plain dicts on the ingest path, validated when served."""

_STATUS = {Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}
_RUN = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
"""A run name, as `flyte._wire.Name` has it: anything else names no run (and never a store key)."""
SPAN_LIMIT = 100_000
"""The most spans an agent's session may send for one run."""
_RESOURCE_KEPT = ("process.pid", "cloud.region", "cloud.provider")
"""Resource attributes copied onto each record, so a span says which process and where it ran."""


async def receive_traces(request: web.Request) -> web.Response:
    """`POST /v1/traces`: OTLP/HTTP, protobuf or JSON; needs an agent, worker or admin token."""
    from gateway._authz import Act, Target, authorize
    from gateway._dispatch import DISPATCHER
    from gateway._tracing import TRACING

    principal = await request.app[AUTHENTICATOR].principal(request.headers.get("Authorization"))
    if not any(s == "admin" or s.startswith(("agent:", "worker:")) for s in principal.scopes):
        raise forbidden("sending spans needs an agent, worker or admin token")
    sessions = [s for c, s in request.app[DISPATCHER].sessions.items() if c in principal.clusters]
    content_type = request.content_type
    if content_type not in (PROTOBUF, JSON):
        raise ApiError(415, "unsupported_media_type", f"send {PROTOBUF} or {JSON}, not {content_type or 'nothing'}")
    if request.content_length is not None and request.content_length > MAX_OTLP_BODY:
        raise ApiError(413, "too_large", f"the body is {request.content_length} bytes; the limit is {MAX_OTLP_BODY}")
    body = await request.content.read(MAX_OTLP_BODY + 1)
    if len(body) > MAX_OTLP_BODY:
        raise ApiError(413, "too_large", f"the body is over the limit of {MAX_OTLP_BODY} bytes")
    export = parse_request(body, content_type)
    by_run = spans_by_run(export, body if content_type == PROTOBUF else None)
    refused = dropped = 0
    full: list[str] = []
    tracing = request.app[TRACING]
    for run, spans in by_run.items():
        if run is None:
            continue
        # An agent sends spans of the runs its session was given work in, up to SPAN_LIMIT each; a worker, its own.
        given = next((s for s in sessions if run in s.runs), None)
        try:
            authorize(principal, Act.SPANS, Target(run=run, placed_on=given.name if given else None))
        except Forbidden:
            refused += spans.count
            continue
        if given is not None and "admin" not in principal.scopes:
            if given.spans[run] + spans.count > SPAN_LIMIT:
                refused += spans.count
                continue
            given.spans[run] += spans.count
        past_bound = await tracing.keep(run, spans)
        if past_bound:
            dropped += past_bound
            full.append(run)
    tracing.forward(body, content_type)
    # With a collector to forward to, a full run's spans are still wanted there: its senders are not told.
    return _answer(content_type, refused, dropped, full if tracing.forwarder is None else [])


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    export = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            export.ParseFromString(body)
        except DecodeError as error:
            raise bad_request(
                f"the body is not an OTLP ExportTraceServiceRequest: {error}", code="malformed_otlp"
            ) from None
        return export
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the body must be a JSON object")
        _hex_ids_to_base64(document)
        json_format.ParseDict(document, export, ignore_unknown_fields=True)
    except (ValueError, TypeError, binascii.Error, json_format.ParseError) as error:
        raise bad_request(f"the body is not OTLP/JSON: {error}", code="malformed_otlp") from None
    return export


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex, where protobuf's JSON mapping expects base64 bytes."""

    def convert(holder: dict[str, Any], *keys: str) -> None:
        for key in keys:
            value = holder.get(key)
            if isinstance(value, str) and value:
                holder[key] = base64.b64encode(bytes.fromhex(value)).decode()

    for resource_spans in _objects(document.get("resourceSpans")):
        for scope_spans in _objects(resource_spans.get("scopeSpans")):
            for span in _objects(scope_spans.get("spans")):
                convert(span, "traceId", "spanId", "parentSpanId")
                for link in _objects(span.get("links")):
                    convert(link, "traceId", "spanId")


def _objects(value: Any) -> Iterable[dict[str, Any]]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError("resourceSpans, scopeSpans, spans and links must be lists of objects")
    return value


def _answer(content_type: str, refused: int, dropped: int = 0, full: Sequence[str] = ()) -> web.Response:
    """OTLP's answer: a partial success when spans were `refused` (not the sender's to send) or `dropped` (past
    their run's bound), naming the `full` runs in the message as `flyte._otel.full_runs_of` reads them."""
    response = ExportTraceServiceResponse()
    if refused or dropped:
        response.partial_success.rejected_spans = refused + dropped
        reasons = ["spans of another run than the worker token's were refused"] if refused else []
        if dropped:
            reasons.append("spans past their run's bound were dropped")
        if full:
            reasons.append(FULL_RUNS + ",".join(full))
        response.partial_success.error_message = "; ".join(reasons)
    if content_type == PROTOBUF:
        return web.Response(body=response.SerializeToString(), content_type=PROTOBUF)
    return web.json_response(json_format.MessageToDict(response))


# -- OTLP to records and back -----------------------------------------------------------------------------------


def _value(value: AnyValue) -> str | int | float | bool:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind is None:
        return ""
    return json.dumps(json_format.MessageToDict(value), separators=(",", ":"))[:4096]


def _attributes(items: Iterable[KeyValue]) -> dict[str, str | int | float | bool]:
    return {item.key[:256]: _value(item.value) for item in items}


@dataclass(frozen=True)
class RunSpans:
    """Spans of one run as they came: an OTLP protobuf request holding them alone. Only their run and ids were
    read; the rest is decoded when the trace is read (`records`), far less often than spans arrive."""

    count: int
    body: bytes

    def records(self) -> list[Record]:
        return records_of(self.body)


def spans_by_run(export: ExportTraceServiceRequest, body: bytes | None = None) -> dict[str | None, RunSpans]:
    """The request's spans by the run each names (None: no run), as `records_by_run` files them; `body` (the
    request as protobuf, when it came so) is kept as it is when it holds one run's spans alone, as an agent's or
    a worker's batch does."""
    places: dict[str | None, list[tuple[int, int, int]]] = {}
    for r, resource_spans in enumerate(export.resource_spans):
        resource_run = _named_run(resource_spans.resource.attributes, None)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            for i, span in enumerate(scope_spans.spans):
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise bad_request("a span's trace_id must be 16 bytes and span_id 8", code="malformed_otlp")
                run = _named_run(span.attributes, resource_run)
                places.setdefault(run if isinstance(run, str) and _RUN.match(run) else None, []).append((r, s, i))
    if len(places) == 1:
        ((run, spans),) = places.items()
        # Kept as it came, unless it begins as JSON would (`records_of` tells the two apart by the first byte).
        kept = body if body is not None and body[:1] == b"\x0a" else export.SerializeToString()
        return {run: RunSpans(len(spans), kept)}
    return {run: RunSpans(len(spans), _subset(export, spans)) for run, spans in places.items()}


def _named_run(items: Iterable[KeyValue], default: object) -> object:
    """The value of the last `flyte.run` among the attributes (as a dict of them has it), else `default`."""
    named: AnyValue | None = None
    for item in items:
        if item.key == RUN_ATTRIBUTE:
            named = item.value
    return default if named is None else _value(named)


def _subset(export: ExportTraceServiceRequest, places: list[tuple[int, int, int]]) -> bytes:
    """The spans at `places` ((resource, scope, span) indexes, in order) as a request of their own."""
    subset = ExportTraceServiceRequest()
    last: tuple[int, int] | None = None
    scope_spans = ScopeSpans()
    for r, s, i in places:
        if (r, s) != last:
            source = export.resource_spans[r]
            resource_spans = subset.resource_spans.add(resource=source.resource, schema_url=source.schema_url)
            scope = source.scope_spans[s]
            scope_spans = resource_spans.scope_spans.add(scope=scope.scope, schema_url=scope.schema_url)
            last = (r, s)
        scope_spans.spans.append(export.resource_spans[r].scope_spans[s].spans[i])
    data: bytes = subset.SerializeToString()
    return data


def records_of(value: bytes) -> list[Record]:
    """A stored batch of a run's spans: records as JSON (the gateway's own), or an OTLP protobuf request."""
    if value[:1] == b"[":
        records: list[Record] = json.loads(value)
        return records
    export = ExportTraceServiceRequest.FromString(value)
    return [record for records in records_by_run(export).values() for record in records]


def records_by_run(export: ExportTraceServiceRequest) -> dict[str | None, list[Record]]:
    """Every span of the request as a record, grouped by the run it names (None: no run)."""
    grouped: dict[str | None, list[Record]] = {}
    for resource_spans in export.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", "unknown"))[:256]
        cluster = resource.get("flyte.cluster") or None
        kept = {k: resource[k] for k in _RESOURCE_KEPT if k in resource}
        resource_run = resource.get(RUN_ATTRIBUTE)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise bad_request("a span's trace_id must be 16 bytes and span_id 8", code="malformed_otlp")
                attributes = {**kept, **_attributes(span.attributes)}
                run = attributes.get(RUN_ATTRIBUTE, resource_run)
                record: Record = {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() if len(span.parent_span_id) == 8 else None,
                    "name": span.name[:1024],
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "service": service,
                    "cluster": str(cluster)[:256] if cluster else None,
                    "attributes": attributes,
                    "status": _STATUS.get(span.status.code, "unset"),
                }
                grouped.setdefault(run if isinstance(run, str) and _RUN.match(run) else None, []).append(record)
    return grouped


def encode_records(records: Iterable[Record]) -> bytes:
    """Records as one OTLP protobuf request, one resource per (service, cluster)."""
    by_resource: dict[tuple[str, str | None], list[Record]] = {}
    for record in records:
        by_resource.setdefault((record["service"], record["cluster"]), []).append(record)
    export = ExportTraceServiceRequest()
    for (service, cluster), group in by_resource.items():
        attributes = [_key_value("service.name", service)]
        if cluster:
            attributes.append(_key_value("flyte.cluster", cluster))
        spans = [_span(record) for record in group]
        export.resource_spans.append(
            ResourceSpans(resource=Resource(attributes=attributes), scope_spans=[ScopeSpans(spans=spans)])
        )
    data: bytes = export.SerializeToString()
    return data


def _span(record: Record) -> Span:
    status = {"ok": Status.STATUS_CODE_OK, "error": Status.STATUS_CODE_ERROR}.get(record["status"])
    return Span(
        trace_id=bytes.fromhex(record["trace_id"]),
        span_id=bytes.fromhex(record["span_id"]),
        parent_span_id=bytes.fromhex(record["parent_span_id"]) if record["parent_span_id"] else b"",
        name=record["name"],
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=record["start_ns"],
        end_time_unix_nano=record["end_ns"],
        attributes=[_key_value(k, v) for k, v in record["attributes"].items()],
        status=Status(code=status) if status is not None else None,
    )


def _key_value(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))

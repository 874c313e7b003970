"""OpenTelemetry in agents and workers: one trace per run, carried from process to process by W3C traceparents.

The gateway gives every action a traceparent (its action span). An agent's attempt span hangs under it and hands
its own traceparent to the worker; the worker's task span hangs under that, and the spans of its child calls are
what the children's action spans hang under, so a run is one trace across every cluster it touches.

Spans are batched (`BatchSpanProcessor`) and exported over OTLP/HTTP to the gateway, off the event loop, never on
an action's critical path. Every span carries `flyte.run`: the gateway keeps spans per run by it, and a worker's
spans go out with the token of the run they belong to (a pool worker serves several runs).

`opentelemetry` is imported only when a process first traces: `import flyte` stays cheap, and local mode never
pays for it. `FLYTE_TRACING=0` turns tracing off in the process that has it set (set on the gateway, it turns it
off for the whole deployment, since actions then carry no traceparent).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import struct
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Tracer

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
RUN_ATTRIBUTE = "flyte.run"
_EXPORT_DELAY_MS = 500
"""How long a finished span may wait for its batch: short enough that `flyte get trace` is current."""
Attributes = Mapping[str, str | int | float | bool]


def enabled() -> bool:
    """Tracing is on unless FLYTE_TRACING is 0/false/off: it costs a few percent of throughput (bench/)."""
    return os.environ.get("FLYTE_TRACING", "1").strip().lower() not in ("0", "false", "off", "no")


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, span id) of a W3C traceparent, or None when it is absent or malformed."""
    match = TRACEPARENT.match(value) if value else None
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1), match.group(2)


TRACES_PATH = "/v1/traces"
"""OTLP/HTTP's path for spans, on a gateway replica as on any collector."""


def traces_url(endpoint: str) -> str:
    """Where an OTLP endpoint (one, such as `OTEL_EXPORTER_OTLP_ENDPOINT`) takes spans."""
    return endpoint.rstrip("/") + TRACES_PATH


# -- a process's tracer ---------------------------------------------------------------------------------------


class ProcessTracing:
    """The tracer of one agent or worker process: spans under traceparents, exported in batches."""

    def __init__(self, provider: TracerProvider, tracer: Tracer):
        self.provider = provider
        self.tracer = tracer

    def start(
        self, name: str, parent: str | None, attributes: Attributes | None = None, start_time: int | None = None
    ) -> Span | None:
        """A span under the traceparent `parent` (from `start_time`, ns, or now); None when there is no parent."""
        context = _context_of(parent)
        if context is None:
            return None
        span: Span = self.tracer.start_span(  # type: ignore[assignment]
            name, context=context, attributes=attributes, start_time=start_time
        )
        return span

    def flush(self, timeout_millis: int = 5000) -> None:
        self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.provider.shutdown()


def make_tracing(
    service: str, resource: Mapping[str, str], exporter: SpanExporter, mark_runs: bool = False
) -> ProcessTracing:
    """A tracer provider exporting in batches; `mark_runs` gives spans made without `flyte.run` (users' spans in
    tasks) the current action's run."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, str | int] = {"service.name": service, "process.pid": os.getpid(), **resource}
    provider = TracerProvider(resource=Resource.create(attributes))
    if mark_runs:
        provider.add_span_processor(_run_attribute())
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=_EXPORT_DELAY_MS, max_queue_size=16_384)
    )
    return ProcessTracing(provider, provider.get_tracer("flyte"))


def span_traceparent(span: Span | None) -> str | None:
    if span is None:
        return None
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def end_span(span: Span | None, error: str | None = None, end_time: int | None = None) -> None:
    if span is None:
        return
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time)


def _context_of(parent: str | None) -> Context | None:
    ids = parse_traceparent(parent)
    if ids is None:
        return None
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    remote = SpanContext(int(ids[0], 16), int(ids[1], 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return set_span_in_context(NonRecordingSpan(remote))


def _run_attribute() -> SpanProcessor:
    from opentelemetry.sdk.trace import SpanProcessor

    from ._context import current_action

    class RunAttribute(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            action = current_action.get()
            if action is not None and RUN_ATTRIBUTE not in (span.attributes or ()):
                span.set_attribute(RUN_ATTRIBUTE, action.run_name)

    return RunAttribute()


# -- workers ------------------------------------------------------------------------------------------------------


_worker: ProcessTracing | None = None
_worker_lock = threading.Lock()
_run_tokens: dict[str, str] = {}


def configure_worker(endpoint: str, run: str, token: str, cluster: str | None) -> None:
    """Trace this worker process, and export the spans of `run` with its token."""
    if enabled():
        _run_tokens[run] = token
        start_worker(endpoint, cluster)


def start_worker(endpoint: str, cluster: str | None) -> None:
    """Set up this worker process's tracer, once. Spare and pool workers do it while they wait for work, so that
    importing OpenTelemetry (~0.1 s) is never on an action's path."""
    global _worker
    if not enabled():
        return
    with _worker_lock:
        if _worker is not None:
            return
        from opentelemetry import trace

        resource = {"flyte.cluster": cluster or ""}
        for key, variable in (("cloud.region", "FLYTE_REGION"), ("cloud.provider", "FLYTE_CLOUD")):
            if os.environ.get(variable):
                resource[key] = os.environ[variable]
        _worker = make_tracing("flyte-worker", resource, exporter(endpoint, _token_of_run), mark_runs=True)
        # Spans users make inside their tasks join the run's trace, under the task span.
        trace.set_tracer_provider(_worker.provider)


def _token_of_run(run: str | None) -> str | None:
    return _run_tokens.get(run) if run is not None else None


def flush_worker() -> None:
    if _worker is not None:
        _worker.flush()


@contextlib.contextmanager
def current_span(name: str, parent: str | None, attributes: Attributes) -> Iterator[str | None]:
    """A worker span, current while the block runs (children and users' spans nest under it); yields its
    traceparent. With no tracing, or nothing to continue, it yields None and costs a global lookup."""
    tracing = _worker
    if tracing is None:
        yield None
        return
    from opentelemetry import trace

    if parent is None:
        active = trace.get_current_span()
        parent = span_traceparent(active) if active.get_span_context().is_valid else None  # type: ignore[arg-type]
    span = tracing.start(name, parent, attributes)
    if span is None:
        yield None
        return
    with trace.use_span(span, end_on_exit=False):
        try:
            yield span_traceparent(span)
        except BaseException as error:
            end_span(span, f"{type(error).__name__}: {error}"[:1024])
            raise
    span.end()


def record_span(name: str, parent: str | None, attributes: Attributes, start_ns: int) -> None:
    """A worker span from `start_ns` until now, for a step that began before the worker could open a span (its
    process starting, an assignment waiting for a slot)."""
    tracing = _worker
    if tracing is None:
        return
    span = tracing.start(name, parent, attributes, min(start_ns, time.time_ns()))
    if span is not None:
        span.end()


LAUNCHED_ENV = "FLYTE_LAUNCHED_NS"
"""When the agent launched a worker's process (ns since the epoch): where the worker's `start-up` span begins."""
REPORTED_DIR = "FLYTE_ATTEMPTS_DIR"
"""Where a worker on the agent's machine leaves, per attempt, when it reported the attempt's result: the agent ends
the attempt's span then, not when the process exits, so the attempt lies within its action (which the gateway
ends on that report)."""


def reported_path(directory: str | os.PathLike[str], run: str, action: str, attempt: int) -> Path:
    return Path(directory) / f"{run}_{action}_{attempt}.reported"


def note_reported(run: str, action: str, attempt: int, reported_ns: int | None) -> None:
    """Leave the report's time for the agent that started this worker (when it is on the agent's machine)."""
    directory = os.environ.get(REPORTED_DIR)
    if directory and reported_ns is not None and _worker is not None:
        with contextlib.suppress(OSError):
            reported_path(directory, run, action, attempt).write_text(str(reported_ns))


def start_span(name: str, attributes: Attributes) -> Span | None:
    """A worker span under the current one that does not become current (for generators, whose steps run in
    their consumer's context); end it with `end_span`."""
    tracing = _worker
    if tracing is None:
        return None
    from opentelemetry import trace

    active = trace.get_current_span()
    if not active.get_span_context().is_valid:
        return None
    return tracing.start(name, span_traceparent(active), attributes)  # type: ignore[arg-type]


def exporter(gateway: str, token_of: Callable[[str | None], str | None]) -> SpanExporter:
    """An OTLP/HTTP (protobuf) exporter to the gateway (`a,b,c`: its replicas, tried in turn) that sends each run's
    spans with `token_of(run)`'s bearer token."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from ._replicas import Replicas, replica_down

    replicas = Replicas(gateway)

    def send(body: bytes, headers: dict[str, str]) -> bool:
        """One batch, to the current replica, and on to the next while one is down: each replica once, no waiting
        (the batch is dropped rather than held up). A batch cut off by a reset may have been kept by the replica
        that reset it and is then kept twice: the gateway does not deduplicate what it stores, but its trace
        reader shows each (trace id, span id) once, so the cost is a batch counted twice against the run's span
        limit (and forwarded twice to an external collector, which keys spans by id too)."""
        for _ in replicas.endpoints:
            url = replicas.current + TRACES_PATH
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return bool(response.status < 300)
            except (OSError, ValueError) as error:
                if not replica_down(error):
                    return False
                replicas.fail_over(url)
        return False

    class OtlpExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            by_token: dict[str, list[ReadableSpan]] = {}
            for span in spans:
                run = (span.attributes or {}).get(RUN_ATTRIBUTE)
                token = token_of(run if isinstance(run, str) else None)
                if token is not None:
                    by_token.setdefault(token, []).append(span)
            ok = True
            for token, batch in by_token.items():
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf"}
                # A batch no replica took is dropped: spans are best effort, and never worth blocking for.
                ok = send(encode_spans(batch), headers) and ok
            return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    return OtlpExporter()


# -- OTLP protobuf, written directly ------------------------------------------------------------------------------
# The SDK's encoder builds a protobuf object per span, attribute and value: about 60 us a span, more than making the
# span. These few lines write the same bytes (ExportTraceServiceRequest) for what our spans hold; spans with events
# or links, which ours never have, go through the SDK's encoder.


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    if any(span.events or span.links for span in spans):
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode

        data: bytes = sdk_encode(spans).SerializePartialToString()
        return data
    groups: dict[tuple[int, str], list[ReadableSpan]] = {}
    resources: dict[int, Any] = {}
    for span in spans:
        resources[id(span.resource)] = span.resource
        scope = span.instrumentation_scope.name if span.instrumentation_scope is not None else ""
        groups.setdefault((id(span.resource), scope), []).append(span)
    out = bytearray()
    for (resource_id, scope), group in groups.items():
        resource = b"".join(_field(1, _key_value(k, v)) for k, v in resources[resource_id].attributes.items())
        scope_spans = _field(1, _field(1, scope.encode())) + b"".join(_field(2, _span(span)) for span in group)
        out += _field(1, _field(1, resource) + _field(2, scope_spans))
    return bytes(out)


def _span(span: ReadableSpan) -> bytes:
    context = span.context
    assert context is not None
    out = _field(1, context.trace_id.to_bytes(16, "big")) + _field(2, context.span_id.to_bytes(8, "big"))
    if span.parent is not None:
        out += _field(4, span.parent.span_id.to_bytes(8, "big"))
    out += _field(5, span.name.encode()) + _varint_field(6, span.kind.value + 1)  # the SDK's kinds start at 0
    out += struct.pack("<BQBQ", 7 << 3 | 1, span.start_time or 0, 8 << 3 | 1, span.end_time or 0)
    out += b"".join(_field(9, _key_value(k, v)) for k, v in (span.attributes or {}).items())
    code = span.status.status_code.value  # UNSET 0, OK 1, ERROR 2: the same numbers as OTLP's
    if code:
        message = span.status.description or ""
        out += _field(15, (_field(2, message.encode()) if message else b"") + _varint_field(3, code))
    return out


_KEYS: dict[str, bytes] = {}
"""Attribute keys as encoded once: the same few keys recur on every span."""


def _key_value(key: str, value: Any) -> bytes:
    prefix = _KEYS.get(key)
    if prefix is None:
        prefix = _field(1, key.encode())
        if len(_KEYS) < 4096:  # users' spans may use any keys: the cache stays bounded
            _KEYS[key] = prefix
    if isinstance(value, bool):
        encoded = _varint_field(2, int(value))
    elif isinstance(value, int):
        encoded = _varint_field(3, value & 0xFFFFFFFFFFFFFFFF)  # int64: negatives as two's complement
    elif isinstance(value, float):
        encoded = struct.pack("<Bd", 4 << 3 | 1, value)
    else:
        encoded = _field(1, (value if isinstance(value, str) else str(list(value))).encode())
    return prefix + _field(2, encoded)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)

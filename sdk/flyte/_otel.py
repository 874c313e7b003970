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
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Tracer

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
RUN_ATTRIBUTE = "flyte.run"
_EXPORT_DELAY_MS = 500
"""How long a finished span may wait for its batch: short enough that `flyte get trace` is current."""
_EXPORTERS_KEPT = 64
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


def traces_url(endpoint: str) -> str:
    return endpoint.rstrip("/") + "/v1/traces"


# -- a process's tracer ---------------------------------------------------------------------------------------


class ProcessTracing:
    """The tracer of one agent or worker process: spans under traceparents, exported in batches."""

    def __init__(self, provider: TracerProvider, tracer: Tracer):
        self.provider = provider
        self.tracer = tracer

    def start(self, name: str, parent: str | None, attributes: Attributes | None = None) -> Span | None:
        """A span under the traceparent `parent`; None (no span) when there is no parent to continue."""
        context = _context_of(parent)
        if context is None:
            return None
        span: Span = self.tracer.start_span(name, context=context, attributes=attributes)  # type: ignore[assignment]
        return span

    def flush(self, timeout_millis: int = 5000) -> None:
        self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.provider.shutdown()


def make_tracing(service: str, resource: Mapping[str, str], exporter: SpanExporter) -> ProcessTracing:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, str | int] = {"service.name": service, "process.pid": os.getpid(), **resource}
    provider = TracerProvider(resource=Resource.create(attributes))
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


def end_span(span: Span | None, error: str | None = None) -> None:
    if span is None:
        return
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def _context_of(parent: str | None) -> Context | None:
    ids = parse_traceparent(parent)
    if ids is None:
        return None
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    remote = SpanContext(int(ids[0], 16), int(ids[1], 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return set_span_in_context(NonRecordingSpan(remote))


def _run_attribute() -> SpanProcessor:
    from opentelemetry.sdk.trace import SpanProcessor

    class RunAttribute(SpanProcessor):
        """Marks every span with its run: the current action's, or its parent's (spans users make in tasks too)."""

        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            if span.attributes is not None and RUN_ATTRIBUTE in span.attributes:
                return
            from ._context import current_action

            action = current_action.get()
            if action is not None:
                span.set_attribute(RUN_ATTRIBUTE, action.run_name)

    return RunAttribute()


# -- workers ------------------------------------------------------------------------------------------------------


_worker: ProcessTracing | None = None
_worker_lock = threading.Lock()
_run_tokens: dict[str, str] = {}


def configure_worker(endpoint: str, run: str, token: str, cluster: str | None) -> None:
    """Trace this worker process (once), and export the spans of `run` with its token."""
    global _worker
    if not enabled():
        return
    _run_tokens[run] = token
    with _worker_lock:
        if _worker is not None:
            return
        from opentelemetry import trace

        resource = {"flyte.cluster": cluster or ""}
        for key, variable in (("cloud.region", "FLYTE_REGION"), ("cloud.provider", "FLYTE_CLOUD")):
            if os.environ.get(variable):
                resource[key] = os.environ[variable]
        _worker = make_tracing("flyte-worker", resource, _run_exporter(traces_url(endpoint)))
        # Spans users make inside their tasks join the run's trace, under the task span.
        trace.set_tracer_provider(_worker.provider)


def worker() -> ProcessTracing | None:
    return _worker


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


def _run_exporter(url: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class RunExporter(SpanExporter):
        """Sends each run's spans with that run's token: a worker's token is scoped to one run."""

        def __init__(self) -> None:
            self._exporters: OrderedDict[str, OTLPSpanExporter] = OrderedDict()

        def _for(self, run: str) -> OTLPSpanExporter | None:
            exporter = self._exporters.get(run)
            if exporter is None:
                token = _run_tokens.get(run)
                if token is None:
                    return None
                exporter = OTLPSpanExporter(endpoint=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
                self._exporters[run] = exporter
                while len(self._exporters) > _EXPORTERS_KEPT:
                    self._exporters.popitem(last=False)[1].shutdown()  # type: ignore[no-untyped-call]
            self._exporters.move_to_end(run)
            return exporter

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            by_run: dict[str, list[ReadableSpan]] = {}
            for span in spans:
                run = (span.attributes or {}).get(RUN_ATTRIBUTE)
                if isinstance(run, str):
                    by_run.setdefault(run, []).append(span)
            result = SpanExportResult.SUCCESS
            for run, batch in by_run.items():
                exporter = self._for(run)
                if exporter is not None and exporter.export(batch) is not SpanExportResult.SUCCESS:
                    result = SpanExportResult.FAILURE
            return result

        def shutdown(self) -> None:
            for exporter in self._exporters.values():
                exporter.shutdown()  # type: ignore[no-untyped-call]

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    return RunExporter()

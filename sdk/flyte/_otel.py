"""OpenTelemetry in agents and workers: one trace per run, carried from process to process by W3C traceparents.

The gateway gives every action a traceparent (its action span). An agent's attempt span hangs under it and hands
its own traceparent to the worker; the worker's task span hangs under that, and the spans of its child calls are
what the children's action spans hang under, so a run is one trace across every cluster it touches.

Our own spans are made without the OpenTelemetry SDK (`flyte._spans`: the SDK's span cost more than a warm
action's dispatch), batched and exported over OTLP/HTTP to the gateway by a thread of their own, never on an
action's critical path; spans users make in tasks go through the SDK, into the same trace. Every span carries
`flyte.run`: the gateway keeps spans per run by it, and a worker's spans go out with the token of the run they
belong to (a pool worker serves several runs).

`opentelemetry` is imported only when a process first traces: `import flyte` stays cheap, and local mode never
pays for it. `FLYTE_TRACING=0` turns tracing off in the process that has it set (set on the gateway, it turns it
off for the whole deployment, since actions then carry no traceparent).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import random
import re
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace import Span as SdkSpan
    from opentelemetry.sdk.trace.export import SpanExporter

    from ._spans import Batcher, Span, Value

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
RUN_ATTRIBUTE = "flyte.run"
FULL_RUNS = "runs at their span bound: "
"""Begins the part of the gateway's OTLP answer that names runs whose spans it no longer keeps (comma-separated)."""
_FULL_KEPT = 10_000
_full: dict[str, None] = {}
_full_lock = threading.Lock()
"""Runs the gateway said are at their span bound, oldest first: this process sends no more of their spans."""
EXPORT_DELAY_MS = 500
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


_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def parse_traceparent(value: str | None, sampled: bool = False) -> tuple[str, str] | None:
    """(trace id, span id) of a W3C traceparent, or None when it is absent or malformed (or, with `sampled`, when
    its flags do not say sampled, as ours always do)."""
    match = TRACEPARENT.match(value) if value else None
    if match is None or (sampled and not int(match.group(3), 16) & 1):
        return None
    trace_id, span_id = match.group(1, 2)
    return None if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN else (trace_id, span_id)


TRACES_PATH = "/v1/traces"
"""OTLP/HTTP's path for spans, on a gateway replica as on any collector."""


def traces_url(endpoint: str) -> str:
    """Where an OTLP endpoint (one, such as `OTEL_EXPORTER_OTLP_ENDPOINT`) takes spans."""
    return endpoint.rstrip("/") + TRACES_PATH


# -- a process's tracer ---------------------------------------------------------------------------------------


class ProcessTracing:
    """The tracer of one agent or worker process: its own spans, made without the SDK (`flyte._spans`) and sent
    in batches; a worker's also has the SDK's tracer provider, for the spans users make in tasks."""

    def __init__(self, batcher: Batcher, provider: TracerProvider | None = None, mark_runs: bool = False):
        from ._context import current_action

        self.batcher = batcher
        self.provider = provider
        self._current_action = current_action if mark_runs else None
        """Where spans made without `flyte.run` find their run (users' and `call` spans in a worker)."""

    def start(
        self, name: str, parent: str | None, attributes: Attributes | None = None, start_time: int | None = None
    ) -> Span | None:
        """A span under the traceparent `parent` (from `start_time`, ns, or now); None when there is no parent, or
        it is not sampled (no span of ours ever is: the SDK's sampler would make a span that is not recorded)."""
        ids = parse_traceparent(parent, sampled=True)
        return None if ids is None else self.start_under(name, ids, attributes, start_time)

    def start_under(
        self, name: str, parent: tuple[str, str], attributes: Attributes | None, start_time: int | None = None
    ) -> Span:
        """A span under the span `parent` ((trace id, span id), hex)."""
        kept = dict(attributes) if attributes else {}
        if self._current_action is not None and RUN_ATTRIBUTE not in kept:
            action = self._current_action.get()
            if action is not None:
                kept[RUN_ATTRIBUTE] = action.run_name
        return self.batcher.start(name, parent, kept, start_time)

    def flush(self, timeout_millis: int = 5000) -> None:
        self.batcher.flush()
        if self.provider is not None:
            self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.batcher.shutdown()
        if self.provider is not None:
            self.provider.shutdown()


def make_tracing(
    service: str, resource: Mapping[str, str], post: Post, token_of: TokenOf, users_spans: bool = False
) -> ProcessTracing:
    """A process's tracer, sending its spans with `post`, each with the token `token_of` its run. With
    `users_spans` (a worker), spans made without `flyte.run` get the current action's run, and the SDK's tracer
    provider (for users' spans in tasks) exports in batches the same way."""
    from opentelemetry.sdk.resources import Resource

    from ._spans import Batcher

    attributes: dict[str, str | int] = {"service.name": service, "process.pid": os.getpid(), **resource}
    # The SDK's resource, with what it adds (`telemetry.sdk.*`, OTEL_RESOURCE_ATTRIBUTES): users' spans carry it too.
    created = Resource.create(attributes)
    # Resource attributes are scalars here (ours, `telemetry.sdk.*`, OTEL_RESOURCE_ATTRIBUTES).
    batcher = Batcher(cast("Mapping[str, Value]", created.attributes), post, token_of)
    if not users_spans:
        return ProcessTracing(batcher)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=created)
    provider.add_span_processor(_run_attribute())
    provider.add_span_processor(
        BatchSpanProcessor(_sdk_exporter(post, token_of), schedule_delay_millis=EXPORT_DELAY_MS, max_queue_size=16_384)
    )
    return ProcessTracing(batcher, provider, mark_runs=True)


def span_traceparent(span: Span | None) -> str | None:
    return None if span is None else span.traceparent


def end_span(span: Span | None, error: str | None = None, end_time: int | None = None) -> None:
    if span is None:
        return
    if error is not None:
        span.fail(error)
    span.end(end_time)


@functools.cache
def _api() -> tuple[types.ModuleType, types.ModuleType, type[Span]]:
    """OpenTelemetry's context and trace API and our span class, imported when first needed (~0.1 s): a `from`
    import in a function runs the import machinery again at every call, on every action's path."""
    from opentelemetry import context, trace

    from ._spans import Span

    return context, trace, Span


def _current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current OpenTelemetry span: one of ours, or a user's."""
    _, trace, span_class = _api()
    active = trace.get_current_span()
    if isinstance(active, span_class):
        return active.trace_id, active.span_id
    context = active.get_span_context()
    return (f"{context.trace_id:032x}", f"{context.span_id:016x}") if context.is_valid else None


def _run_attribute() -> SpanProcessor:
    from opentelemetry.sdk.trace import SpanProcessor

    from ._context import current_action

    class RunAttribute(SpanProcessor):
        def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
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
    # Once set up, tracing is on: a pool worker comes here per attempt, and skips the environment's look.
    if _worker is None and not enabled():
        return
    _run_tokens[run] = token
    if _worker is None:
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
        _worker = make_tracing("flyte-worker", resource, poster(endpoint), _token_of_run, users_spans=True)
        # Spans users make inside their tasks join the run's trace, under the task span.
        assert _worker.provider is not None
        trace.set_tracer_provider(_worker.provider)


def _token_of_run(run: str | None) -> str | None:
    return _run_tokens.get(run) if run is not None and run not in _full else None


def token_unless_full(token: str) -> TokenOf:
    """`token` for the spans of every run but those at their bound (a process that sends all its runs' spans with
    one token: an agent's)."""
    return lambda run: None if run in _full else token


def full_runs_of(answer: bytes) -> list[str]:
    """The runs an OTLP answer (protobuf) names as at their span bound; none if it names none or is not one."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    try:
        response.ParseFromString(answer)
    except DecodeError:
        return []
    _, named, rest = response.partial_success.error_message.partition(FULL_RUNS)
    return [run for run in rest.split(";", 1)[0].split(",") if run] if named else []


def _note_full(runs: list[str]) -> None:
    if not runs:
        return
    # Two export threads (ours and the SDK's) may note runs at once: trimming iterates the dict.
    with _full_lock:
        for run in runs:
            _full[run] = None
        while len(_full) > _FULL_KEPT:
            del _full[next(iter(_full))]


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
    context, trace, _ = _api()
    if parent is None:
        ids = _current_ids()
        span = None if ids is None else tracing.start_under(name, ids, attributes)
    else:
        span = tracing.start(name, parent, attributes)
    if span is None:
        yield None
        return
    token = context.attach(trace.set_span_in_context(span))
    try:
        yield span.traceparent
    except BaseException as error:
        if isinstance(error, Exception):  # as `opentelemetry.trace.use_span` records it
            span.record_exception(error)
        end_span(span, f"{type(error).__name__}: {error}"[:1024])
        raise
    finally:
        context.detach(token)
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
    ids = _current_ids()
    return None if ids is None else tracing.start_under(name, ids, attributes)


# -- sending spans ------------------------------------------------------------------------------------------------


Post = Callable[[str, bytes], bool]
"""Sends one OTLP protobuf request with a bearer token; False if it was not taken."""
TokenOf = Callable[[str | None], str | None]
"""The token to send a run's spans with (None: a span of no run); None: they are not sent."""


def poster(gateway: str) -> Post:
    """Posts spans to the gateway's `/v1/traces` (`a,b,c`: its replicas, tried in turn), over a connection to each
    kept open between batches (`flyte._kept_http`)."""
    from ._kept_http import KeptConnection
    from ._replicas import Replicas, replica_down

    replicas = Replicas(gateway)
    connections: dict[str, KeptConnection] = {}

    def post(token: str, body: bytes) -> bool:
        """One batch, to the current replica, and on to the next while one is down: each replica once, no waiting
        (the batch is dropped rather than held up). A batch cut off by a reset may have been kept by the replica
        that reset it and is then kept twice: the gateway does not deduplicate what it stores, but its trace
        reader shows each (trace id, span id) once, so the cost is a batch counted twice against the run's span
        limit (and forwarded twice to an external collector, which keys spans by id too)."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-protobuf"}
        for _ in replicas.endpoints:
            replica = replicas.current
            try:
                connection = connections.get(replica) or connections.setdefault(replica, KeptConnection(replica, 10))
                answer = connection.post(TRACES_PATH, body, headers)
            except (OSError, ValueError, http.client.HTTPException) as error:
                if not replica_down(error):
                    return False
                replicas.fail_over(replica + TRACES_PATH)
                continue
            if answer.status == 503:  # not serving: another replica may
                replicas.fail_over(replica + TRACES_PATH)
                continue
            if answer.status >= 300:
                return False
            if answer.body:  # a partial success: some spans were not kept, and runs at their bound are named
                _note_full(full_runs_of(answer.body))
            return True
        return False

    return post


def _sdk_exporter(post: Post, token_of: TokenOf) -> SpanExporter:
    """The SDK's exporter of users' spans: a request per token, with `post`."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from ._spans import encode_sdk_spans

    class OtlpExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            by_token: dict[str, list[ReadableSpan]] = {}
            for span in spans:
                run = (span.attributes or {}).get(RUN_ATTRIBUTE)
                token = token_of(run if isinstance(run, str) else None)
                if token is not None:
                    by_token.setdefault(token, []).append(span)
            # A batch no replica took is dropped: spans are best effort, and never worth blocking for.
            ok = all([post(token, encode_sdk_spans(batch)) for token, batch in by_token.items()])
            return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    return OtlpExporter()

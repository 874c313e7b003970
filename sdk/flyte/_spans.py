"""Spans made without the OpenTelemetry SDK, for the agent's and the workers' own spans, and their OTLP encoding.

Our spans need only what OTLP carries: two ids and a parent, a name, two times, a few attributes, a status. The
SDK's span costs ~50 us (a sampler, attribute validation and locks, span processors, a `ReadableSpan` copy at the
end), ~24% of a busy agent's time: `Span` here is a few slots, and `Batcher` queues finished ones for a thread of
the process's own that encodes them straight to OTLP protobuf and sends them in batches every half second, as
the SDK's `BatchSpanProcessor` did. The bytes are what the SDK's spans encoded to (tests/unit/test_spans.py).

`Span` is an `opentelemetry.trace.Span`: a worker makes its task span current in the OpenTelemetry context, so
spans users make with the SDK (the worker's tracer provider) nest under it, and users may set attributes, add
events or links, or set the status on it. This module imports `opentelemetry.trace` (the API): import it only
where a process traces.
"""

from __future__ import annotations

import atexit
import collections
import os
import random
import struct
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import trace
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from ._otel import EXPORT_DELAY_MS, RUN_ATTRIBUTE

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.util import types

_BATCH = 512
"""Spans per request, as the SDK's batch processor sends them."""
_QUEUE = 16_384
"""Finished spans waiting to be sent; a span finished with the queue full is dropped, as the SDK's are."""
_SCALARS = (str, bool, int, float)
_ERROR = StatusCode.ERROR.value

Value = str | int | float | bool
"""An attribute's value (users' spans may hold sequences of these too)."""


class Span(trace.Span):
    """One span: ids in hex as in traceparents, times in ns since the epoch; recorded into `batcher` when it ends."""

    __slots__ = (
        "_batcher", "attributes", "end_time", "events", "links", "message", "name", "parent_id", "span_id",
        "start_time", "status", "trace_id",
    )  # fmt: skip

    def __init__(
        self, batcher: Batcher, trace_id: str, parent_id: str, name: str, attributes: dict[str, Any], start_time: int
    ):
        self.trace_id = trace_id
        self.span_id = f"{random.getrandbits(64) or 1:016x}"
        self.parent_id = parent_id
        self.name = name
        self.start_time = start_time
        self.end_time: int | None = None
        self.attributes = attributes
        self.status = StatusCode.UNSET.value
        self.message = ""
        self.events: list[tuple[str, int, Mapping[str, Any]]] | None = None
        self.links: list[tuple[SpanContext, Mapping[str, Any]]] | None = None
        self._batcher = batcher

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"

    def fail(self, message: str) -> None:
        """Mark the span as an error, unless it was marked as ok (which is final, as the SDK has it)."""
        if self.status != StatusCode.OK.value:
            self.status, self.message = _ERROR, message

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is None:
            self.end_time = time.time_ns() if end_time is None else end_time
            self._batcher.finished(self)

    # -- the rest of `opentelemetry.trace.Span`, for users' code ----------------------------------------------

    def get_span_context(self) -> SpanContext:
        return SpanContext(int(self.trace_id, 16), int(self.span_id, 16), False, TraceFlags(TraceFlags.SAMPLED))

    # Values typed `object`: what `_valid` admits is kept. (`types.AttributeValue` is no type to mypy under the
    # lowest opentelemetry-api we allow, 1.45.)
    def set_attributes(self, attributes: Mapping[str, object]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: object) -> None:
        if self.end_time is None and isinstance(key, str) and key and _valid(value):
            self.attributes[key] = value if isinstance(value, _SCALARS) else tuple(cast("Sequence[Value]", value))

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self.end_time is None:
            kept = {k: v for k, v in (attributes or {}).items() if _valid(v)}
            self.events = [*(self.events or ()), (name, time.time_ns() if timestamp is None else timestamp, kept)]

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self.end_time is None and context.is_valid:
            kept = {k: v for k, v in (attributes or {}).items() if _valid(v)}
            self.links = [*(self.links or ()), (context, kept)]

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time is not None or self.status == StatusCode.OK.value:
            return
        code = status.status_code if isinstance(status, Status) else status
        if isinstance(status, Status):
            description = status.description
        self.status = code.value
        self.message = (description or "") if code is StatusCode.ERROR else ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module, qualname = type(exception).__module__, type(exception).__qualname__
        self.add_event(
            "exception",
            {
                "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
                "exception.message": str(exception),
                "exception.stacktrace": "".join(traceback.format_exception(exception)),
                "exception.escaped": str(escaped),
                **(attributes or {}),
            },
            timestamp,
        )


def _valid(value: object) -> bool:
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, Sequence) and not isinstance(value, bytes) and all(isinstance(v, _SCALARS) for v in value)


class Batcher:
    """A process's finished spans, sent in batches by a thread of its own: every half second, or as soon as a
    batch is full. `post(token, body)` sends one OTLP request with a bearer token: the spans of a request share
    `token_of(run)` of their run (`flyte.run`); spans whose run has no token are dropped."""

    def __init__(
        self,
        resource: Mapping[str, Value],
        post: Callable[[str, bytes], bool],
        token_of: Callable[[str | None], str | None],
    ):
        self._resource = b"".join(_field(1, _key_value(k, v)) for k, v in resource.items())
        self._post = post
        self._token_of = token_of
        self._queue: collections.deque[Span] = collections.deque()
        self._wake = threading.Event()
        self._sending = threading.Lock()
        self._stopped = False
        self.dropped = 0
        self._thread = self._start()
        os.register_at_fork(after_in_child=self._forked)
        atexit.register(self.shutdown)

    def start(
        self, name: str, parent: tuple[str, str], attributes: dict[str, Any], start_time: int | None = None
    ) -> Span:
        """A span under the span `parent` ((trace id, span id) in hex); it owns `attributes` from here on."""
        return Span(self, *parent, name, attributes, time.time_ns() if start_time is None else start_time)

    def finished(self, span: Span) -> None:
        queue = self._queue
        if len(queue) >= _QUEUE:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) == _BATCH:
            self._wake.set()

    def flush(self) -> bool:
        """Send every span finished so far, and those finished while it sends; False if a batch was not taken (it is
        dropped all the same)."""
        ok = True
        while self._queue:
            ok = self.send_round() and ok
        return ok

    def send_round(self) -> bool:
        """Send the spans finished so far: those finished while it sends wait for the next round. What the sending
        thread does every half second (or when a batch is full): a busy process (a pool worker running a chain, a
        span or three per call) that sent until its queue was empty sent a request per call, each send taking as
        long as the next call and finding its spans waiting; each request costs the gateway ~0.3 ms."""
        ok = True
        with self._sending:
            queue = self._queue
            left = len(queue)
            while left > 0:
                taken = min(_BATCH, left)
                left -= taken
                by_token: dict[str | None, list[Span]] = {}
                for _ in range(taken):
                    span = queue.popleft()
                    run = span.attributes.get(RUN_ATTRIBUTE)
                    by_token.setdefault(self._token_of(run if isinstance(run, str) else None), []).append(span)
                for token, spans in by_token.items():
                    if token is not None:
                        ok = self._post(token, self.encode(spans)) and ok
        return ok

    def encode(self, spans: Sequence[Span]) -> bytes:
        """One ExportTraceServiceRequest: this process's resource, the scope `flyte`, the spans."""
        scope_spans = _SCOPE + b"".join(_field(2, _encode_span(span)) for span in spans)
        return _field(1, _field(1, self._resource) + _field(2, scope_spans))

    def shutdown(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)
        self.flush()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._send_forever, name="flyte-spans", daemon=True)
        thread.start()
        return thread

    def _send_forever(self) -> None:
        while not self._stopped:
            self._wake.wait(EXPORT_DELAY_MS / 1000)
            self._wake.clear()
            self.send_round()

    def _forked(self) -> None:
        """A child of a fork starts with its parent's unsent spans (they are the parent's to send) and no thread."""
        self._queue.clear()
        self._wake, self._sending = threading.Event(), threading.Lock()  # another thread may have held them
        self._thread = self._start()


# -- OTLP protobuf, written directly ------------------------------------------------------------------------------
# The SDK's encoder builds a protobuf object per span, attribute and value: about 60 us a span, more than making the
# span. These few lines write the same bytes (ExportTraceServiceRequest) for what spans hold; SDK spans (users' spans
# in tasks) with events or links go through the SDK's encoder.

_SCOPE = b"\x0a\x07\x0a\x05flyte"
"""The instrumentation scope `flyte` (ScopeSpans.scope = InstrumentationScope(name="flyte"))."""
_KIND_INTERNAL = b"\x30\x01"
"""Span.kind = SPAN_KIND_INTERNAL (1)."""


def _encode_span(span: Span) -> bytes:
    out = b"\x0a\x10" + bytes.fromhex(span.trace_id) + b"\x12\x08" + bytes.fromhex(span.span_id)
    out += b"\x22\x08" + bytes.fromhex(span.parent_id) + _field(5, span.name.encode()) + _KIND_INTERNAL
    out += struct.pack("<BQBQ", 7 << 3 | 1, span.start_time, 8 << 3 | 1, span.end_time or 0)
    out += b"".join([_field(9, _key_value(k, v)) for k, v in span.attributes.items()])
    for name, at, attributes in span.events or ():
        event = struct.pack("<BQ", 1 << 3 | 1, at) + _field(2, name.encode())
        out += _field(11, event + b"".join([_field(3, _key_value(k, v)) for k, v in attributes.items()]))
    for context, attributes in span.links or ():
        link = _field(1, context.trace_id.to_bytes(16, "big")) + _field(2, context.span_id.to_bytes(8, "big"))
        out += _field(13, link + b"".join([_field(4, _key_value(k, v)) for k, v in attributes.items()]))
    if span.status:
        out += _field(15, (_field(2, span.message.encode()) if span.message else b"") + _varint_field(3, span.status))
    return out


def encode_sdk_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """SDK spans (users' spans in tasks) as one ExportTraceServiceRequest."""
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
        scope_spans = _field(1, _field(1, scope.encode())) + b"".join(_field(2, _sdk_span(span)) for span in group)
        out += _field(1, _field(1, resource) + _field(2, scope_spans))
    return bytes(out)


def _sdk_span(span: ReadableSpan) -> bytes:
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
    if isinstance(value, str):
        text = value.encode()
        if len(text) < 126:  # AnyValue{string_value} and its length fit a byte each: most of ours
            return prefix + _SHORT_STRING[len(text)] + text
        encoded = _field(1, text)
    elif isinstance(value, bool):
        encoded = _varint_field(2, int(value))
    elif isinstance(value, int):
        encoded = _varint_field(3, value & 0xFFFFFFFFFFFFFFFF)  # int64: negatives as two's complement
    elif isinstance(value, float):
        encoded = struct.pack("<Bd", 4 << 3 | 1, value)
    else:
        encoded = _field(1, str(list(value)).encode())
    return prefix + _field(2, encoded)


_SHORT_STRING = [bytes((2 << 3 | 2, size + 2, 1 << 3 | 2, size)) for size in range(126)]
"""KeyValue.value's tag and length, then AnyValue.string_value's, for a string of each size under 126 bytes."""


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


_SMALL = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)

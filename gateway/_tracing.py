"""The gateway's part of tracing: it starts each run's trace, records its own spans, keeps every span per run,
and forwards them to an external OpenTelemetry endpoint.

    create run ──► trace id, run span id; the root action's traceparent hangs under the run span
    submit child ──► a new action span under the submitting call's span (its `traceparent` in the request)
    placement ──► a `queued` span (queued until placed; cluster, tier, scores)
    action ends ──► its `action` span (created until ended); the root's end also ends the `run` span
    POST /v1/traces (agents, workers, any SDK) ──► kept per run ──► flushed to /flyte/spans/{run}/...
                                                └► forwarded as received to OTEL_EXPORTER_OTLP_ENDPOINT

Spans are best effort and never on an action's critical path: they are buffered and written once per run every
half second (one store write for many spans), bounded per run, and forwarded from a bounded queue that drops
when the external endpoint is slow. `FLYTE_TRACING=0` on the gateway stops new traces: actions then carry no
traceparent, so agents and workers record nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from pydantic_core import to_json

from flyte import _otel
from flyte._env import env_int
from flyte._naming import ROOT_ACTION
from flyte._wire import ActionSummary, Phase, SpanRecord
from gateway._keys import span_key, spans_prefix
from gateway._otlp import PROTOBUF, Record, RunSpans, encode_records, records_of
from gateway.store import Put, Store, StoreError

log = logging.getLogger("flyte.gateway.tracing")

MAX_SPANS_PER_RUN = env_int("FLYTE_SPANS_PER_RUN", 20000, minimum=0)
"""Spans kept per run; later ones are only forwarded (a 10,000-way fan-out makes about 60,000)."""
FLUSH_SECONDS = 0.5
SERVICE = "flyte-gateway"
_FORWARD_QUEUE = 1024
_COUNTS_KEPT = 10_000
_RECORD: pydantic.TypeAdapter[SpanRecord] = pydantic.TypeAdapter(SpanRecord)


def _ns(seconds: float | None) -> int:
    return int((seconds or time.time()) * 1e9)


def forward_target(environ: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
    """Where to forward spans, and with which headers, from the standard OTLP exporter variables."""
    url = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    if url is None and environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        url = _otel.traces_url(environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    raw = environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    headers = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return url, headers


class Forwarder:
    """Posts OTLP bodies to an external endpoint, in order, from a bounded queue (full: drop, never block)."""

    def __init__(self, url: str, headers: dict[str, str]):
        self.url = url
        self.headers = headers
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(_FORWARD_QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._warned_at = 0.0

    def send(self, body: bytes, content_type: str) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._forward_forever(), name="otlp-forward")
        try:
            self._queue.put_nowait((body, content_type))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _forward_forever(self) -> None:
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            while True:
                body, content_type = await self._queue.get()
                try:
                    async with session.post(
                        self.url, data=body, headers={**self.headers, "Content-Type": content_type}
                    ) as response:
                        if response.status >= 300:
                            self._warn(f"{response.status} {(await response.text())[:200]}")
                except (ClientError, TimeoutError) as error:
                    self._warn(str(error))
                finally:
                    self._queue.task_done()

    def _warn(self, what: str) -> None:
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("forwarding spans to %s failed: %s", self.url, what)

    async def close(self) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class GatewayTracing:
    def __init__(self, store: Store, enabled: bool | None = None, environ: Mapping[str, str] | None = None):
        self.store = store
        self.enabled = _otel.enabled() if enabled is None else enabled
        url, headers = forward_target(os.environ if environ is None else environ)
        self.forwarder = Forwarder(url, headers) if url else None
        self._pending: dict[str, _Buffer] = {}
        self._own: list[Record] = []
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._flusher: asyncio.Task[None] | None = None
        self._sequence = 0
        self.dropped = 0

    # -- the gateway's own spans --------------------------------------------------------------------------------

    def root_context(self) -> tuple[str | None, str | None]:
        """(traceparent, span_parent) of a new run's root action: a new trace, under the run's span."""
        if not self.enabled:
            return None, None
        return _otel.traceparent(_otel.new_trace_id(), _otel.new_span_id()), _otel.new_span_id()

    def child_context(
        self, submitted: str | None, parent: Callable[[], ActionSummary]
    ) -> tuple[str | None, str | None]:
        """(traceparent, span_parent) of a child action: under the submitting call's span when the worker sent
        one, else under the parent action's span."""
        if not self.enabled:
            return None, None
        ids = _otel.parse_traceparent(submitted) or _otel.parse_traceparent(parent().traceparent)
        if ids is None:
            return None, None
        return _otel.traceparent(ids[0], _otel.new_span_id()), ids[1]

    def placed(self, action: ActionSummary, cluster: str, scores: Mapping[str, float], **details: Any) -> None:
        """The `queued` span of an attempt: from entering the queue until placement chose `cluster`."""
        ids = _otel.parse_traceparent(action.traceparent) if self.enabled else None
        if ids is None:
            return
        attributes: dict[str, str | int | float | bool] = {
            "flyte.action": action.name,
            "flyte.task": action.task,
            "flyte.attempt": action.attempts + 1,
            "flyte.cluster": cluster,
        }
        attributes.update({f"flyte.placement.{k}": v for k, v in details.items() if v is not None})
        attributes.update({f"flyte.score.{name}": round(score, 4) for name, score in scores.items()})
        # Buffered for the next flush: the placed transition is written by the dispatcher, in its own batches.
        record = _record(
            action.run, ids[0], _otel.new_span_id(), ids[1], "queued", _ns(action.updated_at), None, attributes
        )
        self._pending.setdefault(action.run, _Buffer()).add([record])
        if self.forwarder is not None:
            self._own.append(record)
        self._wake_flusher()

    def ended(self, *actions: ActionSummary) -> SpanWrite | None:
        """One write of the spans of ending actions of one run (and the run's span, for the root), to ride in the
        transaction that ends them: durable with the transitions, and no store write of its own."""
        if not self.enabled or not actions or self._counts.get(actions[0].run, 0) >= MAX_SPANS_PER_RUN:
            return None
        run = actions[0].run
        records = [record for action in actions for record in self._action_records(action)]
        return SpanWrite(run, records, Put(self._key(run, len(records)), _encode(records))) if records else None

    def _action_records(self, action: ActionSummary) -> list[Record]:
        ids = _otel.parse_traceparent(action.traceparent)
        if ids is None:
            return []
        trace_id, span_id = ids
        attributes: dict[str, str | int | float | bool] = {
            "flyte.action": action.name,
            "flyte.task": action.task,
            "flyte.phase": action.phase.value,
            "flyte.attempts": action.attempts,
        }
        if action.cluster:
            attributes["flyte.cluster"] = action.cluster
        if action.cached:
            attributes["flyte.cached"] = True
        if action.error is not None:
            attributes["flyte.error"] = f"{action.error.code}: {action.error.message}"[:1024]
        start, end = _ns(action.created_at), _ns(action.ended_at)
        status = "ok" if action.phase is Phase.SUCCEEDED else "error"
        run = action.run
        records = [_record(run, trace_id, span_id, action.span_parent, action.task, start, end, attributes, status)]
        if action.name == ROOT_ACTION and action.span_parent is not None:
            run_attributes: dict[str, str | int | float | bool] = {"flyte.task": action.task}
            run_attributes["flyte.phase"] = action.phase.value
            records.append(
                _record(run, trace_id, action.span_parent, None, f"run {run}", start, end, run_attributes, status)
            )
        return records

    def written(self, write: SpanWrite) -> None:
        """`write` was committed: count it against its run's bound, and forward its spans."""
        if write.run in self._counts:
            self._counts[write.run] += len(write.records)
        if self.forwarder is not None:
            self._own.extend(write.records)
            self._wake_flusher()

    def _key(self, run: str, count: int) -> str:
        # The key ends with the number of spans it holds, so a run's count is read from keys alone.
        self._sequence += 1
        return span_key(run, f"{time.time_ns():020d}.{os.getpid()}.{self._sequence}-{count}")

    # -- keeping spans per run ------------------------------------------------------------------------------------

    async def keep(self, run: str, spans: list[Record] | RunSpans) -> int:
        """Buffer spans of `run` for the next flush, within the run's bound; how many were past it (dropped)."""
        count = self._counts.get(run)
        if count is None:
            count = await self._count(run)
        pending = self._pending.get(run)
        room = max(0, MAX_SPANS_PER_RUN - count - (pending.size if pending is not None else 0))
        size = spans.count if isinstance(spans, RunSpans) else len(spans)
        if size > room:
            self.dropped += size - room
            if room == 0:
                return size  # a run at its bound (a wide fan-out reaches it): nothing is decoded only to be dropped
            spans = (spans.records() if isinstance(spans, RunSpans) else spans)[:room]
        if spans:
            self._pending.setdefault(run, _Buffer()).add(spans)
            self._wake_flusher()
        return max(0, size - room)

    def forward(self, body: bytes, content_type: str) -> None:
        if self.forwarder is not None:
            self.forwarder.send(body, content_type)

    async def _count(self, run: str) -> int:
        kvs, _ = await self.store.range(spans_prefix(run))
        count = sum(int(kv.key.rsplit("-", 1)[1]) for kv in kvs)
        self._counts[run] = count
        while len(self._counts) > _COUNTS_KEPT:
            self._counts.popitem(last=False)
        return count

    def _wake_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="span-flush")

    async def _flush_soon(self) -> None:
        while self._pending or self._own:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        """Write each run's buffered spans in one transaction (a key of records, a key of what came as OTLP), and
        forward the gateway's own."""
        pending, self._pending = self._pending, {}
        own, self._own = self._own, []
        if own and self.forwarder is not None:
            self.forwarder.send(encode_records(own), PROTOBUF)
        for run, buffer in pending.items():
            counted = self._counts.get(run)
            if counted is None:
                counted = await self._count(run)
            values = buffer.values(max(0, MAX_SPANS_PER_RUN - counted))
            if not values:
                continue
            count = sum(spans for spans, _ in values)
            try:
                await self.store.txn([], [Put(self._key(run, spans), value) for spans, value in values])
            except StoreError as error:
                log.warning("could not keep %d spans of run %s: %s", count, run, error)
                continue
            self._counts[run] = counted + count
            self._counts.move_to_end(run)

    async def read(self, run: str) -> list[SpanRecord]:
        """The run's spans, kept and still buffered, each once, sorted by start."""
        kvs, _ = await self.store.range(spans_prefix(run))
        seen: dict[tuple[str, str], SpanRecord] = {}
        raw: list[Record] = [r for kv in kvs for r in records_of(kv.value)]
        pending = self._pending.get(run)
        for record in [*raw, *(pending.records() if pending is not None else ())]:
            try:
                span = _RECORD.validate_python(record)
            except pydantic.ValidationError:
                continue  # a span some SDK sent that the contract cannot carry is left out, not a 500
            seen[(span.trace_id, span.span_id)] = span
        return sorted(seen.values(), key=lambda s: (s.start_ns, s.end_ns))

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        if self.forwarder is not None:
            await self.forwarder.close()


TRACING = web.AppKey("tracing", GatewayTracing)


class _Buffer:
    """A run's spans waiting for the next flush: records (the gateway's own) and OTLP requests as they came."""

    def __init__(self) -> None:
        self.size = 0
        self._records: list[Record] = []
        self._received: list[RunSpans] = []

    def add(self, spans: list[Record] | RunSpans) -> None:
        if isinstance(spans, RunSpans):
            self._received.append(spans)
            self.size += spans.count
        else:
            self._records.extend(spans)
            self.size += len(spans)

    def records(self) -> list[Record]:
        return [*self._records, *(record for spans in self._received for record in spans.records())]

    def values(self, room: int) -> list[tuple[int, bytes]]:
        """What to write, as (spans, value) pairs, within `room` spans: the records as JSON and the requests as
        one (protobuf requests concatenated are one request with all their spans); records alone when the room
        cuts the batch."""
        if self.size > room:
            records = self.records()[:room]
            return [(len(records), _encode(records))] if records else []
        values = [(len(self._records), _encode(self._records))] if self._records else []
        if self._received:
            values.append((self.size - len(self._records), b"".join(spans.body for spans in self._received)))
        return values


@dataclass(frozen=True)
class SpanWrite:
    run: str
    records: list[Record]
    put: Put


def _record(
    run: str,
    trace_id: str,
    span_id: str,
    parent: str | None,
    name: str,
    start_ns: int,
    end_ns: int | None,
    attributes: dict[str, str | int | float | bool],
    status: str = "unset",
) -> Record:
    attributes[_otel.RUN_ATTRIBUTE] = run
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "start_ns": start_ns,
        "end_ns": end_ns if end_ns is not None else time.time_ns(),
        "service": SERVICE,
        "cluster": None,
        "attributes": attributes,
        "status": status,
    }


def _encode(records: list[Record]) -> bytes:
    return to_json(records)

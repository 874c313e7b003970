"""The agent's spans: one per attempt it runs (under the action's span), and under it the process start or pool
dispatch, and each log upload. The attempt span's traceparent replaces the assignment's before the worker gets
it, so the worker's task span hangs under the agent that ran it.

Spans go to the gateway's `/v1/traces` with the agent's token, batched in the SDK's export thread. An assignment
without a traceparent (tracing off at the gateway) or `FLYTE_TRACING=0` here makes no spans at all.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flyte import _otel
from flyte._wire import Assignment, ClusterRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span

_DISPATCH_SPAN_NS = 1_000_000
"""A pool hand-over that took longer than this (1 ms) waited for something: it gets a span of its own."""
_KEPT = 4096
"""Attempt spans remembered after they end, for the log uploads that trail them."""


class AgentTracing:
    def __init__(self, gateway: str, token: str, cluster: ClusterRecord):
        self._tracing: _otel.ProcessTracing | None = None
        if _otel.enabled():
            url = _otel.traces_url(gateway)
            resource = {"flyte.cluster": cluster.name, "cloud.region": cluster.region, "cloud.provider": cluster.cloud}
            self._tracing = _otel.make_tracing("flyte-agent", resource, _otel.exporter(url, lambda _: token))
        self._spans: dict[str, Span] = {}
        self._parents: OrderedDict[tuple[str, str, int], str] = OrderedDict()

    def begin(self, assignment: Assignment) -> Assignment:
        """Start the attempt's span; the assignment to hand on, carrying that span as the worker's parent."""
        if self._tracing is None or assignment.traceparent is None:
            return assignment
        name = f"attempt {assignment.attempt} on {assignment.cluster}"
        span = self._tracing.start(name, assignment.traceparent, _attributes(assignment))
        traceparent = _otel.span_traceparent(span)
        if span is None or traceparent is None:
            return assignment
        self._spans[_key(assignment)] = span
        self._parents[(assignment.run, assignment.action, assignment.attempt)] = traceparent
        while len(self._parents) > _KEPT:
            self._parents.popitem(last=False)
        return assignment.model_copy(update={"traceparent": traceparent})

    def end(self, assignment: Assignment, error: str | None = None) -> None:
        _otel.end_span(self._spans.pop(_key(assignment), None), error)

    def span(self, name: str, assignment: Assignment) -> contextlib.AbstractContextManager[None]:
        """A step of an attempt, under the attempt's span (`begin` handed it on in the assignment)."""
        if self._tracing is None:
            return contextlib.nullcontext()
        return _ended(self._tracing.start(name, assignment.traceparent, _attributes(assignment)))

    @contextlib.contextmanager
    def dispatch(self, assignment: Assignment) -> Iterator[None]:
        """Handing an attempt to a warm pool worker. How long it took is an attribute of the attempt span
        (`flyte.pool.dispatch_ms`); it is a span of its own only when it waited (a busy pool, a worker starting):
        a span for every warm hand-over would cost more than the hand-over does (bench/remote_dispatch.py)."""
        start = time.time_ns()
        yield
        if self._tracing is None:
            return
        end = time.time_ns()
        attempt = self._spans.get(_key(assignment))
        if attempt is not None:
            attempt.set_attribute("flyte.pool.dispatch_ms", round((end - start) / 1e6, 3))
        if end - start >= _DISPATCH_SPAN_NS:
            span = self._tracing.start("pool dispatch", assignment.traceparent, _attributes(assignment), start)
            if span is not None:
                span.end(end)

    def log_upload(self, run: str, action: str, attempt: int, size: int) -> contextlib.AbstractContextManager[None]:
        """Sending a log batch of an attempt to the gateway, under the attempt's span."""
        parent = self._parents.get((run, action, attempt))
        if self._tracing is None or parent is None:
            return contextlib.nullcontext()
        attributes: _otel.Attributes = {
            _otel.RUN_ATTRIBUTE: run,
            "flyte.action": action,
            "flyte.attempt": attempt,
            "flyte.bytes": size,
        }
        return _ended(self._tracing.start("log upload", parent, attributes))

    def close(self) -> None:
        if self._tracing is not None:
            self._tracing.shutdown()


@contextlib.contextmanager
def _ended(span: Span | None) -> Iterator[None]:
    """Ends the span when the block does, marked as an error if the block raised."""
    try:
        yield
    except BaseException as error:
        _otel.end_span(span, f"{type(error).__name__}: {error}"[:1024])
        raise
    _otel.end_span(span)


def _key(assignment: Assignment) -> str:
    return f"{assignment.run}/{assignment.action}/{assignment.attempt}"


def _attributes(assignment: Assignment) -> dict[str, str | int | float | bool]:
    return {
        _otel.RUN_ATTRIBUTE: assignment.run,
        "flyte.action": assignment.action,
        "flyte.task": assignment.task,
        "flyte.attempt": assignment.attempt,
    }

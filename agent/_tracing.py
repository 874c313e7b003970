"""The agent's spans: one per attempt it runs (under the action's span), and under it the process start or pool
dispatch, and each log upload. The attempt span's traceparent replaces the assignment's before the worker gets
it, so the worker's task span hangs under the agent that ran it.

An attempt's span ends when its worker reported the result, not when the worker's process exits: the gateway
ends the action on that report, and a child span must lie within its parent. What the process does after (sending
its last spans, exiting) is the attempt span's `flyte.exit_ms`; log uploads after the report get no span. The
worker says when it reported: a pool worker in its `done` message, other workers on this machine in a file (see
`flyte._otel.REPORTED_DIR`). A worker in a pod says nothing: its attempt ends when the pod does.

The agent opens an attempt's span with one `with tracing.attempt(assignment) as traced:` around the attempt: the
span begins there, and ends when the block does (marked as an error if the block raised), at the time the worker
reported if it said so.

Spans are made without the OpenTelemetry SDK (`flyte._spans`) and go to the gateway's `/v1/traces` with the agent's
token, batched in a thread of their own. An assignment
without a traceparent (tracing off at the gateway) or `FLYTE_TRACING=0` here makes no spans at all.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flyte import _otel
from flyte._wire import Assignment, AttemptKey, ClusterRecord

if TYPE_CHECKING:
    from flyte._spans import Span

_DISPATCH_SPAN_NS = 1_000_000
"""A pool hand-over that took longer than this (1 ms) waited for something: it gets a span of its own."""


class AgentTracing:
    def __init__(self, gateway: str, token: str, cluster: ClusterRecord, attempts_dir: Path):
        self._attempts_dir = attempts_dir
        self._tracing: _otel.ProcessTracing | None = None
        if _otel.enabled():
            resource = {"flyte.cluster": cluster.name, "cloud.region": cluster.region, "cloud.provider": cluster.cloud}
            self._tracing = _otel.make_tracing(
                "flyte-agent", resource, _otel.poster(gateway), _otel.token_unless_full(token)
            )
        self._spans: dict[str, Span] = {}
        self._reported: dict[str, int] = {}
        self._uploads: dict[str, list[tuple[int, int, int]]] = {}
        """Log uploads (start, end, bytes) of open attempts, made spans when the attempt ends (if they lie within)."""
        self._dispatched: dict[str, int] = {}
        """When the hand-over of an open attempt ended, if it was slow enough to be a span of its own."""

    @contextlib.contextmanager
    def attempt(self, assignment: Assignment) -> Iterator[Assignment]:
        """The attempt's span around the block, which gets the assignment to hand on (it carries that span as the
        worker's parent). An exception from the block ends the span as an error and goes on."""
        traced = self._begin(assignment)
        error: str | None = None
        try:
            yield traced
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"[:1024]
            raise
        finally:
            self._read_reported(traced)
            self._end(traced, error)

    def _begin(self, assignment: Assignment) -> Assignment:
        """Start the attempt's span; the assignment to hand on, carrying that span as the worker's parent."""
        if self._tracing is None or assignment.traceparent is None:
            return assignment
        name = f"attempt {assignment.attempt} on {assignment.cluster}"
        span = self._tracing.start(name, assignment.traceparent, _attributes(assignment))
        if span is None:
            return assignment
        self._spans[_key(assignment)] = span
        return assignment.model_copy(update={"traceparent": span.traceparent})

    def reported(self, key: str, reported_ns: int) -> None:
        """The worker of attempt `key` (`run/action/attempt`) reported its result at `reported_ns`."""
        if key in self._spans:
            self._reported[key] = reported_ns

    def _read_reported(self, assignment: Assignment) -> None:
        """When the worker reported the attempt, as it left it on this machine; the file goes either way."""
        if assignment.reusable is not None:
            return  # a pool worker leaves no file: it says when in its `done` (`reported`)
        path = _otel.reported_path(self._attempts_dir, assignment.run, assignment.action, assignment.attempt)
        try:
            text = path.read_text()
            path.unlink()
        except OSError:
            return  # it crashed before reporting, or it was a pool worker (which says so in its `done`)
        if _key(assignment) in self._spans:
            with contextlib.suppress(ValueError):
                self._reported[_key(assignment)] = int(text)

    def _end(self, assignment: Assignment, error: str | None = None) -> None:
        key = _key(assignment)
        span = self._spans.pop(key, None)
        reported = self._reported.pop(key, None)
        dispatched = self._dispatched.pop(key, 0)
        uploads = self._uploads.pop(key, [])
        if span is None or self._tracing is None:
            return
        now = time.time_ns()
        end = now
        if reported is not None:
            # Not before its hand-over ended: a pool worker may report before the agent's write to it returns.
            end = min(now, max(reported, span.start_time, dispatched))
            span.set_attribute("flyte.exit_ms", round((now - end) / 1e6, 3))
        parent = assignment.traceparent
        for start, finish, size in uploads:
            if finish <= end:
                upload = self._tracing.start(
                    "log upload", parent, {**_attributes(assignment), "flyte.bytes": size}, start
                )
                if upload is not None:
                    upload.end(finish)
        _otel.end_span(span, error, end)

    def span(self, name: str, assignment: Assignment) -> contextlib.AbstractContextManager[None]:
        """A step of an attempt, under the attempt's span (`attempt` handed it on in the assignment)."""
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
                if attempt is not None:
                    self._dispatched[_key(assignment)] = end

    @contextlib.contextmanager
    def log_upload(self, run: str, action: str, attempt: int, size: int) -> Iterator[None]:
        """Sending a log batch of an attempt to the gateway: a span under the attempt's, if the attempt is open and
        the upload ends before the attempt does (the span is made when the attempt ends)."""
        key = str(AttemptKey(run, action, attempt))
        if self._tracing is None or key not in self._spans:
            yield
            return
        start = time.time_ns()
        yield
        self._uploads.setdefault(key, []).append((start, time.time_ns(), size))

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
    return str(AttemptKey.of(assignment))


def _attributes(assignment: Assignment) -> dict[str, str | int | float | bool]:
    return {
        _otel.RUN_ATTRIBUTE: assignment.run,
        "flyte.action": assignment.action,
        "flyte.task": assignment.task,
        "flyte.attempt": assignment.attempt,
    }

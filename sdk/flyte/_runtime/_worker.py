"""Running one assignment: load inputs, run the task body with a remote controller, report the result."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _failpoints as failpoints
from .. import _otel
from .._config import use_attempt_config
from .._context import ActionContext
from .._execute import execute_body
from .._interface import EncodedInputs
from .._remote_controller import AttemptSuspended, RemoteController
from .._wire import ActionEvent, Assignment, ErrorInfo, Phase, WireTrace, WireValue
from .._worker_link import WorkerLink
from ..errors import error_info
from ._bundle import BundleLoadError, find_task, load_bundle, user_paths

if TYPE_CHECKING:
    from .._client import GatewayBlobs

log = logging.getLogger("flyte.worker")


async def run_assignment(
    assignment: Assignment,
    bundle: Path,
    endpoint: str,
    link: WorkerLink | None = None,
    received_ns: int | None = None,
    reporting: Callable[[bool], None] | None = None,
) -> int:
    """Run one attempt and report how it ended; returns when (ns) it reported, which is before the gateway ended the
    action. Raises only when the result could not be reported. `received_ns`: when this worker was handed the
    attempt (its process launched, or the assignment arrived), the start of its `start-up` span. `reporting`: told
    True as the attempt's result begins to be reported, its task ended, and False once the gateway answered (a pool
    worker tells its agent of a report left unanswered a while, `PoolFinished`)."""
    own_link = link is None
    if link is None:
        link = WorkerLink(endpoint, assignment.token, assignment.run)
        await link.connect()
    try:
        try:
            event = await _attempt(assignment, bundle, link, received_ns or time.time_ns())
        except AttemptSuspended as suspended:
            # The gateway ended this attempt when it suspended it: there is no result to report.
            log.info("attempt %d of %s suspended (%s)", assignment.attempt, assignment.task, suspended)
            return time.time_ns()
        if reporting is not None:
            reporting(True)
        try:
            if hold := failpoints.slow_report_seconds():
                await asyncio.sleep(hold)
            reported_ns = time.time_ns()
            await link.report(assignment.action, event[0], event[1])
        finally:
            if reporting is not None:
                reporting(False)
        return reported_ns
    finally:
        if own_link:
            await link.close()
            # A one-shot worker exits next: its spans leave first (a pool's leave in their batches).
            await asyncio.to_thread(_otel.flush_worker)


async def _attempt(
    assignment: Assignment, bundle: Path, link: WorkerLink, received_ns: int
) -> tuple[ActionEvent, dict[str, WireTrace]]:
    def ended(phase: Phase, output: WireValue | None = None, error: ErrorInfo | None = None) -> ActionEvent:
        return ActionEvent(
            phase=phase,
            attempt=assignment.attempt,
            cluster=assignment.cluster,
            epoch=assignment.epoch,
            output=output,
            error=error,
            started_at=received_ns / 1e9,
        )

    # Only an earlier attempt can have recorded traces: the first attempt skips the round trip.
    traces = await link.traces(assignment.action) if assignment.attempt > 1 else {}
    controller = RemoteController(link, asyncio.get_running_loop(), assignment.version, traces)
    try:
        load_bundle(bundle)
        task = find_task(assignment.task)
        if assignment.timeout_seconds is not None:
            # The assignment carries the timeout in force for this call (an `override` may have changed it).
            task = task.override(timeout=assignment.timeout_seconds)
        action = ActionContext(
            controller=controller,
            run_name=assignment.run,
            action_name=assignment.action,
            task_name=assignment.task,
            attempt=assignment.attempt,
            project=assignment.project,
            domain=assignment.domain,
            version=assignment.version,
            custom_context=assignment.custom_context,
        )
        inputs = EncodedInputs.of({k: v.to_encoded() for k, v in assignment.inputs.items()})
        values = task.interface.decode_inputs(inputs)
        attributes: _otel.Attributes = {
            "flyte.action": assignment.action,
            "flyte.attempt": assignment.attempt,
            _otel.RUN_ATTRIBUTE: assignment.run,
        }
        # From launch (or hand-over) to the user's function: interpreter start, imports, the bundle, the inputs.
        _otel.record_span("start-up", assignment.traceparent, attributes, received_ns)
        with _otel.current_span(f"task {assignment.task}", assignment.traceparent, attributes):
            output = await execute_body(task, action, values)
        wire = WireValue.from_encoded(output) if output is not None else None
        return ended(Phase.SUCCEEDED, output=wire), dict(controller.recorded)
    except BundleLoadError as error:
        # A ModuleLoadError with the original exception's type and traceback, so `except ValueError` in a parent
        # matches too; the message says it happened at import, not in the task's body.
        info = error_info(error.error).model_copy(
            update={"error_type": "ModuleLoadError", "kind": "user", "message": str(error)[:65_536]}
        )
        info = info.model_copy(update={"traceback": user_paths(info.traceback, bundle, assignment.source_root)})
        _log_failure(assignment, info)
        return ended(Phase.FAILED, error=info), dict(controller.recorded)
    except (Exception, SystemExit) as error:
        # A flyte error as it is; anything else (an input failed to decode, the body raised or called `sys.exit`)
        # is the user's code or values, reported as a user error.
        info = error_info(error)
        info = info.model_copy(update={"traceback": user_paths(info.traceback, bundle, assignment.source_root)})
        _log_failure(assignment, info)
        return ended(Phase.FAILED, error=info), dict(controller.recorded)


def _log_failure(assignment: Assignment, info: ErrorInfo) -> None:
    """The failure in the attempt's own log too, traceback and all, where `flyte get logs` shows it."""
    detail = info.traceback or f"{info.code}: {info.message}\n"
    log.error("attempt %d of %s failed: %s\n%s", assignment.attempt, assignment.task, info.message, detail.rstrip())


def configure(assignment: Assignment, endpoint: str) -> None:
    """Point this process's SDK at the gateway, as the assignment's run: for this context (the attempt's task) and, for
    code outside any attempt's context, the process. A pool worker does this per attempt, so nothing here re-reads
    the environment or builds what an earlier attempt built."""
    from .._codec import use_blob_backend

    use_attempt_config(endpoint, assignment.token, assignment.project, assignment.domain)
    cluster = _cluster()
    if assignment.traceparent is not None:
        _otel.configure_worker(endpoint, assignment.run, assignment.token, cluster)
    use_blob_backend(_blobs(endpoint, cluster).with_token(assignment.token))


@functools.cache
def _cluster() -> str | None:
    return os.environ.get("FLYTE_CLUSTER")


@functools.cache
def _blobs(endpoint: str, cluster: str | None) -> GatewayBlobs:
    """The gateway's blob store as this worker reaches it; each attempt's copy carries its own token."""
    from .._client import GatewayBlobs

    return GatewayBlobs(endpoint, None, cluster=cluster)

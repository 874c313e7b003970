"""A warm pool worker: loads its environment's bundle once, then runs assignments from its agent's socket, up to
`concurrency` at a time, each reporting to the gateway like a one-shot worker would. Children of its own pool that
its attempts submit may be sent back to it by the gateway (`GatewayReply.here`); it starts them at once and tells
its agent (`PoolAdopt`), which holds its own copy for it.

The socket is a Unix socket's path for a worker on the agent's machine, or `tcp://HOST:PORT` for a worker in a pod,
which also has no bundle on disk: it fetches it from the gateway with its first assignment's token. Either way
the worker's hello names it and says the pool's secret."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from pathlib import Path

from .. import _collector, _otel
from .. import _failpoints as failpoints
from .._due_in_order import DueInOrder
from .._gateway_socket import GatewaySocket
from .._tick_writer import TickWriter
from .._wire import (
    FINISHED_NOTICE_SECONDS,
    TO_POOL_WORKER,
    Assignment,
    AttemptKey,
    PoolAbort,
    PoolAdopt,
    PoolDone,
    PoolFinished,
    PoolHello,
    PoolLog,
)
from .._worker_link import WorkerLink
from ._bundle import BundleLoadError, fetch_bundle, load_bundle
from ._output import AttemptOutput
from ._worker import configure, run_assignment

log = logging.getLogger("flyte.worker.pool")
POOL_WORKER_ENV = "FLYTE_POOL_WORKER"
"""Names a pool worker process; it says the name back in its hello, so the agent knows which process connected."""
POOL_SECRET_ENV = "FLYTE_POOL_SECRET"
"""The pool's secret, said in the hello: anyone may dial a TCP port, only the pool's own workers know it."""
_OUTPUT_SECONDS = 0.25
"""How often running attempts' output goes to the agent (which ships logs as often)."""


async def serve_pool(
    address: str, bundle: Path | None, endpoint: str, concurrency: int, output: AttemptOutput | None = None
) -> None:
    """Serve the pool at `address`; with `output`, what each attempt prints and logs goes to the agent as
    `{"log": key, "stream": ..., "text": ...}` lines, each attempt's before its `done`."""
    _otel.start_worker(endpoint, os.environ.get("FLYTE_CLUSTER"))
    if bundle is not None:
        try:
            load_bundle(bundle)
        except BundleLoadError:
            # Not fatal: a worker that died here would be restarted for ever. Each assignment tries the import
            # again and fails with this error, as the user's, traceback and all.
            log.exception("the code bundle failed to load; its assignments will fail with this error")
    # After the bundle: the environment's modules live as long as the worker, so no collection looks at them again.
    _collector.collect_less_often(_collector.WORKER_GC_THRESHOLDS)
    if hold := failpoints.slow_pool_start_seconds():
        await asyncio.sleep(hold)
    reader, stream = await _dial(address)
    hello = PoolHello(hello=os.getpid(), worker=os.environ.get(POOL_WORKER_ENV), secret=os.environ.get(POOL_SECRET_ENV))
    stream.write(hello.model_dump_json().encode() + b"\n")
    await stream.drain()
    # A turn's lines in one write: the `done`s of results answered together, a batch of `adopt`s.
    writer = TickWriter(stream)
    running: dict[str, asyncio.Task[None]] = {}
    current: dict[str, Assignment] = {}
    slots = asyncio.Semaphore(concurrency)
    idle = _collector.WhenIdle(lambda: bool(running))
    # The attempts' links share one socket (and its HTTP session): a WebSocket opened per attempt cost a round trip
    # before each attempt could report, and ~15% of a busy pool worker's time.
    socket = GatewaySocket(endpoint)

    async def send_output(key: str | None = None) -> None:
        if output is None:
            return
        for attempt, stream, text in output.take(key):
            writer.write(PoolLog(log=attempt, stream=stream, text=text).model_dump_json().encode() + b"\n")
        await writer.drain()

    async def ship_output_forever() -> None:
        while True:
            await asyncio.sleep(_OUTPUT_SECONDS)
            await send_output()

    shipper = asyncio.create_task(ship_output_forever())

    def tell_finished(key: str) -> None:
        writer.write(PoolFinished(finished=key).model_dump_json().encode() + b"\n")

    # Results being reported, each told to the agent (`PoolFinished`) if still unanswered a while after its report
    # began: the agent then does not report its attempt `running`.
    notices: DueInOrder[None] = DueInOrder(FINISHED_NOTICE_SECONDS, lambda key, _: tell_finished(key))

    async def run_one(assignment: Assignment, key: str) -> None:
        received = time.time_ns()
        reported: int | None = None
        async with slots:
            # Each attempt's token acts for that attempt alone and ends with it: one link per attempt, each message
            # saying its token, and the process's SDK always speaks with the token of an attempt still running here.
            link = WorkerLink(socket, assignment.token, assignment.run)
            current[key] = assignment
            try:
                await link.connect()
                configure(assignment, endpoint)
                here = bundle
                if here is None:
                    here = await asyncio.to_thread(fetch_bundle, endpoint, assignment.token, assignment.bundle_digest)
                token = AttemptOutput.attribute(key)
                try:
                    reporting = functools.partial(_reporting, notices, key)
                    reported = await run_assignment(assignment, here, endpoint, link, received, reporting=reporting)
                finally:
                    AttemptOutput.detach(token)
            except Exception:
                log.exception("assignment %s failed to report", key)
            finally:
                await link.close()
                current.pop(key, None)
                if current:
                    configure(next(reversed(current.values())), endpoint)
                running.pop(key, None)
                if not running:
                    idle.now_idle()
                await send_output(key)
                # When it reported: the agent ends the attempt's span there (see `_otel.REPORTED_DIR`).
                writer.write(PoolDone(done=key, reported=reported).model_dump_json().encode() + b"\n")
                await writer.drain()

    class Here:
        """Children of this pool that this worker's attempts submit, sent back to it by the gateway to start itself."""

        def room(self) -> int:
            return max(0, concurrency - len(running))

        def start(self, assignment: Assignment) -> None:
            key = str(AttemptKey.of(assignment))
            if key in running or failpoints.drops_children_given_here():
                return
            # Said before it starts, so the agent hears of it before its `done` (the agent holds its own copy).
            writer.write(PoolAdopt(adopt=key).model_dump_json().encode() + b"\n")
            running[key] = asyncio.create_task(run_one(assignment, key))

    socket.runs_here = Here()

    while line := await reader.readline():
        message = TO_POOL_WORKER.validate_json(line)
        if isinstance(message, PoolAbort):
            task = running.get(message.abort)
            if task is not None:
                task.cancel()
            continue
        assignment = message
        key = str(AttemptKey.of(assignment))
        if key in running:
            continue  # taken already, given by the gateway (the agent's copy of a child this worker adopted)
        running[key] = asyncio.create_task(run_one(assignment, key))
    shipper.cancel()
    await socket.close()


async def _dial(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("tcp://"):
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        return await asyncio.open_connection(host.strip("[]"), int(port))
    return await asyncio.open_unix_connection(address)


def _reporting(notices: DueInOrder[None], key: str, begun: bool) -> None:
    """Attempt `key`'s result begins to be reported (`begun`), or its report was answered."""
    if begun:
        notices.add(key, None)
    else:
        notices.drop(key)

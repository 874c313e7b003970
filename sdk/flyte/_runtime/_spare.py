"""A spare worker: started ahead of time with the SDK imported, it waits for one assignment, runs it and exits."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from .. import _collector, _otel
from .._wire import SpareAssign, SpareHello
from ._worker import configure, run_assignment


async def serve_once(socket: Path, endpoint: str) -> None:
    _otel.start_worker(endpoint, os.environ.get("FLYTE_CLUSTER"))
    # Started ahead of its assignment, so its first collection costs the attempt nothing.
    _collector.collect_less_often(_collector.WORKER_GC_THRESHOLDS)
    reader, writer = await asyncio.open_unix_connection(str(socket))
    writer.write(SpareHello(hello=os.getpid()).model_dump_json().encode() + b"\n")
    await writer.drain()
    line = await reader.readline()
    if not line:
        return
    received = time.time_ns()
    message = SpareAssign.model_validate_json(line)
    assignment = message.assignment
    # This process runs this one attempt: its task's variables are simply its environment from here on.
    os.environ.update(message.env)
    configure(assignment, endpoint)
    reported = await run_assignment(assignment, Path(message.bundle), endpoint, received_ns=received)
    _otel.note_reported(assignment.run, assignment.action, assignment.attempt, reported)
    writer.close()

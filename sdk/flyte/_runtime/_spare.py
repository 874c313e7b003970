"""A spare worker: started ahead of time with the SDK imported, it waits for one assignment, runs it and exits."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from .. import _otel
from .._wire import Assignment
from ._worker import configure, run_assignment


async def serve_once(socket: Path, endpoint: str) -> None:
    _otel.start_worker(endpoint, os.environ.get("FLYTE_CLUSTER"))
    reader, writer = await asyncio.open_unix_connection(str(socket))
    writer.write(json.dumps({"hello": os.getpid()}).encode() + b"\n")
    await writer.drain()
    line = await reader.readline()
    if not line:
        return
    received = time.time_ns()
    message = json.loads(line)
    assignment = Assignment.model_validate(message["assignment"])
    # This process runs this one attempt: its task's variables are simply its environment from here on.
    os.environ.update(message.get("env") or {})
    configure(assignment, endpoint)
    reported = await run_assignment(assignment, Path(message["bundle"]), endpoint, received_ns=received)
    _otel.note_reported(assignment.run, assignment.action, assignment.attempt, reported)
    writer.close()

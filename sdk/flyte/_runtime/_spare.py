"""A spare worker: started ahead of time with the SDK imported, it waits for one assignment, runs it and exits."""

from __future__ import annotations

import asyncio
import json
import os
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
    message = json.loads(line)
    assignment = Assignment.model_validate(message["assignment"])
    # This process runs this one attempt: its task's variables are simply its environment from here on.
    os.environ.update(message.get("env") or {})
    configure(assignment, endpoint)
    await run_assignment(assignment, Path(message["bundle"]), endpoint)
    writer.close()

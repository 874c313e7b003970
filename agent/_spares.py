"""Spare workers: processes started ahead of time with the SDK already imported, each waiting for one attempt.

A one-off (not reusable) action then starts without paying for interpreter start-up and imports, which are most of
a cold process's latency. A spare runs exactly one attempt and exits, as a freshly started process would; the
attempt's memory limit is applied to the spare's own cgroup before it is handed the assignment, so limits and OOM
reporting work as on the cold path. Attempts with a CPU limit (not adjustable after start here) start cold.

The same socket hears a cold worker say it is up (`flyte._runtime._up`): until then its start holds one of the
agent's start slots (see `agent._admission`), as a spare's start does until its hello.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from agent._host import AttemptHost
from agent._pools import Launching
from agent._settings import WORKER_PYTHON, Prepared
from agent.backends import Exit, ExitKind, Handle, LaunchSpec
from flyte._background import Background
from flyte._wire import ON_SPARE_SOCKET, Assignment, SpareAssign, WorkerUp

log = logging.getLogger("flyte.agent.spares")


@dataclass
class Spare:
    handle: Handle
    writer: asyncio.StreamWriter | None = None
    assignment: Assignment | None = None
    output: bytearray = field(default_factory=bytearray)


class Spares:
    def __init__(self, agent: AttemptHost, directory: Path, count: int = 2):
        self.agent = agent
        self.directory = directory
        self.count = count
        self.socket = directory / "spares.sock"
        self._ready: list[Spare] = []
        self._waiting: dict[int, Spare] = {}
        self._up: dict[int, asyncio.Future[None]] = {}
        """Workers' start-ups by pid; whichever of the worker and the agent comes first creates the entry, and the
        agent's `until_up`, which always follows the launch, removes it."""
        self._server: asyncio.base_events.Server | None = None
        self._tasks = Background()

    async def start(self) -> None:
        if not self.agent.backend.runs_on_this_host:
            return
        self.socket.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.socket))
        if self.agent.run_as is not None:
            self.agent.run_as.share_socket(self.socket)
        for _ in range(self.count):
            self._refill()

    def _refill(self) -> None:
        self._tasks.spawn(self._launch())

    async def _launch(self) -> None:
        spare = Spare(handle=Launching())

        def on_output(stream: str, data: bytes) -> None:
            if spare.assignment is not None:
                self.agent.ship_log(spare.assignment, stream, data)
                if stream == "stderr":
                    spare.output.extend(data)
                    del spare.output[:-4096]

        spec = LaunchSpec(
            key=f"spare/{time.monotonic_ns()}",
            command=[WORKER_PYTHON, "-m", "flyte._runtime", "--spare", str(self.socket)],
            env=self.agent.worker_env(),
            cwd=self.agent.work_dir,
        )
        async with self.agent.admission.starting():
            try:
                spare.handle = await self.agent.backend.launch(spec, on_output)
            except Exception:
                log.exception("could not start a spare worker")
                return
            pid = getattr(spare.handle, "pid", None)
            if pid is None:
                await spare.handle.kill("a spare must report its pid")
                return
            self._waiting[pid] = spare
            await self.until_up(spare.handle)

    async def until_up(self, handle: Handle) -> None:
        """Wait until the worker in `handle` is up (its hello or `up`), or its process ended."""
        pid = getattr(handle, "pid", None)
        if pid is None or self._server is None:
            return
        up = self._up.setdefault(pid, asyncio.get_running_loop().create_future())
        ended = asyncio.ensure_future(handle.wait())
        try:
            await asyncio.wait((up, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            self._up.pop(pid, None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = ON_SPARE_SOCKET.validate_json(await reader.readline())
        except ValidationError:
            writer.close()
            return
        if isinstance(hello, WorkerUp):  # a cold worker, which only says so
            self._mark_up(hello.up)
            writer.close()
            return
        pid = hello.hello
        spare = self._waiting.pop(pid, None)
        if spare is None:
            writer.close()
            return
        self._mark_up(pid)
        spare.writer = writer
        self._ready.append(spare)

    def _mark_up(self, pid: int) -> None:
        # The worker may be quicker than the agent's `until_up`, which then finds the entry done.
        up = self._up.setdefault(pid, asyncio.get_running_loop().create_future())
        if not up.done():
            up.set_result(None)

    def take(self, assignment: Assignment, prepared: Prepared) -> Spare | None:
        """A ready spare for this attempt, or None (the caller starts a cold process). A spare runs the agent's
        Python: an attempt whose image has its own starts cold."""
        cpu = assignment.resources.limit("cpu")
        if cpu or not self._ready or prepared.python != WORKER_PYTHON:
            return None
        spare = self._ready.pop(0)
        self._refill()
        return spare

    async def run(self, spare: Spare, assignment: Assignment, bundle: Path, prepared: Prepared) -> Exit:
        spare.assignment = assignment
        memory = assignment.resources.limit("memory")
        if memory:
            limit = getattr(spare.handle, "limit_memory", None)
            if limit is None or not limit(int(memory)):
                log.warning(
                    "cannot limit a spare's memory; %s runs without its %s-byte limit", assignment.action, memory
                )
        assert spare.writer is not None
        fixed = self.agent.fixed_worker_env()
        env = {k: v for k, v in prepared.env.items() if k not in fixed}
        spare.writer.write(
            # The task's variables go with the assignment: the spare sets them before it loads any user code.
            SpareAssign(assignment=assignment, bundle=str(bundle), env={**env, **prepared.secret_env})
            .model_dump_json()
            .encode()
            + b"\n"
        )
        await spare.writer.drain()
        timeout = assignment.timeout_seconds + 5.0 if assignment.timeout_seconds else None
        try:
            return await asyncio.wait_for(spare.handle.wait(), timeout)
        except TimeoutError:
            await spare.handle.kill("timed out")
            return Exit(ExitKind.TIMEOUT, detail="past the task's timeout")

    async def close(self) -> None:
        for spare in [*self._ready, *self._waiting.values()]:
            with contextlib.suppress(Exception):
                await spare.handle.kill("agent stopping")
        if self._server is not None:
            self._server.close()
        self.socket.unlink(missing_ok=True)

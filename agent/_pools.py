"""Reusable pools: warm worker processes per (environment, version), fed over a local socket.

An assignment for a reusable environment goes to a worker with a free slot (no process start); a pool grows to
its `max_replicas` when every slot is busy, shrinks back to `min_replicas` after `idle_ttl`, and replaces a worker
that dies (its in-flight attempts end `LOST`, which the gateway retries as system errors). Workers run under the
agent's backend, so the environment's resource limits apply to each of them. A worker that ends before its hello
(its code kills the interpreter at import) is not restarted at once: the pool backs off, and attempts waiting for
a worker meanwhile end with `START_FAILED` and the worker's output, the user's error. (A bundle that merely raises
at import does not kill the worker: each attempt reports the exception itself.)

The socket carries JSON lines: the worker says `{"hello": pid, "worker": its name, "secret": the pool's}`; the agent
sends an `Assignment` or `{"abort": key}`; the worker sends `{"log": key, "stream": ..., "text": ...}` with what an
attempt printed or logged, `{"adopt": key}` when it starts a child the gateway gave it directly, and
`{"done": key}` once it has reported the attempt's result to the gateway. Each side writes the lines of one turn of
its event loop at once (`flyte/_tick_writer.py`): a fan-out's lines leave a batch at a time.

A child of a pool worker's own pool may be given to that worker in the answer to its submission (`GatewayReply.here`):
the gateway sends the agent its copy marked held, and the agent waits up to `HELD_SECONDS` for the worker's
`adopt`, then counts the attempt as that worker's as if it had sent it there. Without one in time (the worker died,
or never had the answer) the agent runs it on the pool as any other, and tells a late adopter to abort its copy.
The socket is a Unix socket here; `KubePools` (agent/backends/_kube_pools.py) serves the
same protocol over TCP to pods, and starts and stops workers by scaling a Deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

from pydantic import ValidationError

from agent._host import AttemptHost
from agent._settings import Prepared, remove_files
from agent.backends import Exit, ExitKind, Handle, LaunchSpec
from flyte._background import Background
from flyte._runtime._pool import POOL_SECRET_ENV, POOL_WORKER_ENV
from flyte._tick_writer import TickWriter
from flyte._wire import (
    FROM_POOL_WORKER,
    HELD_SECONDS,
    Assignment,
    AttemptKey,
    PoolAbort,
    PoolAdopt,
    PoolFinished,
    PoolHello,
    PoolLog,
    ReusableSpec,
    Stream,
)

log = logging.getLogger("flyte.agent.pools")
_OUTPUT_KEPT = 8192
_BACKOFF_FIRST = 1.0
_BACKOFF_CAP = 60.0
_REFUSED_KEPT = 4096
"""Held attempts the agent ran itself (or that were aborted), remembered so a late `adopt` is told to abort."""


@dataclass
class Worker:
    handle: Handle
    ident: str = ""
    """Given to the process at launch and said back in its hello: which process a connection belongs to."""
    writer: asyncio.StreamWriter | None = None
    lines: TickWriter | None = None
    """What the agent says to it, through `writer`: a turn's assignments (a batch of children) in one write."""
    inflight: dict[str, asyncio.Future[Exit]] = field(default_factory=dict)
    idle_since: float = field(default_factory=time.monotonic)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    output: bytearray = field(default_factory=bytearray)
    """The end of what the process printed before its hello: why it died, if it dies at start."""


@dataclass
class Pool:
    key: str
    """Its project, domain, environment and version (`Assignment.pool_key`): another project's environment of the
    same name and version is another pool, with its own code, settings and secrets."""
    bundle: Path
    socket: Path
    min_replicas: int
    max_replicas: int
    concurrency: int
    idle_ttl: float | None
    template: Assignment
    """The assignment the pool was made for: its resources size every worker."""
    prepared: Prepared = field(default_factory=Prepared)
    """The environment's settings, given to every worker at its start (a pool serves one environment version)."""
    workers: list[Worker] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    server: asyncio.base_events.Server | None = None
    pending: list[Worker] = field(default_factory=list)
    failed: Exit | None = None
    """Why the pool's workers cannot start (their image cannot be pulled): the assignments waiting end with it."""
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """Said by the pool's workers in their hello: only they may take its assignments (and their tokens)."""
    start_failures: int = 0
    """Workers in a row that ended before their hello; a hello resets it."""
    start_failed: Exit | None = None
    """How the last of them ended, while the pool backs off: attempts that need a new worker end with it."""
    retry_at: float = 0.0
    """No new worker starts before this time (monotonic) while `start_failed` is set."""
    failures_seen: int = 0
    """Grows with every start failure while no worker is connected: each waiting attempt ends with that one."""

    def free_slots(self) -> int:
        return sum(self.concurrency - len(w.inflight) for w in self.workers if w.writer is not None)


@dataclass
class _EarlyAdopt:
    """A worker's `adopt` that came before the gateway's copy of the attempt, with what it sent of it since."""

    worker: Worker
    at: float
    logs: list[tuple[Stream, str]] = field(default_factory=list)
    done: bool = False
    reported: int | None = None


@dataclass
class _Held:
    """An attempt the agent holds for the worker the gateway also gave it to, until that worker's `adopt`."""

    pool: Pool
    assignment: Assignment
    done: asyncio.Future[Exit]
    waiting: asyncio.Future[Worker | Exit]
    """The adopter, or how the wait ended (an abort)."""


class Pools:
    def __init__(self, agent: AttemptHost, directory: Path):
        self.agent = agent
        self.directory = directory
        self.pools: dict[str, Pool] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._tasks = Background()
        self._closing = False
        self._assignments: dict[str, Assignment] = {}
        """In flight on a worker, by key: whose logs a worker's `log` lines are."""
        self._held: dict[str, _Held] = {}
        """Held attempts waiting for their worker's `adopt` (or an abort), by key."""
        self._early: dict[str, _EarlyAdopt] = {}
        """Adopts that came before the gateway's copy of their attempt, by key."""
        self._refused: OrderedDict[str, None] = OrderedDict()

    def warm(self) -> dict[str, int]:
        warm: dict[str, int] = {}
        for pool in self.pools.values():
            warm[pool.key] = pool.free_slots()
        return warm

    async def run(
        self, assignment: Assignment, bundle: Path, prepared: Prepared | None = None, held: bool = False
    ) -> Exit:
        """Run `assignment` on its pool's worker to its end. `held`: the gateway gave it to the pool worker that
        submitted it too; it runs there once that worker says it took it."""
        key = str(AttemptKey.of(assignment))
        done: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        # From the pool's lookup to the hand-over: waiting for a free slot (or a new worker) shows here.
        with self.agent.tracing.dispatch(assignment):
            pool = await self._pool(assignment, bundle, prepared or Prepared())
            adopter = await self._adopter(pool, key, assignment, done) if held else None
            if isinstance(adopter, Exit):
                return adopter
            if adopter is not None:
                worker = adopter
            else:
                slot = await self._slot(pool)
                if isinstance(slot, Exit):
                    if slot.output:
                        # What the dying worker printed is this attempt's log too: `flyte get logs` shows why.
                        self.agent.ship_log(assignment, "stderr", slot.output.encode())
                    return slot
                if self.agent.stopped(key):
                    # Aborted while it waited for the slot (a run cancelled, a drain): the slot goes to the next
                    # in line, unused. An aborted waiter is not woken at once: a run's thousands waiting would
                    # each wake every other one.
                    async with pool.changed:
                        pool.changed.notify()
                    return Exit(ExitKind.KILLED, detail="aborted while it waited for a slot of its pool")
                worker = slot
                worker.inflight[key] = done
                self._assignments[key] = assignment
                assert worker.lines is not None
                worker.lines.write(assignment.model_dump_json().encode() + b"\n")
                self.agent.handed_over(key)
                await worker.lines.drain()
        try:
            return await done
        finally:
            worker.inflight.pop(key, None)
            self._assignments.pop(key, None)
            worker.idle_since = time.monotonic()
            async with pool.changed:
                # One slot freed: wake one waiter, not all of them (a fan-out has thousands waiting).
                pool.changed.notify()

    async def _adopter(
        self, pool: Pool, key: str, assignment: Assignment, done: asyncio.Future[Exit]
    ) -> Worker | Exit | None:
        """The worker of `pool` that took the held attempt `key` (its `adopt`), the attempt counted as its own with
        `done` resolved by its `done`; or None once `HELD_SECONDS` passed without one: the agent runs it itself, and
        a late adopter is told to abort. An Exit if it was aborted meanwhile."""
        early = self._early.get(key)
        if early is not None:
            if early.worker in pool.workers:
                self._take_over(early.worker, key, assignment, done)
                return early.worker
            del self._early[key]  # a worker of another pool: not its to take
        held = _Held(pool, assignment, done, asyncio.get_running_loop().create_future())
        self._held[key] = held
        try:
            return await asyncio.wait_for(held.waiting, HELD_SECONDS)
        except TimeoutError:
            log.info("pool %s: %s was held for its submitting worker, which did not take it; running it", pool.key, key)
            self._refuse(key)
            return None
        finally:
            self._held.pop(key, None)

    def _take_over(self, worker: Worker, key: str, assignment: Assignment, done: asyncio.Future[Exit]) -> None:
        """Count the attempt a worker adopted as that worker's, with what it already sent of it."""
        worker.inflight[key] = done
        self._assignments[key] = assignment
        self.agent.handed_over(key)
        early = self._early.pop(key, None)
        if early is None:
            return
        for stream, text in early.logs:
            self.agent.ship_log(assignment, stream, text.encode())
        if early.done:
            if early.reported is not None:
                self.agent.tracing.reported(key, early.reported)
            done.set_result(Exit(ExitKind.EXITED, 0))

    def _adopted(self, pool: Pool, worker: Worker, key: str) -> None:
        """A worker says it started `key`, given it by the gateway: it is the held attempt's worker, or tells one it
        comes too late (the agent runs it, or it was aborted) to abort its copy."""
        held = self._held.get(key)
        if held is not None and not held.waiting.done():
            if held.pool is pool and worker in pool.workers:
                # Counted as the worker's at once: its `done` may be the very next line.
                self._take_over(worker, key, held.assignment, held.done)
                held.waiting.set_result(worker)
            return
        if key in worker.inflight:
            return  # said twice
        if key in self._refused or key in self._assignments:
            _tell_abort(worker, key)
            return
        # Before the gateway's copy: kept for it a while (an adopt for an attempt never sent here is dropped).
        now = time.monotonic()
        for stale in [k for k, e in self._early.items() if now - e.at > 2 * HELD_SECONDS]:
            del self._early[stale]
        self._early[key] = _EarlyAdopt(worker, now)

    def _refuse(self, key: str) -> None:
        self._refused[key] = None
        if len(self._refused) > _REFUSED_KEPT:
            self._refused.popitem(last=False)

    async def abort(self, key: str) -> None:
        # A worker that adopts it from now on is told to abort its copy.
        self._refuse(key)
        held = self._held.get(key)
        if held is not None and not held.waiting.done():
            held.waiting.set_result(Exit(ExitKind.KILLED, detail="aborted while held for its worker"))
        early = self._early.pop(key, None)
        if early is not None:
            _tell_abort(early.worker, key)  # adopted before the agent got to it: that worker runs it
        for pool in self.pools.values():
            for worker in pool.workers:
                if key in worker.inflight:
                    _tell_abort(worker, key)

    async def _pool(self, assignment: Assignment, bundle: Path, prepared: Prepared) -> Pool:
        key = assignment.pool_key
        pool = self.pools.get(key)
        if pool is not None:
            return pool
        policy = assignment.reusable or ReusableSpec(min_replicas=1, max_replicas=1, concurrency=1)
        self.directory.mkdir(parents=True, exist_ok=True)
        socket = self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"
        socket.unlink(missing_ok=True)
        pool = Pool(
            key=key,
            bundle=bundle,
            socket=socket,
            min_replicas=policy.min_replicas or 1,
            max_replicas=policy.max_replicas,
            concurrency=policy.concurrency,
            idle_ttl=policy.idle_ttl,
            template=assignment,
            prepared=prepared,
        )
        self.pools[key] = pool
        if self.agent.backend.runs_on_this_host:
            # Mounted secrets live as long as the pool's workers: one directory per pool (a pod mounts its own).
            pool.prepared = prepared.with_files_in(self._secrets_dir(pool))
            if self.agent.run_as is not None and self._secrets_dir(pool).exists():
                self.agent.run_as.open_folder(self._secrets_dir(pool).parent.parent, 0o711)
                self.agent.run_as.own(self._secrets_dir(pool).parent)
        # Placeholders first: an assignment that finds the pool while its workers launch waits for them instead of
        # launching more (which took the pool past max_replicas).
        starting = [Worker(handle=Launching()) for _ in range(max(pool.min_replicas, 1))]
        pool.pending.extend(starting)
        await self._listen(pool)
        for placeholder in starting:
            await self._grow(pool, placeholder)
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever())
        return pool

    async def _listen(self, pool: Pool) -> None:
        pool.server = await asyncio.start_unix_server(lambda r, w: self._accept(pool, r, w), path=str(pool.socket))
        if self.agent.run_as is not None:
            self.agent.run_as.share_socket(pool.socket)

    async def _start_worker(self, pool: Pool) -> Worker:
        resources = pool.template.resources
        memory = resources.limit("memory")
        cpu = resources.limit("cpu")
        ident = f"pool/{pool.key}/{time.monotonic_ns()}"
        spec = LaunchSpec(
            key=ident,
            command=[
                pool.prepared.python,
                "-m",
                "flyte._runtime",
                "--pool",
                str(pool.socket),
                "--bundle",
                str(pool.bundle),
                "--concurrency",
                str(pool.concurrency),
            ],
            env={**self.agent.worker_env(pool.prepared.env), POOL_WORKER_ENV: ident},
            secret_env={**pool.prepared.secret_env, POOL_SECRET_ENV: pool.secret},
            cwd=pool.bundle,
            memory_limit_bytes=int(memory) if memory else None,
            cpu_limit=float(cpu) if cpu else None,
        )

        worker = Worker(Launching(), ident)

        def on_output(stream: str, data: bytes) -> None:
            log.debug("pool %s %s: %s", pool.key, stream, data[-500:])
            if worker.writer is None:
                worker.output.extend(data)
                del worker.output[:-_OUTPUT_KEPT]

        worker.handle = await self.agent.backend.launch(spec, on_output)
        pool.pending.append(worker)
        self._tasks.spawn(self._watch_worker(pool, worker))
        return worker

    async def _grow(self, pool: Pool, placeholder: Worker) -> None:
        try:
            await self._start_worker(pool)
        finally:
            pool.pending.remove(placeholder)

    async def _accept(self, pool: Pool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello: PoolHello | None = PoolHello.model_validate_json(await reader.readline())
        except ValidationError:
            hello = None
        worker = self._claim(pool, hello) if _authentic(hello, pool) else None
        if worker is None:
            writer.close()
            return
        worker.writer, worker.lines = writer, TickWriter(writer)
        worker.output.clear()
        pool.start_failures, pool.start_failed = 0, None
        pool.workers.append(worker)
        worker.connected.set()
        async with pool.changed:
            pool.changed.notify_all()
        while line := await reader.readline():
            try:
                message = FROM_POOL_WORKER.validate_json(line)
            except ValidationError as error:
                log.warning("pool %s: a worker sent an unreadable line: %s", pool.key, error.errors()[0]["msg"])
                continue
            if isinstance(message, PoolLog):
                # Only into the log of an attempt this worker holds: users' code must not write into another's.
                assignment = self._assignments.get(message.log) if message.log in worker.inflight else None
                if assignment is not None:
                    self.agent.ship_log(assignment, message.stream, message.text.encode())
                elif (early := self._early.get(message.log)) is not None and early.worker is worker:
                    early.logs.append((message.stream, message.text))
                continue
            if isinstance(message, PoolAdopt):
                self._adopted(pool, worker, message.adopt)
                continue
            if isinstance(message, PoolFinished):
                # Only for an attempt this worker holds (or adopted ahead of the agent's copy): a worker runs users'
                # code, and must not keep another attempt, another pool's, from being reported `running`.
                key = message.finished
                early = self._early.get(key)
                if key in worker.inflight or (early is not None and early.worker is worker):
                    self.agent.finished(key)
                continue
            if (early := self._early.get(message.done)) is not None and early.worker is worker:
                early.done, early.reported = True, message.reported
                continue
            done = worker.inflight.get(message.done)
            if done is None:
                continue  # not an attempt this worker holds
            if message.reported is not None:
                self.agent.tracing.reported(message.done, message.reported)
            if not done.done():
                done.set_result(Exit(ExitKind.EXITED, 0))

    def _claim(self, pool: Pool, hello: PoolHello) -> Worker | None:
        """The launched worker a connection is, taken from `pending`. Workers connect in any order: a connection
        belongs to the process that names itself, so that a dead process fails its own attempts and not another's."""
        worker = next((w for w in pool.pending if w.ident and w.ident == hello.worker), None)
        if worker is not None:
            pool.pending.remove(worker)
        return worker

    async def _watch_worker(self, pool: Pool, worker: Worker) -> None:
        exit = await worker.handle.wait()
        if worker in pool.pending:
            pool.pending.remove(worker)
        if worker in pool.workers:
            pool.workers.remove(worker)
        for done in worker.inflight.values():
            if not done.done():
                detail = "its pool worker died" if exit.kind is not ExitKind.OOM else exit.detail
                done.set_result(Exit(ExitKind.OOM if exit.kind is ExitKind.OOM else ExitKind.LOST, exit.code, detail))
        if worker.writer is None and not self._closing:
            self._start_failed(pool, worker, exit)
        below_floor = len(pool.workers) + len(pool.pending) < pool.min_replicas
        if not self._closing and worker.writer is not None and below_floor:
            # A worker that had served died under the pool's floor (the idle reaper never goes below it): replace
            # it now, so retried attempts and the next assignments find a warm worker. One that never said hello
            # is not replaced: it would only fail again.
            await self._start_worker(pool)
        async with pool.changed:
            pool.changed.notify_all()

    def _start_failed(self, pool: Pool, worker: Worker, exit: Exit) -> None:
        """A worker ended before its hello. The pool backs off before starting another (1 s, doubling to a minute)
        and, with no worker connected, the attempts waiting for one end with this failure as the user's error."""
        pool.start_failures += 1
        delay = min(_BACKOFF_FIRST * 2 ** (pool.start_failures - 1), _BACKOFF_CAP)
        pool.retry_at = time.monotonic() + delay
        how = f"exit code {exit.code}" if exit.kind is ExitKind.EXITED else f"{exit.kind.value} {exit.detail}".strip()
        output = bytes(worker.output).decode(errors="replace")
        pool.start_failed = Exit(
            ExitKind.START_FAILED,
            exit.code,
            f"the reusable environment's worker ended before it could take work ({how}); "
            f"{pool.start_failures} in a row, the next start in {delay:g}s",
            output=output,
        )
        log.warning("pool %s: %s; its output:\n%s", pool.key, pool.start_failed.detail, output[-2000:])
        if not pool.workers:
            pool.failures_seen += 1

    async def _slot(self, pool: Pool) -> Worker | Exit:
        """A worker with a free slot, or how the pool failed (its workers cannot start, or keep dying at start)."""
        seen = pool.failures_seen
        async with pool.changed:
            while True:
                if pool.failed is not None:
                    return pool.failed
                ready = [w for w in pool.workers if w.writer is not None and len(w.inflight) < pool.concurrency]
                if ready:
                    return min(ready, key=lambda w: len(w.inflight))
                if pool.failures_seen != seen and pool.start_failed is not None:
                    return pool.start_failed
                if not pool.pending and len(pool.workers) < max(pool.max_replicas, 1):
                    if pool.start_failed is not None and time.monotonic() < pool.retry_at and not pool.workers:
                        return pool.start_failed
                    # Launching takes a moment; the placeholder stops other waiters from launching more.
                    placeholder = Worker(handle=Launching())
                    pool.pending.append(placeholder)
                    self._tasks.spawn(self._grow(pool, placeholder))
                await pool.changed.wait()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for pool in self.pools.values():
                if pool.idle_ttl is None:
                    continue
                idle = [w for w in pool.workers if not w.inflight and now - w.idle_since > pool.idle_ttl]
                for worker in idle[: max(0, len(pool.workers) - pool.min_replicas)]:
                    await worker.handle.kill("idle")

    async def close(self) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        for pool in self.pools.values():
            for worker in [*pool.workers, *pool.pending]:
                with contextlib.suppress(Exception):
                    await worker.handle.kill("agent stopping")
            if pool.server is not None:
                pool.server.close()
            pool.socket.unlink(missing_ok=True)
            remove_files(self._secrets_dir(pool))

    def _secrets_dir(self, pool: Pool) -> Path:
        return self.agent.work_dir / "pools" / pool.socket.stem / "secrets"


def _tell_abort(worker: Worker, key: str) -> None:
    """Tell a connected worker to stop attempt `key` (cancel its task)."""
    if worker.lines is not None:
        worker.lines.write(PoolAbort(abort=key).model_dump_json().encode() + b"\n")


def _authentic(hello: PoolHello | None, pool: Pool) -> TypeGuard[PoolHello]:
    """A hello from one of the pool's workers: it knows the pool's secret."""
    if hello is None:
        return False
    return hmac.compare_digest((hello.secret or "").encode(), pool.secret.encode())


class Launching:
    """Stands in for a worker whose process is still being launched."""

    key = "launching"

    async def wait(self) -> Exit:
        return Exit(ExitKind.KILLED)

    async def kill(self, reason: str) -> None:
        return None

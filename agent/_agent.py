"""The agent: one per cluster. It dials out to the gateway (clusters sit behind firewalls), registers its
capacity, heartbeats, and runs the attempts it is assigned through its backend or its warm pools.

    connect ─► hello(cluster, still-running keys) ─► welcome(epoch) ─► heartbeat every interval
    assign ─► one launch per attempt key (a duplicate delivery starts nothing) ─► "running" event
           ─► the worker reports its result itself; the agent reports only what the worker cannot:
              it ran out of memory, timed out, crashed or vanished (system errors are retried elsewhere)
    abort  ─► kill;  stale ─► this session was fenced: kill everything, reconnect as a new session

A lost connection is retried with capped backoff; work keeps running meanwhile, and a reconnect within the lease
keeps it. Events go through an outbox (`agent._outbox`): kept until the gateway acknowledges them and sent again after
a reconnect, so an attempt that ends while the gateway or its store is away is still reported as what it was (an OOM
as `OOMError`, not as a lost cluster). Logs are shipped in batches, best effort.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import stat
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pydantic

from agent._admission import Admission
from agent._images import Venvs, image_env, pip_layers
from agent._outbox import Outbox
from agent._pools import Pools
from agent._settings import Prepared, SettingsError, prepare, remove_files
from agent._spares import Spares
from agent._tracing import AgentTracing
from agent.backends import Backend, Exit, ExitKind, Handle, LaunchSpec
from agent.backends._run_as import RunAs
from flyte import _failpoints as failpoints
from flyte import _otel
from flyte._background import Background
from flyte._client import store_request
from flyte._due_in_order import DueInOrder
from flyte._paths import private_dir, write_private
from flyte._replicas import Replicas
from flyte._retrying import RetryDelay
from flyte._runtime._bundle import extract_bundle, user_paths
from flyte._runtime._up import UP_SOCKET_ENV
from flyte._wire import (
    TO_AGENT,
    AbortMessage,
    ActionEvent,
    AgentHeartbeat,
    AgentHello,
    AgentLogs,
    AgentWelcome,
    Assignment,
    AssignMessage,
    AttemptKey,
    CloseCode,
    ClusterRecord,
    ErrorInfo,
    EventsAck,
    Phase,
    TaskSpec,
    TaskVersion,
)
from flyte.errors import NonRecoverableError, OOMError, RuntimeSystemError, RuntimeUserError, TaskTimeoutError
from policies import pool_replicas

log = logging.getLogger("flyte.agent")

_NO_SPAN = contextlib.nullcontext()
_LOG_FLUSH_SECONDS = 0.25
_TIMEOUT_GRACE = 5.0
"""The worker enforces a task's timeout itself; the backend's hard limit is a little later, as a safety net."""
RUNNING_AFTER = 0.2
"""Seconds an attempt runs before the agent reports it `running`. One that ends sooner goes from `placed` straight to
its result (whose `started_at` its worker reports): on a warm pool most attempts take milliseconds, and a `running`
record for each cost the gateway a write, a watch event and a refusal when it arrived after the result. Nor one whose
task has ended, its result on the way to the gateway (`finished`): under load the gateway may take longer than this to
take it."""
_CREDENTIAL = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY|ACCESS_KEY|PRIVATE_KEY", re.IGNORECASE)
"""Environment variables a task never inherits from its agent."""
_FINISHED_EARLY_KEPT = 10_000
"""Attempts remembered as finished before their `running` report was due (a child started by its parent's worker
ends before its agent's copy gets that far; one that never gets there is forgotten in time)."""
_STARTED_KEPT = 100_000
"""Attempt keys remembered against duplicate deliveries (an attempt is never assigned again once it ended)."""


@dataclass
class Running:
    assignment: Assignment
    handle: Handle | None = None
    demand: dict[str, float] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the attempt is aborted or moved away: ends a wait for admission too."""
    admitted: bool = False
    """It holds one of the agent's process slots (see `Admission`)."""
    stderr_tail: bytearray = field(default_factory=bytearray)
    held: bool = False
    """Given to the pool worker that submitted it as well: it runs there once that worker takes it."""

    @property
    def aborted(self) -> bool:
        return self.stop.is_set()


class Agent:
    def __init__(
        self,
        gateway: str,
        token: str,
        cluster: ClusterRecord,
        backend: Backend,
        work_dir: Path,
        spares: int = 2,
        admission: Admission | None = None,
    ) -> None:
        self.run_as: RunAs | None = getattr(backend, "run_as", None)
        """The user task processes run as (`agent.backends._run_as`): what of the work folder is opened to it."""
        self.replicas = Replicas(gateway)
        """Every gateway replica: a lost or refused connection moves on to the next (`run`)."""
        self.token = token
        self.cluster = cluster
        self.backend = backend
        self.work_dir = work_dir
        self.running: dict[str, Running] = {}
        self._starting: DueInOrder[tuple[float, Running]] = DueInOrder(RUNNING_AFTER, self._report_running)
        """Attempts started in the last `RUNNING_AFTER` seconds, with when each started: reported `running` once due."""
        self._finished_early: OrderedDict[str, None] = OrderedDict()
        """Attempts whose worker said they finished before they were due a `running` report (`finished`)."""
        self._started: OrderedDict[str, None] = OrderedDict()
        """Attempt keys started lately, finished or not: a late duplicate delivery must not start one again."""
        self.epoch = 0
        self._attempts_dir = work_dir / "reported"
        sockets = _socket_dir(work_dir, self.run_as)
        if backend.runs_on_this_host:
            self.pools = Pools(self, sockets)
        else:
            # Pods dial their pool over TCP and are a Deployment's replicas (the kubernetes package loads only here).
            from agent.backends._kube_pools import KubePools

            self.pools = KubePools(self, sockets)
        self.tracing = AgentTracing(gateway, token, cluster, self._attempts_dir)
        # Spares wait on a local socket: only a backend that runs on this machine can have them.
        self.spares = Spares(self, sockets, spares if backend.runs_on_this_host else 0)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self.outbox = Outbox()
        """Events (an attempt running, failed) until the gateway acknowledges them: see `agent._outbox`."""
        self._logs: dict[tuple[str, str, int, str], bytearray] = {}
        self._bundles: dict[str, asyncio.Future[Path]] = {}
        self.venvs = Venvs(work_dir / "venvs")
        self._shared_venvs: set[str] = set()
        self._task_specs: dict[tuple[str, str, str, str], TaskSpec] = {}
        self._tasks = Background()
        self._stopping = asyncio.Event()
        self.admission = admission or Admission.for_cluster(cluster.capacity.get("cpu"), cluster.default_request["cpu"])

    # -- the connection -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        private_dir(self.work_dir)
        private_dir(self._attempts_dir)
        if self.run_as is not None:
            self.run_as.open_folder(self.work_dir, 0o711)
            for folder, mode in (("attempts", 0o711), ("bundles", 0o711), ("assignments", 0o730)):
                self.run_as.open_folder(private_dir(self.work_dir / folder), mode)
        self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"})
        flusher = asyncio.create_task(self._flush_forever())
        await self.spares.start()
        retry = RetryDelay(0.1, 5.0)
        try:
            while not self._stopping.is_set():
                try:
                    await self._session()
                    retry.reset()
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as error:
                    log.warning(
                        "gateway %s unreachable (%s); retrying within %.1fs", self.gateway, error, retry.ceiling
                    )
                if self._stopping.is_set():
                    break
                # The session ended (the replica went away, or never answered): the next replica, if there are
                # several; the outbox and the attempts running carry over to the new session.
                self.replicas.fail_over(self.gateway)
                await retry.sleep(self._stopping)
        finally:
            flusher.cancel()
            await self.spares.close()
            await self.pools.close()
            await self.backend.close()
            await self._http.close()
            # The last spans leave before the agent does (a blocking flush, off the loop).
            await asyncio.to_thread(self.tracing.close)

    def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            self._tasks.spawn(self._ws.close())

    async def _session(self) -> None:
        assert self._http is not None
        async with self._http.ws_connect(
            f"{self.gateway}/api/v1/agents/connect", heartbeat=5.0, max_msg_size=64 * 1024 * 1024
        ) as ws:
            # Attempts that ended with their end still in the outbox are ours to report, not lost work to move.
            reporting = sorted(self.outbox.ended() - self.running.keys())
            hello = AgentHello(cluster=self._record(), running=list(self.running), reporting=reporting)
            await ws.send_str(hello.model_dump_json())
            answer = await ws.receive(timeout=10)
            if answer.type is not aiohttp.WSMsgType.TEXT:
                # The gateway closed or broke the connection before welcoming us (a restart, a store outage).
                raise ConnectionError(
                    f"the gateway ended the session before its welcome: {answer.type.name} {answer.data}"
                )
            try:
                welcome = AgentWelcome.model_validate_json(answer.data)
            except pydantic.ValidationError as error:
                raise ConnectionError(f"the gateway's welcome is not one this agent understands: {error}") from None
            self.epoch = welcome.epoch
            self.outbox.reconnected()
            self._ws = ws
            log.info("connected to %s as %s, epoch %d", self.gateway, self.cluster.name, self.epoch)
            heartbeat = asyncio.create_task(self._heartbeat_forever(welcome.heartbeat_interval))
            try:
                async for message in ws:
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        break
                    await self._on_message(message.data)
            finally:
                heartbeat.cancel()
                self._ws = None
            if ws.close_code in (CloseCode.REPLACED, CloseCode.LEASE_EXPIRED):
                # The gateway fenced this session: its work was (or will be) moved elsewhere.
                await self._drop_everything(f"session ended by the gateway ({ws.close_code})")

    def _record(self) -> ClusterRecord:
        measured = self.backend.capacity()
        if measured is not None:
            return self.cluster.model_copy(update={"capacity": measured.allocatable, "free": self._free()})
        return self.cluster.model_copy(update={"free": self._free()})

    def _free(self) -> dict[str, float]:
        measured = self.backend.capacity()
        if measured is not None:
            # The backend counts what runs (its pods' requests) itself.
            return dict(measured.free)
        free = dict(self.cluster.capacity)
        pooled: dict[str, list[Running]] = {}
        for item in self.running.values():
            if item.assignment.reusable is not None:
                pooled.setdefault(item.assignment.pool_key, []).append(item)
                continue
            for resource, amount in item.demand.items():
                free[resource] = free.get(resource, 0.0) - amount
        for items in pooled.values():
            # A pool's attempts hold its replicas' room between them, as the gateway accounts it.
            reusable = items[0].assignment.reusable
            assert reusable is not None
            replicas = pool_replicas(len(items), reusable.concurrency, reusable.max_replicas)
            for resource, amount in items[0].demand.items():
                free[resource] = free.get(resource, 0.0) - replicas * amount
        return free

    async def _heartbeat_forever(self, interval: float) -> None:
        while True:
            await self._send(AgentHeartbeat(free=self._free(), running=len(self.running), warm=self.pools.warm()))
            await asyncio.sleep(interval)

    async def _send(self, message: pydantic.BaseModel) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                await self._ws.send_str(message.model_dump_json())

    async def _on_message(self, data: str) -> None:
        try:
            message = TO_AGENT.validate_json(data)
        except pydantic.ValidationError as error:
            log.warning("ignoring a message the agent does not understand: %s", error)
            return
        if isinstance(message, AssignMessage):
            held = set(message.held)
            for assignment in message.assignments:
                self._start(assignment, held=bool(held) and str(AttemptKey.of(assignment)) in held)
        elif isinstance(message, AbortMessage):
            await self._abort(message.keys)
        elif isinstance(message, EventsAck):
            self.outbox.acked(message.incarnation, message.upto)
        else:
            await self._drop_everything(message.reason)

    # -- running attempts ----------------------------------------------------------------------------------------

    def _start(self, assignment: Assignment, held: bool = False) -> None:
        """Run `assignment`; `held`: the pool worker that submitted it was given it too (see `agent._pools`)."""
        key = str(AttemptKey.of(assignment))
        if key in self.running or key in self._started:
            log.info("assignment %s delivered twice; it already ran or runs", key)
            return
        self._started[key] = None
        if len(self._started) > _STARTED_KEPT:
            self._started.popitem(last=False)
        resources = assignment.resources
        demand = {
            # A one-off attempt counts as the cluster's default request where it declares none, as the gateway
            # counted it when it placed it here.
            resource: (resources.request(resource) or 0.0)
            or (0.0 if assignment.reusable else self.cluster.default_request[resource])
            for resource in ("cpu", "memory")
        }
        self.running[key] = Running(assignment, demand=demand, held=held)
        self._tasks.spawn(self._run(key))

    async def _run(self, key: str) -> None:
        item = self.running[key]
        try:
            with self.tracing.attempt(item.assignment) as traced:
                # From here on the assignment carries the agent's attempt span: the worker's spans hang under it.
                item.assignment = traced
                await self._attempt(key, item)
        except SettingsError as error:
            # The task asks for what cannot be had (a secret not set): the user's to fix, so no retry helps.
            self._fail(item.assignment, NonRecoverableError.info(str(error), code=error.code))
        except Exception as error:
            log.exception("running %s failed", key)
            failure = f"the agent could not run it: {error}"
            self._fail(item.assignment, RuntimeSystemError.info(failure, code="AgentError"))
        finally:
            self._starting.drop(key)
            self._finished_early.pop(key, None)
            if item.admitted:
                self.admission.release()
            self.running.pop(key, None)

    async def _attempt(self, key: str, item: Running) -> None:
        """Run one attempt to its end and report what its worker cannot (out of memory, timed out, crashed); an
        exception means the agent could not run it."""
        assignment = item.assignment
        if not self.backend.runs_on_this_host:
            prepared = await self._prepare(assignment)
            if assignment.reusable:
                # The pod fetches its bundle itself. It runs once its worker has it (`handed_over`).
                exit = await self.pools.run(assignment, Path("/"), prepared, held=item.held)
            else:
                self._running_soon(key, item)
                exit = await self._run_elsewhere(key, item, prepared)
            if not item.aborted:
                self._report_exit(assignment, exit, bytes(item.stderr_tail))
            return
        if hold := failpoints.slow_start_seconds(self.cluster.name):
            await asyncio.sleep(hold)
            if item.aborted:
                return
        fetched = self._bundles.get(assignment.bundle_digest)
        # Only a bundle not yet on this machine gets a span: looking one up costs nothing worth showing.
        with self.tracing.span("bundle fetch", assignment) if fetched is None or not fetched.done() else _NO_SPAN:
            bundle = await self._bundle(assignment.bundle_digest)
        prepared = await self._prepare(assignment)
        if item.aborted:
            return  # aborted or moved away (a drain) while its image was built: it never starts here
        if not assignment.reusable:
            # It stays `placed` until a process slot is free; an abort or a drain ends the wait.
            if not await self.admission.process(item.stop):
                return
            item.admitted = True
            self._running_soon(key, item)  # a pool's attempt: once its worker has it (`handed_over`)
        spare = None if assignment.reusable else self.spares.take(assignment, prepared)
        if assignment.reusable:
            exit = await self.pools.run(assignment, bundle, prepared, held=item.held)
        else:
            attempt_dir = self.work_dir / "attempts" / key.replace("/", "_")
            try:
                prepared = prepared.with_files_in(attempt_dir / "secrets")
                if self.run_as is not None and attempt_dir.exists():
                    self.run_as.own(attempt_dir)
                if spare is not None:
                    item.handle = spare.handle
                    exit = await self.spares.run(spare, assignment, bundle, prepared)
                    item.stderr_tail = spare.output
                else:
                    exit = await self._run_process(key, item, bundle, prepared)
            finally:
                remove_files(attempt_dir)
        if not item.aborted:
            self._report_exit(assignment, exit, bytes(item.stderr_tail), bundle)

    async def _run_process(self, key: str, item: Running, bundle: Path, prepared: Prepared) -> Exit:
        assignment = item.assignment
        # The assignment holds the attempt's token: 0600 in a 0700 directory, read and removed by the worker, and
        # removed here too once the attempt ends or fails to start.
        spec_path = private_dir(self.work_dir / "assignments") / f"{key.replace('/', '_')}.json"
        write_private(spec_path, assignment.model_dump_json().encode())
        if self.run_as is not None:
            self.run_as.open_folder(spec_path.parent, 0o730)  # private_dir just made it 0700 again
            self.run_as.own(spec_path)
        memory = assignment.resources.limit("memory")
        cpu = assignment.resources.limit("cpu")
        timeout = assignment.timeout_seconds + _TIMEOUT_GRACE if assignment.timeout_seconds else None
        spec = LaunchSpec(
            key=key,
            command=[prepared.python, "-m", "flyte._runtime", "--assignment", str(spec_path), "--bundle", str(bundle)],
            env={**self.worker_env(prepared.env), _otel.LAUNCHED_ENV: str(time.time_ns())},
            secret_env=prepared.secret_env,
            cwd=bundle,
            memory_limit_bytes=int(memory) if memory else None,
            cpu_limit=float(cpu) if cpu else None,
            timeout_seconds=timeout,
        )

        def on_output(stream: str, data: bytes) -> None:
            self.ship_log(assignment, stream, data)
            if stream == "stderr":
                item.stderr_tail.extend(data)
                del item.stderr_tail[:-4096]

        try:
            async with self.admission.starting():
                with self.tracing.span("process start", assignment):
                    item.handle = await self.backend.launch(spec, on_output)
                if item.aborted:  # the abort came while it was being launched, with no handle to kill yet
                    await item.handle.kill("aborted")
                await self.spares.until_up(item.handle)
            return await item.handle.wait()
        finally:
            spec_path.unlink(missing_ok=True)

    async def _prepare(self, assignment: Assignment) -> Prepared:
        assert self._http is not None
        task = await self.task_spec(assignment)
        prepared = await prepare(self._http, self.gateway, assignment, task)
        layers = pip_layers(task.image_spec)
        if not self.backend.runs_on_this_host or task.image_spec is None:
            return prepared  # a pod runs the image itself
        python = prepared.python
        if layers:
            if self.venvs.ready(self.venvs.digest(layers)):
                python = await self.venvs.python_for(layers)
            else:
                with self.tracing.span("build image", assignment):
                    python = await self.venvs.python_for(layers)
        if self.run_as is not None and python != prepared.python and python not in self._shared_venvs:
            venv = Path(python).parent.parent
            self.run_as.open_folder(venv.parent, 0o711)
            await asyncio.to_thread(self.run_as.share_read, venv)
            self._shared_venvs.add(python)
        env = {**image_env(task.image_spec), **prepared.env}
        return dataclasses.replace(prepared, env=env, python=python)

    async def _run_elsewhere(self, key: str, item: Running, prepared: Prepared) -> Exit:
        """An attempt on a backend that does not share this machine (a pod): the assignment, token included, travels
        as secret environment, and the worker fetches its bundle from the gateway."""
        assignment = item.assignment
        task = await self.task_spec(assignment)
        env = {
            **prepared.env,
            "FLYTE_ENDPOINT": self.worker_endpoints(),
            "FLYTE_CLUSTER": self.cluster.name,
            "FLYTE_RUN": assignment.run,
            "FLYTE_ACTION": assignment.action,
            "FLYTE_ATTEMPT": str(assignment.attempt),
            "PYTHONUNBUFFERED": "1",
            _otel.LAUNCHED_ENV: str(time.time_ns()),
        }
        spec = LaunchSpec(
            key=key,
            command=["python", "-m", "flyte._runtime"],
            env=env,
            cwd=Path("/"),
            timeout_seconds=assignment.timeout_seconds + _TIMEOUT_GRACE if assignment.timeout_seconds else None,
            labels={"flyte.org/run": assignment.run, "flyte.org/action": assignment.action},
            secret_env={**prepared.secret_env, "FLYTE_ASSIGNMENT": assignment.model_dump_json()},
            secret_files=prepared.secret_files,
            image=task.image,
            resources=assignment.resources,
            traceparent=getattr(assignment, "traceparent", None),
        )

        def on_output(stream: str, data: bytes) -> None:
            self.ship_log(assignment, stream, data)
            item.stderr_tail.extend(data)
            del item.stderr_tail[:-4096]

        with self.tracing.span("pod start", assignment):
            item.handle = await self.backend.launch(spec, on_output)
        return await item.handle.wait()

    async def task_spec(self, assignment: Assignment) -> TaskSpec:
        """The deployed task's spec (image, env_vars), fetched once per task version: versions never change."""
        cache_key = (assignment.project, assignment.domain, assignment.task, assignment.version)
        spec = self._task_specs.get(cache_key)
        if spec is None:
            assert self._http is not None
            query = {"project": assignment.project, "domain": assignment.domain, "version": assignment.version}
            async with self._http.get(f"{self.gateway}/api/v1/tasks/{assignment.task}", params=query) as response:
                response.raise_for_status()
                spec = self._task_specs[cache_key] = TaskVersion.model_validate_json(await response.read()).spec
        return spec

    def worker_env(self, task_env: dict[str, str] | None = None) -> dict[str, str]:
        """The explicit environment of every task process: the agent's own less anything that names a credential
        (its token first: `flyte agent serve` already removed FLYTE_AGENT_TOKEN; this holds for any embedder), the
        task's variables over it, and the worker's FLYTE_* over both: a task cannot point its worker elsewhere."""
        env = {k: v for k, v in os.environ.items() if not _CREDENTIAL.search(k)}
        env.update(task_env or {})
        env.update(self.fixed_worker_env())
        return env

    @property
    def gateway(self) -> str:
        """The replica this agent is connected to (or trying): its own calls go there."""
        return self.replicas.current

    def worker_endpoints(self) -> str:
        """FLYTE_ENDPOINT for a worker: every replica, the one this agent is connected to first."""
        return ",".join(self.replicas.in_order())

    def fixed_worker_env(self) -> dict[str, str]:
        """What every worker is told about where it runs; a task's own variables never replace these."""
        return {
            "FLYTE_ENDPOINT": self.worker_endpoints(),
            "PYTHONUNBUFFERED": "1",
            "FLYTE_CLUSTER": self.cluster.name,
            "FLYTE_REGION": self.cluster.region,
            "FLYTE_CLOUD": self.cluster.cloud,
            _otel.REPORTED_DIR: str(self._attempts_dir),
            UP_SOCKET_ENV: str(self.spares.socket),
        }

    def _report_exit(self, assignment: Assignment, exit: Exit, stderr: bytes, bundle: Path | None = None) -> None:
        tail = stderr.decode(errors="replace")[-2000:]
        if bundle is not None:
            # A crash's stderr names the bundle's copies of the user's files: name the user's own.
            tail = user_paths(tail, bundle, assignment.source_root) or ""
        if exit.kind is ExitKind.EXITED and exit.code == 0:
            return
        if exit.kind is ExitKind.OOM:
            self._fail(assignment, OOMError.info(exit.detail or "the task ran out of memory"))
        elif exit.kind is ExitKind.UNSTARTABLE:
            # Its image or its configuration is wrong: every retry would fail the same way.
            self._fail(assignment, NonRecoverableError.info(exit.detail, code="ContainerNotStarted"))
        elif exit.kind is ExitKind.START_FAILED:
            # Its own code stops the worker from starting: a user error, retried only by the task's retries.
            failure = RuntimeUserError.info(
                exit.detail, code="WorkerStartFailed", traceback=exit.output or tail or None
            )
            self._fail(assignment, failure)
        elif exit.kind is ExitKind.TIMEOUT:
            self._fail(assignment, TaskTimeoutError.info("the task ran past its timeout"))
        else:
            what = f"exit code {exit.code}" if exit.kind is ExitKind.EXITED else exit.kind.value
            message = f"the worker ended without reporting ({what}) {exit.detail}".strip()
            self._fail(assignment, RuntimeSystemError.info(message, code="WorkerLost", traceback=tail or None))

    def _running_soon(self, key: str, item: Running) -> None:
        """The attempt starts now: it is reported `running` (as of now) if it is still running `RUNNING_AFTER` later."""
        if key in self._finished_early:
            del self._finished_early[key]  # its worker said it finished before this clock started
            return
        self._starting.add(key, (time.time(), item))

    def handed_over(self, key: str) -> None:
        """A pool's attempt reached its worker (sent to it, or the worker took it from the gateway): it is reported
        `running` if still running `RUNNING_AFTER` later. Not before: waiting for a slot, or for a new worker to
        start, it is still `placed`, as a one-off attempt is while it waits for a process slot."""
        item = self.running.get(key)
        if item is not None:
            self._running_soon(key, item)

    def stopped(self, key: str) -> bool:
        item = self.running.get(key)
        return item is not None and item.aborted

    def finished(self, key: str) -> None:
        """The attempt's worker says its task ended and it is reporting the result (`PoolFinished`): no `running`
        report is due for it any more. It still holds its slot until its worker says the gateway has the result.

        A child the gateway gave its parent's worker may end there before this agent has its own copy of it going:
        its key is kept, so that copy is not reported `running` either."""
        if not self._starting.drop(key):
            self._finished_early[key] = None
            if len(self._finished_early) > _FINISHED_EARLY_KEPT:
                self._finished_early.popitem(last=False)

    def _report_running(self, key: str, started: tuple[float, Running]) -> None:
        """Report `running` an attempt started `RUNNING_AFTER` ago and still running, as of when it started."""
        at, item = started
        if not item.aborted:
            self._event(item.assignment, Phase.RUNNING, at=at)

    def _fail(self, assignment: Assignment, error: ErrorInfo) -> None:
        """Report the attempt failed with `error` (built from its `flyte.errors` class), naming this cluster."""
        self._event(assignment, Phase.FAILED, error.model_copy(update={"worker": self.cluster.name}))

    def _event(
        self, assignment: Assignment, phase: Phase, error: ErrorInfo | None = None, at: float | None = None
    ) -> None:
        cluster, epoch = self.cluster.name, assignment.epoch
        event = ActionEvent(phase=phase, attempt=assignment.attempt, cluster=cluster, epoch=epoch, error=error, at=at)
        self.outbox.add(assignment.run, assignment.action, event)

    async def _abort(self, keys: list[str]) -> None:
        items = {key: item for key in keys if (item := self.running.get(key)) is not None}
        # Every one is stopped before any is killed: a process slot one of them frees must not admit another.
        for item in items.values():
            item.stop.set()
        await asyncio.gather(*(self._kill(key, item) for key, item in items.items()))

    async def _kill(self, key: str, item: Running) -> None:
        if item.handle is not None:
            await item.handle.kill("aborted")
        await self.pools.abort(key)

    async def _drop_everything(self, reason: str) -> None:
        log.warning("dropping %d running attempts: %s", len(self.running), reason)
        await self._abort(list(self.running))

    # -- bundles and logs -----------------------------------------------------------------------------------------

    async def _bundle(self, digest: str) -> Path:
        """The code bundle extracted once per digest and shared by every attempt that uses it."""
        future = self._bundles.get(digest)
        if future is None:
            future = self._bundles[digest] = asyncio.ensure_future(self._fetch_bundle(digest))
        try:
            return await asyncio.shield(future)
        except Exception:
            self._bundles.pop(digest, None)
            raise

    async def _fetch_bundle(self, digest: str) -> Path:
        target = self.work_dir / "bundles" / digest
        if (target / ".complete").exists():
            return await self._share_bundle(target)
        assert self._http is not None
        # Straight from the gateway's object store when it has one (a presigned URL), else through the gateway.
        async with self._http.get(f"{self.gateway}/api/v1/blobs/{digest}/url") as response:
            url = str((await response.json())["url"]) if response.status == 200 else None
        if url is not None:
            data = await store_request("GET", url)
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"the object store returned other content than the bundle {digest}")
        else:
            async with self._http.get(f"{self.gateway}/api/v1/blobs/{digest}") as response:
                response.raise_for_status()
                data = await response.read()
        await asyncio.to_thread(extract_bundle, data, target)
        return await self._share_bundle(target)

    async def _share_bundle(self, bundle: Path) -> Path:
        if self.run_as is not None:
            self.run_as.open_folder(bundle.parent, 0o711)
            await asyncio.to_thread(self.run_as.share_read, bundle)
        return bundle

    def ship_log(self, assignment: Assignment, stream: str, data: bytes) -> None:
        key = (assignment.run, assignment.action, assignment.attempt, stream)
        self._logs.setdefault(key, bytearray()).extend(data)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(_LOG_FLUSH_SECONDS)
            if self._ws is None:
                continue
            for batch in self.outbox.due():
                await self._send(batch)
            logs, self._logs = self._logs, {}
            for (run, action, attempt, stream), data in logs.items():
                text = data.decode(errors="replace")
                with self.tracing.log_upload(run, action, attempt, len(data)):
                    await self._send(
                        AgentLogs(
                            run=run,
                            action=action,
                            attempt=attempt,
                            stream=stream,  # type: ignore[arg-type]
                            text=text[-1_000_000:],
                        )
                    )


def _socket_dir(work_dir: Path, run_as: RunAs | None = None) -> Path:
    """Where the agent's Unix sockets go: a short path, since socket paths are limited to about 100 bytes.

    It is in the shared temporary directory, where any local user could make it first and put their own sockets in
    it (a spare worker would then load their code): the agent makes it itself, 0700, and refuses one it finds that
    is not a directory owned by it that only it can enter.
    """
    digest = hashlib.sha256(str(work_dir.resolve()).encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"flyte-agent-{digest}"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    check_private_dir(directory, run_as.gid if run_as else None)
    if run_as is not None:
        # Spares and pool workers, running as that user, dial their sockets here; they may not add any.
        run_as.open_folder(directory, 0o710)
    return directory


class UnsafeDirectory(RuntimeError):
    """A directory the agent would trust is someone else's, or open to others."""


def check_private_dir(directory: Path, group: int | None = None) -> None:
    """Refuse a directory that is a symlink, is not ours, or that others may enter (`group`, the run-as user's, may
    pass through it, not write to it)."""
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{directory} is not a directory (a symlink or a file put there by someone else)")
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{directory} belongs to uid {info.st_uid}, not to this agent (uid {os.getuid()})")
    open_to_group = group is not None and info.st_gid == group and not info.st_mode & 0o020
    if info.st_mode & (0o007 if open_to_group else 0o077):
        mode = stat.S_IMODE(info.st_mode)
        raise UnsafeDirectory(f"{directory} has mode {mode:o}; others could replace the agent's sockets in it")

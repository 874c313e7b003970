"""The process backend: each attempt runs as a local subprocess, in its own session and, where possible, cgroup.

Launch. The child is started with `start_new_session=True`, so it leads a process group and one `killpg` reaches
everything it forks. When cgroups are usable, the child is first a tiny launcher, `/bin/sh -c 'read _ || exit 125;
exec "$@"'`, whose stdin is the read end of a "go" pipe: the parent creates the attempt's cgroup and writes the
launcher's pid into it (in a thread: a cgroup migration occasionally waits for an RCU grace period, ~10 ms, which
must not stall the event loop) while the shell starts, then writes one byte, and the shell execs the real command
with stdin from /dev/null. So no instruction of the command runs outside its limits, and the cost is a dash start
(about 1 ms) overlapped with the cgroup writes. If the agent dies before the go byte, the launcher reads EOF and
exits without running anything. Without cgroups the command is exec'd directly and no limit is enforced (the cgroup
module has logged why, once).

Output. stdout and stderr are pipes the event loop reads as soon as they are readable (read-pipe protocols, so
there is no buffer a reader could fall behind on); each chunk goes to `on_output` in order per stream. A sink that
raises is logged once and draining goes on: the child must never block on a full pipe because of its consumer.

Ending. Timeout and `kill` send SIGTERM to the process group and to every task in the cgroup (which also catches
descendants that left the group with setsid), then SIGKILL after `kill_grace_seconds`. When the main process has
ended, whatever it left behind is SIGKILLed too: an attempt owns nothing after it exits. Then the pipes are drained
(bounded: a setsid'd descendant outside any cgroup could hold them open) and the cgroup is removed.

How it ended, in order: a stop we requested (TIMEOUT or KILLED, whatever the exit code); an OOM kill recorded by
the cgroup with a non-zero exit (OOM, naming the limit); a signal from elsewhere (KILLED); else EXITED with the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

from ._cgroups import Cgroup, Cgroups, OomReport, shared
from ._protocol import Capacity, Exit, ExitKind, LaunchSpec, OutputSink
from ._run_as import RunAs

log = logging.getLogger("flyte.agent.process")

_LAUNCHER = 'read _ || exit 125; exec "$@" </dev/null'
_SETPRIV = shutil.which("setpriv")
_DRAIN_SECONDS = 1.0
"""How long output may still arrive after the process and its leftovers are gone."""


class _Forward(asyncio.Protocol):
    def __init__(self, key: str, stream: str, sink: OutputSink, closed: asyncio.Future[None]) -> None:
        self._key = key
        self._stream = stream
        self._sink = sink
        self._closed = closed
        self._complained = False

    def data_received(self, data: bytes) -> None:
        try:
            self._sink(self._stream, data)
        except Exception:
            if not self._complained:
                self._complained = True
                log.exception("the output sink of %s failed; its later failures are not logged", self._key)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n % 2**20 == 0 else f"{n / 2**20:.1f} MiB"


def _oom_detail(report: OomReport) -> str:
    limit = f"the memory limit of {_mib(report.limit_bytes)}" if report.limit_bytes else "the memory limit"
    kills = f"{report.oom_kills} OOM kill(s)" if report.oom_kills is not None else f"{report.failcnt} failed charges"
    return f"killed by {limit} ({kills} in its cgroup, peak usage {_mib(report.peak_bytes)})"


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _resolve(spec: LaunchSpec) -> str:
    """The launcher's `exec` would fail only after the fork; find the program first so `launch` raises as exec does."""
    program = spec.command[0]
    if "/" in program:
        path = os.path.join(spec.cwd, program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return program
        found = None
    else:
        found = shutil.which(program, path=spec.env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "no such executable", program)
    return found


class ProcessHandle:
    """One attempt's process; `wait` answers how it ended, `kill` stops it and everything it started."""

    def __init__(self, spec: LaunchSpec, backend: ProcessBackend) -> None:
        self.key = spec.key
        self.spec = spec
        self.pid: int | None = None
        self._backend = backend
        self._proc: asyncio.subprocess.Process | None = None
        self._cgroup: Cgroup | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._drained: list[asyncio.Future[None]] = []
        self._stop: tuple[ExitKind, str] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._supervisor: asyncio.Task[Exit] | None = None

    @property
    def cgroup_dirs(self) -> list[str]:
        """The attempt's cgroup directories while it runs (empty without cgroups and once they are removed)."""
        return sorted(str(d) for d in self._cgroup.dirs.values()) if self._cgroup else []

    def limit_memory(self, limit_bytes: int) -> bool:
        """Limit a running process's memory from now on; False when this backend cannot (no cgroups)."""
        if self._cgroup is None or "memory" not in self._cgroup.dirs:
            return False
        self._cgroup.limit_memory(limit_bytes)
        return True

    async def wait(self) -> Exit:
        if self._supervisor is None:
            raise RuntimeError(f"attempt {self.key!r} was never started")
        return await asyncio.shield(self._supervisor)

    async def kill(self, reason: str) -> None:
        self._request_stop(ExitKind.KILLED, reason or "killed on request")
        if self._supervisor is not None:
            await self.wait()

    async def _start(self, on_output: OutputSink, cgroups: Cgroups | None, run_as: RunAs | None = None) -> None:
        spec = self.spec
        loop = asyncio.get_running_loop()
        use_cgroup = cgroups is not None and cgroups.available()
        argv: Sequence[str] = spec.command
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        go_r, go_w = os.pipe() if use_cgroup else (subprocess.DEVNULL, -1)
        unowned = [out_r, err_r, go_w]
        try:
            if use_cgroup:
                argv = ["/bin/sh", "-c", _LAUNCHER, "flyte-launcher", _resolve(spec), *spec.command[1:]]
            elif _SETPRIV is not None:
                argv = [_resolve(spec), *spec.command[1:]]
            if _SETPRIV is not None:
                # Die with the agent: a SIGKILLed agent must not leave attempts running that nobody watches.
                argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=go_r,
                stdout=out_w,
                stderr=err_w,
                cwd=spec.cwd,
                env={**spec.env, **spec.secret_env},
                start_new_session=True,
                # The launcher itself already runs as the user: nothing of the task ever runs as root.
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        except BaseException:
            for fd in unowned:
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, go_r):
                if fd >= 0:
                    os.close(fd)
        self.pid = self._proc.pid
        try:
            for stream in ("stdout", "stderr"):
                fd = unowned.pop(0)
                pipe = os.fdopen(fd, "rb", buffering=0)  # the transport owns and closes it
                closed: asyncio.Future[None] = loop.create_future()
                try:
                    transport, _ = await loop.connect_read_pipe(
                        functools.partial(_Forward, spec.key, stream, on_output, closed), pipe
                    )
                except BaseException:
                    pipe.close()
                    raise
                self._transports.append(transport)
                self._drained.append(closed)
            if use_cgroup:
                assert cgroups is not None
                await asyncio.to_thread(self._place, cgroups)
                if self._stop is None:  # else closing go_w unwritten makes the launcher exit without exec
                    os.write(go_w, b"\n")
        except BaseException:
            self._signal(signal.SIGKILL)
            for fd in unowned:
                if fd >= 0:
                    os.close(fd)
            unowned.clear()
            await self._proc.wait()
            await self._cleanup()
            raise
        finally:
            if go_w >= 0 and go_w in unowned:
                os.close(go_w)
        if spec.timeout_seconds is not None:
            detail = f"ran past its timeout of {spec.timeout_seconds:g}s"
            self._timer = loop.call_later(spec.timeout_seconds, self._request_stop, ExitKind.TIMEOUT, detail)
        self._supervisor = asyncio.create_task(self._supervise(), name=f"process {spec.key}")
        if self._stop is not None:  # `kill` or `close` came while it was starting
            self._stopper = asyncio.create_task(self._terminate())

    def _place(self, cgroups: Cgroups) -> None:
        assert self.pid is not None
        self._cgroup = cgroups.create(
            self.key,
            memory_limit_bytes=self.spec.memory_limit_bytes,
            cpu_limit=self.spec.cpu_limit,
            pids_max=self._backend.pids_max,
        )
        self._cgroup.add(self.pid)

    def _request_stop(self, kind: ExitKind, detail: str) -> None:
        if self._stop is not None or (self._proc is not None and self._proc.returncode is not None):
            return
        self._stop = (kind, detail)
        if self._supervisor is not None:  # else `_start` terminates it once it is fully started
            self._stopper = asyncio.create_task(self._terminate())

    async def _terminate(self) -> None:
        assert self._proc is not None
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._proc.wait(), self._backend.kill_grace_seconds)
        except TimeoutError:
            self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.pid is None:
            return
        # After the leader is reaped its pid stays reserved while any group member lives, so this cannot hit a
        # stranger while there is anything of ours left to hit.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        if self._cgroup is not None:
            self._cgroup.signal_all(sig)

    async def _supervise(self) -> Exit:
        assert self._proc is not None
        try:
            returncode = await self._proc.wait()
            if self._timer is not None:
                self._timer.cancel()
            return self._classify(returncode)
        finally:
            await self._cleanup()

    def _classify(self, returncode: int) -> Exit:
        if self._stop is not None:
            kind, detail = self._stop
            return Exit(kind, returncode, detail)
        if self._cgroup is not None and returncode != 0:
            report = self._cgroup.oom()
            if report.oom_killed:
                return Exit(ExitKind.OOM, returncode, _oom_detail(report))
        if returncode < 0:
            return Exit(ExitKind.KILLED, returncode, f"killed by {_signal_name(returncode)}")
        return Exit(ExitKind.EXITED, returncode)

    async def _cleanup(self) -> None:
        try:
            self._signal(signal.SIGKILL)
            if self._stopper is not None:
                self._stopper.cancel()
            if self._drained:
                await asyncio.wait(self._drained, timeout=_DRAIN_SECONDS)
            for transport in self._transports:
                transport.close()
            if self._cgroup is not None and not await self._cgroup.remove():
                self._backend._leftover_groups.append(self._cgroup)
        finally:
            self._backend._forget(self)


class ProcessBackend:
    """Runs attempts as local processes with cgroup v1 limits where the machine allows them."""

    name = "process"
    runs_on_this_host = True

    def __init__(
        self,
        *,
        kill_grace_seconds: float = 5.0,
        pids_max: int | None = None,
        use_cgroups: bool = True,
        cgroups: Cgroups | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        self.kill_grace_seconds = kill_grace_seconds
        self.run_as = run_as
        """Start every process as this user, without supplementary groups (None: as the agent's own user)."""
        self.pids_max = pids_max
        self._cgroups = (cgroups or shared()) if use_cgroups else None
        self._handles: dict[str, ProcessHandle] = {}
        self._leftover_groups: list[Cgroup] = []
        self._closed = False

    @property
    def enforces_limits(self) -> bool:
        return self._cgroups is not None and self._cgroups.available()

    def running(self) -> list[str]:
        return list(self._handles)

    def capacity(self) -> Capacity | None:
        """None: what this machine offers is what the agent was told to offer."""
        return None

    async def launch(self, spec: LaunchSpec, on_output: OutputSink) -> ProcessHandle:
        if self._closed:
            raise RuntimeError("the process backend is closed")
        if spec.key in self._handles:
            raise ValueError(f"attempt {spec.key!r} is already running")
        if not spec.command:
            raise ValueError(f"attempt {spec.key!r} has an empty command")
        # Registered before the first await, so a concurrent duplicate is refused rather than started.
        handle = self._handles[spec.key] = ProcessHandle(spec, self)
        try:
            await handle._start(on_output, self._cgroups, self.run_as)
        except BaseException:
            self._forget(handle)
            raise
        return handle

    def _forget(self, handle: ProcessHandle) -> None:
        if self._handles.get(handle.key) is handle:
            del self._handles[handle.key]

    async def close(self) -> None:
        self._closed = True
        handles = list(self._handles.values())
        await asyncio.gather(*(h.kill("the agent's process backend is closing") for h in handles))
        for group in self._leftover_groups:
            await group.remove()
        self._leftover_groups.clear()
        if self._cgroups is not None:
            self._cgroups.close()

"""Admission: how many one-off worker processes the agent runs at once, and how many it starts at once.

The gateway reserves each action's request (or the cluster's default request) against the cluster's capacity, so
it never places more than fits. The agent still bounds what it runs itself, because what fits by requests is not
what a machine can run: a thousand tasks asking for 1m CPU each fit two cores, and a thousand Python interpreters
starting together put the load average past a hundred.

    assignment ─► process slot (at most `max_processes` one-off attempts live; FIFO) ─► "running"
               ─► start slot (at most `max_starting` interpreters starting; held until the worker says it is up,
                  or its process ended) ─► the task runs ─► its process ends ─► the process slot is free

An attempt waiting for a process slot is still `placed` at the gateway (it has not started), and an abort or a
drain ends the wait at once. Warm-pool actions are not admitted here: they run in their pool's processes, which
the pool bounds itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import AsyncIterator

_PROCESSES_PER_CORE = 4
"""Live one-off workers per core by default: short tasks spend most of their life waiting on the network."""
_STARTS_PER_CORE = 2
"""Interpreters starting at once per core by default: a start is CPU-bound (imports) for a few hundred ms."""


def default_max_processes(cores: int | None = None) -> int:
    return _PROCESSES_PER_CORE * (cores or os.cpu_count() or 1)


def default_max_starting(cores: int | None = None) -> int:
    return _STARTS_PER_CORE * (cores or os.cpu_count() or 1)


def process_limit(max_processes: int, capacity_cpu: float | None, default_cpu: float) -> int:
    """The one-off processes this agent admits: `max_processes`, and no more than its CPU holds at the default
    request (a process that declares less still costs an interpreter)."""
    if capacity_cpu is None or capacity_cpu <= 0 or default_cpu <= 0:
        return max_processes
    return max(1, min(max_processes, math.floor(capacity_cpu / default_cpu + 1e-9)))


class Admission:
    """Two FIFO gates: live one-off processes, and processes starting."""

    def __init__(self, max_processes: int, max_starting: int) -> None:
        if max_processes < 1 or max_starting < 1:
            raise ValueError(f"admission limits must be at least 1, not {max_processes} and {max_starting}")
        self.max_processes = max_processes
        self.max_starting = max_starting
        self._processes = asyncio.Semaphore(max_processes)
        self._starting = asyncio.Semaphore(max_starting)
        self.waiting = 0
        """Attempts waiting for a process slot."""
        self.live = 0
        """One-off attempts admitted and not yet ended."""

    @classmethod
    def for_cluster(
        cls,
        capacity_cpu: float | None,
        default_cpu: float,
        max_processes: int | None = None,
        max_starting: int | None = None,
    ) -> Admission:
        """The limits `flyte agent serve` applies: its flags where given, else per core of this machine."""
        processes = process_limit(max_processes or default_max_processes(), capacity_cpu, default_cpu)
        return cls(processes, max_starting or default_max_starting())

    async def process(self, aborted: asyncio.Event) -> bool:
        """Wait for a process slot; False when `aborted` was set first (nothing is held then). The caller gives
        the slot back with `release`."""
        admitted = await _acquire(self._processes, aborted, self)
        self.live += admitted
        return admitted

    def release(self) -> None:
        self.live -= 1
        self._processes.release()

    @contextlib.asynccontextmanager
    async def starting(self) -> AsyncIterator[None]:
        """Hold a start slot while a worker process starts."""
        async with self._starting:
            yield


async def _acquire(gate: asyncio.Semaphore, aborted: asyncio.Event, admission: Admission) -> bool:
    if aborted.is_set():
        return False
    if not gate.locked():
        await gate.acquire()  # free now: returns without yielding to anyone queued (there is no one)
        return True
    admission.waiting += 1
    acquiring = asyncio.ensure_future(gate.acquire())
    stopped = asyncio.ensure_future(aborted.wait())
    try:
        await asyncio.wait((acquiring, stopped), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        # The waiter itself was cancelled (the agent stops): a slot granted meanwhile goes back.
        acquiring.cancel()
        if acquiring.done() and not acquiring.cancelled():
            gate.release()
        raise
    finally:
        admission.waiting -= 1
        stopped.cancel()
    if not acquiring.done():
        acquiring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquiring
    if acquiring.cancelled():
        return False
    if aborted.is_set():
        gate.release()  # granted as the abort came: pass it on
        return False
    return True

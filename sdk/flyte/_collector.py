"""The cycle collector's settings for our processes that handle actions: the gateway, an agent, the workers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

GC_THRESHOLDS = (20_000, 50, 100)
"""Generation thresholds of the gateway and the agents, which run only our code (Python's defaults: 700, 10, 10)."""
WORKER_GC_THRESHOLDS = (20_000, 10, 10)
"""Generation thresholds of the workers, which run users' code: the oldest generation is still collected every two
million allocations or so, not every hundred million, so users' garbage in cycles (a caught exception's traceback,
whose frames hold a task's large locals) does not wait long. In a 10,000-way fan-out the pool worker then spends
0.06 ms per child collecting (0.2 at Python's defaults, 0.02 with `GC_THRESHOLDS`)."""
IDLE_COLLECT_SECONDS = 0.5
"""How long a pool worker has had no attempt running before it collects in full (`WhenIdle`)."""


def collect_less_often(thresholds: tuple[int, int, int] = GC_THRESHOLDS, collect_first: bool = True) -> None:
    """Collect cycles less often, and never again look at what exists now (call it once the process has imported
    what it runs: the gateway its app, a pool worker its environment's bundle).

    Each of these processes allocates a few hundred objects per action it handles and holds a record per action in
    flight, so at Python's defaults the collector ran every few actions and its older generations grew with the work
    in flight. The gateway's CPU per action at 100,000 children was 1.7x that at 1,000 (1.3x with these). A pool
    worker whose parent had 10,000 children in flight spent 2.2 s collecting during the fan-out (0.2 ms per child,
    a quarter of its CPU), and its agent 0.7 s; with `GC_THRESHOLDS`, 0.23 and 0.18 s (`docs/performance.md`, tenth
    pass).
    Reference counting still frees everything that is not in a cycle at once.

    `collect_first=False` freezes without collecting first (a one-off worker, whose start-up would take the ~40 ms of
    a first collection; what garbage its imports left is kept until it exits, moments later)."""
    if collect_first:
        gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


class WhenIdle:
    """A full collection once a pool worker has run nothing for `IDLE_COLLECT_SECONDS`.

    A pool worker runs users' code for as long as it lives: garbage in cycles that outlived a collection or two (an
    exception caught with its traceback, whose frames hold a task's large locals) would otherwise wait for the next
    collection of the oldest generation, millions of allocations away. Collected between bursts, off any attempt's
    path."""

    def __init__(self, running: Callable[[], bool]):
        self._running = running
        self._timer: asyncio.TimerHandle | None = None

    def now_idle(self) -> None:
        """The last running attempt ended: collect unless another starts within `IDLE_COLLECT_SECONDS`."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(IDLE_COLLECT_SECONDS, self._collect)

    def _collect(self) -> None:
        self._timer = None
        if not self._running():
            gc.collect()

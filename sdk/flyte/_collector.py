"""The cycle collector's settings for our processes that handle actions: the gateway, an agent, the workers."""

from __future__ import annotations

import gc

GC_THRESHOLDS = (20_000, 50, 100)
"""Generation thresholds (Python's defaults: 700, 10, 10)."""


def collect_less_often(collect_first: bool = True) -> None:
    """Collect cycles less often, and never again look at what exists now (call it once the process has imported
    what it runs: the gateway its app, a pool worker its environment's bundle).

    Each of these processes allocates a few hundred objects per action it handles and holds a record per action in
    flight, so at Python's defaults the collector ran every few actions and its older generations grew with the work
    in flight. The gateway's CPU per action at 100,000 children was 1.7x that at 1,000 (1.3x with these). A pool
    worker whose parent had 10,000 children in flight spent 2.2 s collecting during the fan-out (0.2 ms per child,
    a quarter of its CPU), and its agent 0.7 s; with these, 0.23 and 0.18 s (`docs/performance.md`, tenth pass).
    Reference counting still frees everything that is not in a cycle at once.

    `collect_first=False` freezes without collecting first (a one-off worker, whose start-up would take the ~40 ms of
    a first collection; what garbage its imports left is kept until it exits, moments later)."""
    if collect_first:
        gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

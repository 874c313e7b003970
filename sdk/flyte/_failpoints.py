"""Failpoints: faults that a test asks a server process to inject, all named here and all off unless a test sets them.

A test turns one on through the environment of the gateway or agent it starts (the fault matrix, the placement rig);
production code only asks the functions below, which answer "off" when the variable is unset. Read once, at import:
a failpoint is a property of the process, not something to flip while it runs.
"""

from __future__ import annotations

import os

__all__ = [
    "DROP_HERE",
    "DUPLICATE_ASSIGN",
    "SLOW_POOL_START",
    "SLOW_REPORT",
    "SLOW_START",
    "drops_children_given_here",
    "duplicate_assign_after",
    "slow_pool_start_seconds",
    "slow_report_seconds",
    "slow_start_seconds",
]

DUPLICATE_ASSIGN = "FLYTE_FAILPOINT_DUPLICATE_ASSIGN"
"""Gateway: `SECONDS` sends every assignment to its agent again this many seconds later (a duplicated delivery)."""

SLOW_START = "FLYTE_FAILPOINT_SLOW_START"
"""Agent: `CLUSTER=SECONDS` holds every attempt on that cluster this long before it starts (a slow code download)."""

SLOW_REPORT = "FLYTE_FAILPOINT_SLOW_REPORT"
"""Worker (set on its agent, whose workers inherit it): `SECONDS` holds each attempt's result this long once its task
has ended, before it is reported (a gateway slow to take results)."""

SLOW_POOL_START = "FLYTE_FAILPOINT_SLOW_POOL_START"
"""Pool worker (set on its agent, whose workers inherit it): `SECONDS` it waits before it says hello to its agent (a
worker slow to start: heavy imports, a cold image)."""

DROP_HERE = "FLYTE_FAILPOINT_DROP_HERE"
"""Pool worker (set on its agent, whose workers inherit it): `1` drops the children the gateway gives it directly, as
if the answer was lost on the way (their agent runs its held copies itself)."""

_duplicate_assign = os.environ.get(DUPLICATE_ASSIGN)
_drop_here = os.environ.get(DROP_HERE) == "1"
_slow_pool_start = float(os.environ.get(SLOW_POOL_START) or 0.0)
_slow_report = float(os.environ.get(SLOW_REPORT) or 0.0)
_slow_cluster, _, _slow_seconds = os.environ.get(SLOW_START, "").partition("=")


def duplicate_assign_after() -> float | None:
    """Seconds after which an assignment is sent again, or None (the failpoint is off)."""
    return None if _duplicate_assign is None else float(_duplicate_assign)


def slow_start_seconds(cluster: str) -> float:
    """How long the agent of `cluster` holds each attempt before starting it (0: the failpoint is off for it)."""
    return float(_slow_seconds) if _slow_cluster and _slow_cluster == cluster else 0.0


def drops_children_given_here() -> bool:
    """Whether a pool worker drops the children given to it in answers to its submissions (the failpoint is on)."""
    return _drop_here


def slow_report_seconds() -> float:
    """How long a worker holds each result before reporting it (0: the failpoint is off)."""
    return _slow_report


def slow_pool_start_seconds() -> float:
    """How long a pool worker waits before it says hello to its agent (0: the failpoint is off)."""
    return _slow_pool_start

"""Why a queued action waits, said plainly when the wait may never end, and the run's limit on waiting.

An action that fits a cluster only while its own ancestors hold no room there (a 0.5-CPU driver on a 2-CPU
cluster waiting for a 2-CPU child that fits only there) waits for its ancestors to end, and they wait for it: it
may never start, and its waiting reason says so. A run's `max_wait_seconds`, or a task's
`Timeout(max_queued_time=)`, ends any such wait (and every other) with an error that names the reason it waited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flyte._wire import ErrorInfo
from flyte.errors import NonRecoverableError
from policies import ClusterSnapshot, Decision, Demand, amount_text

_HOPEFUL = ("busy", "unhealthy", "cordoned", "tier closed", "fits")
"""Verdicts that can change while the action waits (room frees, a cluster comes back, a tier opens); the others
(too small, filtered by where it may run) never do."""


def ancestors_bound(
    demand: Demand,
    decision: Decision,
    snapshots: Sequence[ClusterSnapshot],
    ancestors: Mapping[str, Mapping[str, float]],
) -> str | None:
    """The waiting reason when `demand` could fit no cluster it may use even if everything but its ancestors
    ended (`ancestors`: what they hold per cluster and resource), and they hold room on one of them; else None."""
    hopeful = [c for c in snapshots if decision.verdicts.get(c.name, "").startswith(_HOPEFUL)]
    if not hopeful or not any(ancestors.get(c.name) for c in hopeful):
        return None
    needs = [("cpu", demand.cpu), ("memory", float(demand.memory))]
    parts = []
    for cluster in hopeful:
        held = ancestors.get(cluster.name, {})
        short = next(
            (
                (resource, need)
                for resource, need in needs
                if need > 0 and cluster.capacity.get(resource, 0.0) - held.get(resource, 0.0) < need
            ),
            None,
        )
        if short is None:
            return None  # room there once other work ends
        resource, need = short
        capacity = cluster.capacity.get(resource, 0.0)
        parts.append(
            f"{resource} {amount_text(resource, need)} on {cluster.name}, where its ancestors hold "
            f"{amount_text(resource, held.get(resource, 0.0))} of {amount_text(resource, capacity)}"
        )
    return "needs " + " or ".join(parts) + "; it may never start"


def queue_limit(run_max_wait: float | None, task_max_queued: float | None) -> tuple[float, str] | None:
    """The tighter of the run's max wait and the task's `Timeout(max_queued_time=)`, with what to call it."""
    limits = [(run_max_wait, "the run's max wait"), (task_max_queued, "the task's max queued time")]
    given = [(seconds, name) for seconds, name in limits if seconds is not None]
    return min(given) if given else None


def waited_too_long(waited: float, limit: float, whose: str, reason: str | None) -> ErrorInfo:
    """The error of an action queued longer than it may be: not retried (it would only wait again)."""
    why = f": it waited because {reason}" if reason else ""
    return NonRecoverableError.info(
        f"queued {waited:.0f}s, longer than {whose} of {limit:g}s{why}", code="MaxWaitExceeded"
    )

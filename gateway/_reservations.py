"""The room placed and running attempts hold on clusters, as the gateway accounts it between heartbeats.

The dispatcher reserves an attempt's demand when it places it, and gives it back when that attempt leaves placed or
running by any path: it ends (succeeded, failed, aborted), the retry policy requeues it as the next attempt, a
drain requeues it, its cluster is lost. Reservations are keyed by attempt (run, action, attempt), not by action: a
requeued action has no cluster and a new attempt number, and an action-keyed reservation was never found again
(issue 14: every retried attempt leaked its room).

One rule decides, from each observed state of an action, which of its reservations end (`observe`): a reservation
for attempt N lives while the action is placed or running at attempt N on the reserved cluster, or has not reached
attempt N yet (placed but the store write not seen yet); anything else releases it.

Free room is each cluster's base (what its agent reported when its session opened, plus what the held attempts it
said it runs hold, which it had already subtracted) less what is held there. Sums are recomputed from the base, and
when nothing is held on a cluster its free room is the base again exactly: float sums cannot drift.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from flyte._wire import Phase
from policies import Demand

Attempt = tuple[str, str, int]
"""(run, action, attempt number)."""

RESOURCES = ("cpu", "memory")
"""What placement checks against free room (GPUs are checked against capacity only)."""

_LIVE = (Phase.PLACED, Phase.RUNNING)


@dataclass(frozen=True, slots=True)
class Held:
    cluster: str
    demand: Demand


def _amounts(demand: Demand) -> tuple[tuple[str, float], ...]:
    return (("cpu", demand.cpu), ("memory", float(demand.memory)))


class Reservations:
    """Reservations per attempt, with what they add up to per cluster (free, reserved, spread counts) and per
    project (usage, for quotas and fair share)."""

    def __init__(self) -> None:
        self._held: dict[Attempt, Held] = {}
        self._attempts: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._base: dict[str, dict[str, float]] = {}
        self._free: dict[str, dict[str, float]] = {}
        """Live dicts: a placement pass's snapshots share them, so each decision sees the ones before it."""
        self._reserved: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._count: dict[str, int] = defaultdict(int)
        self._spread: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.usage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        """What each project's placed and running attempts hold (cpu, memory, gpu)."""
        self._project_count: dict[str, int] = defaultdict(int)

    # -- clusters -------------------------------------------------------------------------------------------------

    def rebase(self, cluster: str, reported_free: dict[str, float], running: set[Attempt]) -> dict[str, float]:
        """The agent reported its free room (its session opened, or it has nothing running), which already excludes
        the attempts it says it runs (`running`): what those hold here is added back, as it is subtracted again
        while they hold it. Returns the cluster's live free dict.

        An agent's report never counts an attempt on its way to it, so a base taken from it never over-states the
        room; it may under-state it while the agent still runs an attempt that is no longer held (an orphan it is
        told to drop), until the next report with nothing running."""
        base = dict(reported_free)
        for attempt in running:
            held = self._held.get(attempt)
            if held is None or held.cluster != cluster:
                continue
            for resource, amount in _amounts(held.demand):
                base[resource] = base.get(resource, 0.0) + amount
        self._base[cluster] = base
        free = self._free.setdefault(cluster, {})
        self._refresh(cluster)
        return free

    def free(self, cluster: str) -> dict[str, float]:
        return self._free.get(cluster, {})

    def reserved(self, cluster: str) -> dict[str, float]:
        reserved = self._reserved.get(cluster, {})
        return {resource: reserved.get(resource, 0.0) for resource in RESOURCES}

    def placed_counts(self, cluster: str) -> dict[str, int]:
        return self._spread[cluster]

    def clusters(self) -> list[str]:
        return sorted({*self._base, *(c for c, n in self._count.items() if n)})

    def holding(self, cluster: str) -> int:
        """How many attempts hold room on `cluster`."""
        return self._count.get(cluster, 0)

    def held_by(self, run: str, action: str) -> list[Held]:
        """What the live attempts of one action hold."""
        return [self._held[(run, action, n)] for n in self._attempts.get((run, action), ())]

    def __len__(self) -> int:
        return len(self._held)

    # -- attempts -------------------------------------------------------------------------------------------------

    def reserve(self, attempt: Attempt, cluster: str, demand: Demand) -> None:
        """Hold `demand` on `cluster` for `attempt` (again: the old hold is released first)."""
        self.release(attempt)
        self._held[attempt] = Held(cluster, demand)
        self._attempts[attempt[:2]].add(attempt[2])
        self._count[cluster] += 1
        reserved = self._reserved[cluster]
        for resource, amount in _amounts(demand):
            reserved[resource] += amount
        self._refresh(cluster)
        self._charge(cluster, demand, +1)

    def release(self, attempt: Attempt) -> Held | None:
        """Give back what `attempt` holds (None when it holds nothing: releasing twice is harmless)."""
        held = self._held.pop(attempt, None)
        if held is None:
            return None
        action = attempt[:2]
        self._attempts[action].discard(attempt[2])
        if not self._attempts[action]:
            del self._attempts[action]
        cluster = held.cluster
        self._count[cluster] -= 1
        reserved = self._reserved[cluster]
        for resource, amount in _amounts(held.demand):
            reserved[resource] -= amount
        if self._count[cluster] == 0:
            del self._count[cluster]
            del self._reserved[cluster]
        self._refresh(cluster)
        self._charge(cluster, held.demand, -1)
        return held

    def observe(self, run: str, action: str, phase: Phase, attempts: int, cluster: str | None) -> list[Held]:
        """An action's new state: release every reservation of it that this state ends."""
        numbers = self._attempts.get((run, action))
        if not numbers:
            return []
        released = []
        for number in sorted(numbers):
            held = self._held[(run, action, number)]
            if attempts < number:
                continue  # placed, and the store write not seen yet
            if attempts == number and phase in _LIVE and cluster == held.cluster:
                continue
            gone = self.release((run, action, number))
            if gone is not None:
                released.append(gone)
        return released

    # -- sums -----------------------------------------------------------------------------------------------------

    def _refresh(self, cluster: str) -> None:
        free = self._free.get(cluster)
        base = self._base.get(cluster)
        if free is None or base is None:
            return
        reserved = self._reserved.get(cluster, {})
        free.clear()
        free.update(base)
        for resource, amount in reserved.items():
            free[resource] = base.get(resource, 0.0) - amount

    def _charge(self, cluster: str, demand: Demand, sign: int) -> None:
        project = demand.project
        self._project_count[project] += sign
        if self._project_count[project] == 0:
            del self._project_count[project]
            self.usage.pop(project, None)
        else:
            used = self.usage[project]
            used["cpu"] += sign * demand.cpu
            used["memory"] += sign * float(demand.memory)
            used["gpu"] += sign * float(demand.gpu)
        if demand.spread_key is not None:
            counts = self._spread[cluster]
            counts[demand.spread_key] += sign
            if counts[demand.spread_key] <= 0:
                del counts[demand.spread_key]

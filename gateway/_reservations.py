"""The room placed and running attempts hold on clusters, as the gateway accounts it between heartbeats.

The dispatcher reserves an attempt's demand when it places it, and gives it back when that attempt leaves placed or
running by any path: it ends (succeeded, failed, aborted), the retry policy requeues it as the next attempt, a
drain requeues it, its cluster is lost. Reservations are keyed by attempt (run, action, attempt), not by action: a
requeued action has no cluster and a new attempt number, and an action-keyed reservation was never found again
(issue 14: every retried attempt leaked its room).

One rule decides, from each observed state of an action, which of its reservations end (`observe`): a reservation
for attempt N lives while the action is placed or running at attempt N on the reserved cluster, or has not reached
attempt N yet (placed but the store write not seen yet); anything else releases it.

An attempt of a reusable environment's pool (`Demand.pool_key`) holds a slot of the pool, not room of its own: a
replica holds the environment's request once for `pool_concurrency` attempts, so a pool's attempts on a cluster
hold `pool_replicas(n)` replicas' worth of room between them (the agent counts its free room the same way), and a
fan-out of a thousand on a pool of one replica holds one replica's room, not a thousand requests.

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


def _amounts(demand: Demand, times: int = 1) -> tuple[tuple[str, float], ...]:
    return (("cpu", times * demand.cpu), ("memory", float(times * demand.memory)))


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
        self._pool_in_flight: dict[str, dict[str, int]] = defaultdict(dict)
        """Attempts held per cluster per pool; live dicts, as `_free`."""
        self._pool_sized_by: dict[tuple[str, str], Demand] = {}
        """(cluster, pool) -> the demand of the pool's first attempt there: it sizes every replica, as the
        first assignment sizes the agent's pool, even when a later attempt's overrides ask for other room."""

    # -- clusters -------------------------------------------------------------------------------------------------

    def rebase(self, cluster: str, reported_free: dict[str, float], running: set[Attempt]) -> dict[str, float]:
        """The agent reported its free room (its session opened, or it has nothing running), which already excludes
        the attempts it says it runs (`running`): what those hold here is added back, as it is subtracted again
        while they hold it. Returns the cluster's live free dict.

        An agent's report never counts an attempt on its way to it, so a base taken from it never over-states the
        room; it may under-state it while the agent still runs an attempt that is no longer held (an orphan it is
        told to drop), until the next report with nothing running."""
        base = dict(reported_free)
        pooled: dict[str, int] = defaultdict(int)
        added: list[tuple[tuple[str, float], ...]] = []
        for attempt in running:
            held = self._held.get(attempt)
            if held is None or held.cluster != cluster:
                continue
            if held.demand.pool_key is not None:
                pooled[held.demand.pool_key] += 1
            else:
                added.append(_amounts(held.demand))
        for pool, count in pooled.items():
            sized_by = self._pool_sized_by[(cluster, pool)]
            added.append(_amounts(sized_by, sized_by.pool_replicas(count)))
        for amounts in added:
            for resource, amount in amounts:
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

    def pool_in_flight(self, cluster: str) -> dict[str, int]:
        return self._pool_in_flight[cluster]

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
        self._hold(cluster, demand, +1)

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
        self._hold(cluster, held.demand, -1)
        if self._count[cluster] == 0:
            del self._count[cluster]
            self._reserved.pop(cluster, None)
            self._refresh(cluster)
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

    def _hold(self, cluster: str, demand: Demand, sign: int) -> None:
        """One attempt with `demand` starts (+1) or stops (-1) holding room on `cluster`."""
        times, sized_by = sign, demand
        pool = demand.pool_key
        if pool is not None:
            # Room changes only when the attempt opens or closes a replica of its pool.
            in_flight = self._pool_in_flight[cluster]
            before = in_flight.get(pool, 0)
            after = before + sign
            sized_by = self._pool_sized_by.setdefault((cluster, pool), demand)
            if after > 0:
                in_flight[pool] = after
            else:
                in_flight.pop(pool, None)
                del self._pool_sized_by[(cluster, pool)]
            times = sized_by.pool_replicas(after) - sized_by.pool_replicas(before)
        if times:
            reserved = self._reserved[cluster]
            for resource, amount in _amounts(sized_by, times):
                reserved[resource] += amount
            self._refresh(cluster)
        project = demand.project
        self._project_count[project] += sign
        if self._project_count[project] == 0:
            del self._project_count[project]
            self.usage.pop(project, None)
        elif times:
            used = self.usage[project]
            used["cpu"] += times * sized_by.cpu
            used["memory"] += times * float(sized_by.memory)
            used["gpu"] += times * float(sized_by.gpu)
        if demand.spread_key is not None:
            counts = self._spread[cluster]
            counts[demand.spread_key] += sign
            if counts[demand.spread_key] <= 0:
                del counts[demand.spread_key]

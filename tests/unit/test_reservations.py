"""Reservation bookkeeping (hypothesis, stateful): random sequences of what happens to actions (placed, a lost
placement race, started, succeeded, failed for good, retried, drained, aborted, their cluster lost, a session
reopened, a duplicate or late state) keep free room equal to the base less what live attempts hold (an attempt of a
reusable pool holds a slot, and the pool's attempts on a cluster hold their replicas' room between them), and once
every action has ended, every cluster's free room, every project's usage and every spread count are back to the
start. The states observed are the ones the gateway's state machine writes (`gateway._runs`), in the watch's order."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flyte._wire import Phase
from gateway._reservations import Reservations
from policies import Demand, pool_replicas

CLUSTERS = {"us-east": {"cpu": 2.0, "memory": 8.0 * 2**30}, "eu-west": {"cpu": 2.25, "memory": 16.0 * 2**30}}
CPUS = st.sampled_from([0.1, 0.25, 0.3, 0.5, 1.0, 1.7])
MEMORY = st.sampled_from([0, 2**20, 3 * 10**8, 2**30])
LIVE = (Phase.PLACED, Phase.RUNNING)
POOL_CPU, POOL_MEMORY, POOL_CONCURRENCY, POOL_REPLICAS = 0.5, 2**20, 2, 3
TERMINAL = (Phase.SUCCEEDED, Phase.FAILED, Phase.ABORTED)


@dataclass
class Action:
    """One action as the store holds it."""

    run: str
    name: str
    demand: Demand
    phase: Phase = Phase.QUEUED
    attempts: int = 0
    cluster: str | None = None
    pending: str | None = None
    """Placed by the dispatcher (room reserved) with the store write not answered yet: the cluster."""


class ReservationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = Reservations()
        for cluster, free in CLUSTERS.items():
            self.book.rebase(cluster, dict(free), set())
        self.actions: list[Action] = []

    # -- what the store holds changes: each change is observed, as the dispatcher's watch does -----------------

    def _write(self, action: Action, phase: Phase, attempts: int, cluster: str | None) -> None:
        action.phase, action.attempts, action.cluster = phase, attempts, cluster
        self.book.observe(action.run, action.name, phase, attempts, cluster)

    def _pick(self, index: int, *phases: Phase) -> Action | None:
        candidates = [a for a in self.actions if a.phase in phases]
        return candidates[index % len(candidates)] if candidates else None

    @rule(cpu=CPUS, memory=MEMORY, project=st.sampled_from(["ml", "etl"]), spread=st.booleans())
    def submit(self, cpu: float, memory: int, project: str, spread: bool) -> None:
        name = f"a{len(self.actions)}"
        demand = Demand(cpu=cpu, memory=memory, project=project, spread_key="run/a0" if spread else None)
        self.actions.append(Action("run", name, demand))

    @rule(project=st.sampled_from(["ml", "etl"]))
    def submit_to_a_pool(self, project: str) -> None:
        demand = Demand(
            cpu=POOL_CPU,
            memory=POOL_MEMORY,
            project=project,
            pool_key=f"{project}/development/env@v1",
            pool_concurrency=POOL_CONCURRENCY,
            pool_max_replicas=POOL_REPLICAS,
        )
        self.actions.append(Action("run", f"a{len(self.actions)}", demand))

    @rule(index=st.integers(0, 99), cluster=st.sampled_from(sorted(CLUSTERS)))
    def place(self, index: int, cluster: str) -> None:
        action = self._pick(index, Phase.QUEUED)
        if action is None or action.pending is not None:
            return
        self.book.reserve((action.run, action.name, action.attempts + 1), cluster, action.demand)
        action.pending = cluster

    @rule(index=st.integers(0, 99))
    def placement_written(self, index: int) -> None:
        action = next((a for a in self.actions if a.pending is not None), None)
        if action is None:
            return
        cluster, action.pending = action.pending, None
        self._write(action, Phase.PLACED, action.attempts + 1, cluster)

    @rule()
    def placement_lost_race(self) -> None:
        """The action was aborted (or changed) first: the dispatcher gives the room back itself."""
        action = next((a for a in self.actions if a.pending is not None), None)
        if action is None:
            return
        action.pending = None
        self.book.release((action.run, action.name, action.attempts + 1))

    @rule(index=st.integers(0, 99))
    def started(self, index: int) -> None:
        action = self._pick(index, Phase.PLACED)
        if action is not None:
            self._write(action, Phase.RUNNING, action.attempts, action.cluster)

    @rule(index=st.integers(0, 99), outcome=st.sampled_from([Phase.SUCCEEDED, Phase.FAILED]))
    def ended(self, index: int, outcome: Phase) -> None:
        action = self._pick(index, *LIVE)
        if action is not None:
            self._write(action, outcome, action.attempts, action.cluster)

    @rule(index=st.integers(0, 99))
    def retried(self, index: int) -> None:
        """A failure with retries left (or a lost cluster's system error): queued for the next attempt, no cluster."""
        action = self._pick(index, *LIVE)
        if action is not None:
            self._write(action, Phase.QUEUED, action.attempts, None)

    @rule(index=st.integers(0, 99))
    def drained(self, index: int) -> None:
        action = self._pick(index, Phase.PLACED)
        if action is not None:
            self._write(action, Phase.QUEUED, action.attempts, None)

    @rule(index=st.integers(0, 99))
    def aborted(self, index: int) -> None:
        action = self._pick(index, Phase.QUEUED, *LIVE)
        if action is not None:
            self._write(action, Phase.ABORTED, action.attempts, action.cluster)

    @rule(cluster=st.sampled_from(sorted(CLUSTERS)))
    def cluster_lost(self, cluster: str) -> None:
        """Its lease expired: each of its attempts fails as a system error and is requeued."""
        for action in self.actions:
            if action.phase in LIVE and action.cluster == cluster:
                if action.phase is Phase.PLACED:
                    self._write(action, Phase.RUNNING, action.attempts, cluster)
                self._write(action, Phase.QUEUED, action.attempts, None)

    @rule(cluster=st.sampled_from(sorted(CLUSTERS)))
    def session_reopened(self, cluster: str) -> None:
        """The agent reconnects and reports its free room, which excludes what it runs."""
        running = {
            (a.run, a.name, a.attempts)
            for a in self.actions
            if a.phase is Phase.RUNNING and a.cluster == cluster and a.pending is None
        }
        free = dict(CLUSTERS[cluster])
        holding = [a for a in self.actions if (a.run, a.name, a.attempts) in running]
        for resource, amount in held(holding).items():
            free[resource] -= amount
        self.book.rebase(cluster, free, running)

    @rule(index=st.integers(0, 99))
    def observed_again(self, index: int) -> None:
        """A relist or a duplicate event: the same state again changes nothing."""
        if self.actions:
            action = self.actions[index % len(self.actions)]
            self.book.observe(action.run, action.name, action.phase, action.attempts, action.cluster)

    # -- what must hold ---------------------------------------------------------------------------------------

    @invariant()
    def free_is_the_base_less_what_live_attempts_hold(self) -> None:
        for cluster, capacity in CLUSTERS.items():
            holders = [a for a in self.actions if self._holds(a, cluster)]
            assert self.book.holding(cluster) == len(holders)
            free = self.book.free(cluster)
            for resource, amount in held(holders).items():
                assert free[resource] == pytest.approx(capacity[resource] - amount, abs=1e-6)

    @staticmethod
    def _holds(action: Action, cluster: str) -> bool:
        return action.pending == cluster or (action.phase in LIVE and action.cluster == cluster)

    @precondition(lambda self: bool(self.actions))
    @rule()
    def everything_ends(self) -> None:
        """Every action ends: nothing is held any more, exactly (not within a rounding error)."""
        for action in self.actions:
            if action.pending is not None:
                self.placement_written(0)
        for action in self.actions:
            if action.phase not in TERMINAL:
                self._write(action, Phase.ABORTED, action.attempts, action.cluster)
        assert len(self.book) == 0
        for cluster, capacity in CLUSTERS.items():
            assert self.book.free(cluster) == capacity
            assert self.book.reserved(cluster) == {"cpu": 0.0, "memory": 0.0}
            assert not self.book.placed_counts(cluster)
            assert not self.book.pool_in_flight(cluster)
        assert not self.book.usage


def held(actions: Iterable[Action]) -> dict[str, float]:
    """What `actions`, live on one cluster, hold: each its own request, or its pool's replicas between them."""
    out = {"cpu": 0.0, "memory": 0.0}
    pools: dict[str, int] = defaultdict(int)
    for action in actions:
        if action.demand.pool_key is not None:
            pools[action.demand.pool_key] += 1
        else:
            out["cpu"] += action.demand.cpu
            out["memory"] += action.demand.memory
    for count in pools.values():
        replicas = pool_replicas(count, POOL_CONCURRENCY, POOL_REPLICAS)
        out["cpu"] += replicas * POOL_CPU
        out["memory"] += replicas * POOL_MEMORY
    return out


ReservationMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_reservations_return_to_the_start = ReservationMachine.TestCase


def test_a_retried_attempt_gives_its_room_back() -> None:
    """Issue 14's report: cpu=0.25, retries=1, raising, twice: eu-west stayed 2.25 -> 2.0 -> 1.75."""
    book = Reservations()
    free = book.rebase("eu-west", {"cpu": 2.25, "memory": 8.0}, set())
    demand = Demand(cpu=0.25)
    for run in ("r1", "r2"):
        for attempt in (1, 2):
            book.reserve((run, "a0", attempt), "eu-west", demand)
            assert free["cpu"] == 2.0
            book.observe(run, "a0", Phase.PLACED, attempt, "eu-west")
            book.observe(run, "a0", Phase.RUNNING, attempt, "eu-west")
            final = Phase.FAILED if attempt == 2 else Phase.QUEUED
            book.observe(run, "a0", final, attempt, None if final is Phase.QUEUED else "eu-west")
            assert free["cpu"] == 2.25
    assert len(book) == 0


def test_a_placement_not_yet_written_keeps_its_room() -> None:
    """A late event of the queued state before the placed write (attempt N-1) must not release attempt N."""
    book = Reservations()
    free = book.rebase("us-east", {"cpu": 2.0}, set())
    book.reserve(("r", "a1", 2), "us-east", Demand(cpu=1.0))
    book.observe("r", "a1", Phase.QUEUED, 1, None)
    assert free["cpu"] == 1.0
    book.observe("r", "a1", Phase.PLACED, 2, "us-east")
    assert free["cpu"] == 1.0
    book.observe("r", "a1", Phase.SUCCEEDED, 2, "us-east")
    assert free["cpu"] == 2.0


def test_a_reopened_session_counts_what_its_agent_runs_once() -> None:
    book = Reservations()
    book.rebase("us-east", {"cpu": 2.0}, set())
    book.reserve(("r", "a1", 1), "us-east", Demand(cpu=0.5))
    book.reserve(("r", "a2", 1), "us-east", Demand(cpu=0.5))
    # The agent runs a1 (its free excludes it); a2 never reached it.
    free = book.rebase("us-east", {"cpu": 1.5}, {("r", "a1", 1)})
    assert free["cpu"] == 1.0
    book.observe("r", "a2", Phase.QUEUED, 1, None)
    book.observe("r", "a1", Phase.SUCCEEDED, 1, "us-east")
    assert free["cpu"] == 2.0


def test_a_pools_attempts_hold_its_replicas_room_not_a_request_each() -> None:
    """A fan-out of 1,000 on a pool of at most 2 replicas of 512 slots, each asking 1 cpu, holds 2 cpu, not 1,000;
    the pool's first attempt sizes its replicas; what the project holds follows the replicas too."""
    book = Reservations()
    free = book.rebase("us-east", {"cpu": 64.0, "memory": 2.0**40}, set())
    pool = Demand(cpu=1.0, project="ml", pool_key="ml/development/env@v1", pool_concurrency=512, pool_max_replicas=2)
    bigger = Demand(cpu=8.0, project="ml", pool_key=pool.pool_key, pool_concurrency=512, pool_max_replicas=2)
    book.reserve(("r", "c0", 1), "us-east", pool)
    assert (free["cpu"], book.usage["ml"]["cpu"]) == (63.0, 1.0)
    for i in range(1, 1000):
        book.reserve(("r", f"c{i}", 1), "us-east", bigger if i % 2 else pool)
    assert (free["cpu"], book.usage["ml"]["cpu"]) == (62.0, 2.0)
    assert book.pool_in_flight("us-east") == {pool.pool_key: 1000}
    for i in range(1000 - 512):
        book.release(("r", f"c{i}", 1))
    assert free["cpu"] == 63.0
    for i in range(1000 - 512, 1000):
        book.release(("r", f"c{i}", 1))
    assert (free["cpu"], dict(book.pool_in_flight("us-east")), dict(book.usage)) == (64.0, {}, {})


def test_a_reopened_session_adds_back_the_replicas_its_agent_counts_for_a_pool() -> None:
    book = Reservations()
    book.rebase("us-east", {"cpu": 4.0}, set())
    pool = Demand(cpu=1.0, pool_key="default/development/env@v1", pool_concurrency=2, pool_max_replicas=4)
    for i in range(3):
        book.reserve(("r", f"c{i}", 1), "us-east", pool)
    # The agent runs c0 and c1 (one replica's room off what it reports); c2 never reached it.
    free = book.rebase("us-east", {"cpu": 3.0}, {("r", "c0", 1), ("r", "c1", 1)})
    assert free["cpu"] == 2.0
    book.observe("r", "c2", Phase.QUEUED, 1, None)
    assert free["cpu"] == 3.0

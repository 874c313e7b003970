"""Fault matrix rows 1-3, 6, 8 and 12: processes die, pause or get their work twice, and nothing is lost or done
twice. Each row runs the ledger workload on two agents, injects its fault at a seed-chosen moment, and checks
the invariants of `federation.check_invariants`, then that every cluster's room came back
(`check_room_returned`)."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from federation import (
    FIRST_SYSTEM_BACKOFF,
    Entry,
    Federation,
    Ledger,
    Recovery,
    check_invariants,
    check_room_returned,
    expected,
    placed_again_at,
    workload,
)
from processes import pid_alive
from waiting import assert_eventually

import flyte

pytestmark = pytest.mark.timeout(120)


def start(fed: Federation, clusters: tuple[str, ...] = ("a", "b")) -> None:
    fed.start_gateway()
    for name in clusters:
        fed.start_agent(name)
    fed.connect()


def running(ledger: Ledger, cluster: str | None = None) -> list[Entry]:
    """Steps that started (on `cluster`) and have not ended."""
    ended = {(e.action, e.attempt) for e in ledger.entries() if e.event == "end"}
    started = ledger.started()
    return [e for e in started if cluster in (None, e.cluster) and (e.action, e.attempt) not in ended]


def fault_moment(rng: random.Random, hold: float) -> None:
    """The fault's timing, drawn from the seed: somewhere in the first half of the steps' work (not a wait)."""
    time.sleep(rng.uniform(0.0, hold / 2))


def kill_a_running_step(ledger: Ledger, rng: random.Random, hold: float) -> tuple[Entry, float]:
    """SIGKILL the process of a step that is still running, at a seed-chosen moment; returns it and when."""
    fault_moment(rng, hold / 2)

    def candidates() -> list[Entry]:
        # Only live workers of ours: a pid must not have ended (or been reused) since it wrote the ledger.
        return [e for e in running(ledger) if b"flyte._runtime" in _command(e.pid)]

    assert_eventually(lambda: bool(candidates()), timeout=60)
    victim = rng.choice(candidates())
    killed_at = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    return victim, killed_at


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def launch(fed: Federation, name: str, seed: int, hold: float, n: int, reusable: str = "") -> tuple[Any, Ledger]:
    """Run the workload with n steps and wait until every step has started."""
    program = workload(fed, f"{name}_{seed}", reusable)
    ledger = Ledger(fed.root / "ledger.jsonl")
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=hold)
    assert_eventually(lambda: len(ledger.started()) >= n, timeout=60)
    return run, ledger


@pytest.mark.seeds(1)
def test_a_killed_task_process_is_retried_as_a_system_error(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    start(federation)
    n, hold = rng.randint(2, 4), rng.uniform(3.0, 4.0)
    run, ledger = launch(federation, "kill_task", seed, hold, n)
    victim, killed_at = kill_a_running_step(ledger, rng, hold)
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    (action,) = [a for a in federation.actions(run.name) if a.name == victim.action]
    assert (action.attempts, action.system_failures, action.user_failures) == (2, 1, 0), f"seed={seed}: {action}"
    assert action.error is None
    check_room_returned(federation, seed)
    recovery.record(
        placed_again_at(federation, run.name, victim.action, 2) - killed_at,
        bound=2 * federation.lease_ttl + FIRST_SYSTEM_BACKOFF,
    )


@pytest.mark.seeds(1)
def test_a_killed_agent_restarted_at_once_launches_nothing_twice(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    start(federation)
    n = rng.randint(3, 4)
    run, ledger = launch(federation, "kill_agent", seed, rng.uniform(3.0, 4.0), n)
    victim = rng.choice(sorted({e.cluster for e in ledger.started()}))
    orphans = running(ledger, victim)
    killed_at = time.time()
    federation.agents[victim].kill()
    # Its workers die with it (PR_SET_PDEATHSIG): nothing runs that no agent watches.
    assert_eventually(lambda: not any(pid_alive(e.pid) for e in orphans), timeout=15)
    # Back before its lease ends: the new session must give up the old one's work, not wait on it forever.
    federation.start_agent(victim)
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    final = {a.name: a for a in federation.actions(run.name)}
    for entry in orphans:
        action = final[entry.action]
        assert action.attempts == entry.attempt + 1, f"seed={seed}: {entry.action} ran {action.attempts} times"
        assert action.system_failures == 1
    check_room_returned(federation, seed)
    moved = max(placed_again_at(federation, run.name, e.action, e.attempt + 1) for e in orphans)
    recovery.record(moved - killed_at, bound=2 * federation.lease_ttl + FIRST_SYSTEM_BACKOFF, moved=len(orphans))


@pytest.mark.seeds(1)
def test_a_paused_agent_learns_it_is_stale_and_drops_orphaned_work(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    start(federation)
    ttl = federation.lease_ttl
    # The steps outlast the pause, so the paused agent still runs them when it wakes up.
    n = rng.randint(3, 4)
    run, ledger = launch(federation, "pause_agent", seed, ttl + 5, n)
    victim = rng.choice(sorted({e.cluster for e in ledger.started()}))
    orphans = running(ledger, victim)
    agent = federation.agents[victim]
    assert federation.gateway is not None
    gateway, offsets = federation.gateway, (agent.size(), federation.gateway.size())
    paused_at = time.time()
    agent.signal(signal.SIGSTOP)
    # Past the lease: the gateway moves the paused cluster's work (the pause is the fault, not a wait).
    time.sleep(ttl + rng.uniform(1.0, 2.0))
    agent.signal(signal.SIGCONT)
    # It learns either from the gateway closing its fenced session, or, reconnecting, from the aborts it is sent.
    assert_eventually(
        lambda: "dropping" in agent.text(offsets[0]) or "no longer its own" in gateway.text(offsets[1]), timeout=15
    )
    assert_eventually(lambda: not any(pid_alive(e.pid) for e in orphans), timeout=15)
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    ended = {(e.action, e.attempt) for e in ledger.entries() if e.event == "end"}
    for entry in orphans:
        assert (entry.action, entry.attempt) not in ended, f"seed={seed}: the stale agent finished {entry}"
    check_room_returned(federation, seed)
    moved = min(placed_again_at(federation, run.name, e.action, e.attempt + 1) for e in orphans)
    recovery.record(moved - paused_at, bound=2 * ttl + FIRST_SYSTEM_BACKOFF, moved=len(orphans))


@pytest.mark.seeds(1)
def test_a_killed_gateway_restarts_and_everyone_reconnects(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    # A lease longer than a restart: the agents come back in time to keep their work.
    federation.lease_ttl = 10.0
    start(federation)
    n = rng.randint(3, 4)
    run, ledger = launch(federation, "kill_gateway", seed, rng.uniform(3.0, 4.0), n)
    # A client follows the run through the restart: it must ride it out, not fail.
    follower = ThreadPoolExecutor(1).submit(run.wait)
    fault_moment(rng, 1.0)
    assert federation.gateway is not None
    offsets = {name: agent.size() for name, agent in federation.agents.items()}
    killed_at = time.time()
    federation.gateway.kill()
    federation.start_gateway()
    for name, agent in federation.agents.items():
        agent.wait_for(re.compile(r"connected to .* epoch"), within=30, offset=offsets[name])
    recovery.record(time.time() - killed_at, bound=federation.lease_ttl, what="gateway back, agents reconnected")
    follower.result(timeout=60)
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    attempts = {a.name: a.attempts for a in federation.actions(run.name)}
    assert set(attempts.values()) == {1}, f"seed={seed}: a gateway restart cost attempts: {attempts}"
    check_room_returned(federation, seed)


@pytest.mark.seeds(1)
def test_an_assignment_delivered_twice_starts_one_process(federation: Federation, seed: int) -> None:
    rng = random.Random(seed)
    hold = rng.uniform(0.5, 1.5)
    # The gateway's failpoint sends every assignment again: after it ended (odd seeds) or at once, while it runs.
    federation.gateway_env["FLYTE_FAILPOINT_DUPLICATE_ASSIGN"] = f"{hold + 2.0:.1f}" if seed % 2 else "0"
    start(federation)
    program = workload(federation, f"twice_{seed}")
    ledger = Ledger(federation.root / "ledger.jsonl")
    n = rng.randint(2, 4)
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=hold)
    assert run.outputs() == (expected(n),), f"seed={seed}"

    def duplicates() -> int:
        return sum(agent.text().count("delivered twice") for agent in federation.agents.values())

    # Every action (the root and n steps) was delivered a second time, and refused as a duplicate.
    assert_eventually(lambda: duplicates() >= n + 1, timeout=30)
    check_invariants(federation, run.name, ledger, seed)
    assert len(ledger.started(run.name)) == n, f"seed={seed}: {ledger.started(run.name)}"
    assert {a.attempts for a in federation.actions(run.name)} == {1}
    check_room_returned(federation, seed)


POOL = ", reusable=flyte.ReusePolicy(replicas=2, concurrency=1)"


def pool_workers(fed: Federation, cluster: str) -> set[int]:
    """Pids of the warm pool workers the agent of `cluster` started (its children with `--pool`)."""
    agent = fed.agents[cluster].pid
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"--pool" in command and parent == agent and pid_alive(int(proc.name)):
            pids.add(int(proc.name))
    return pids


@pytest.mark.seeds(1)
def test_a_killed_pool_worker_is_retried_and_the_pool_refills(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    start(federation, clusters=("a",))
    n, hold = 2, rng.uniform(3.0, 4.0)
    run, ledger = launch(federation, "pool", seed, hold, n, reusable=POOL)
    workers = pool_workers(federation, "a")
    assert len(workers) == 2, f"seed={seed}: the pool has {workers}"
    victim, killed_at = kill_a_running_step(ledger, rng, hold)
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    (action,) = [a for a in federation.actions(run.name) if a.name == victim.action]
    assert (action.attempts, action.system_failures) == (2, 1), f"seed={seed}: {action}"
    retried = [e for e in ledger.started() if e.action == victim.action and e.attempt == 2]
    assert retried[0].pid in pool_workers(federation, "a"), "the retry ran in a warm pool worker"
    assert_eventually(lambda: len(pool_workers(federation, "a")) == 2, timeout=30)
    assert victim.pid not in pool_workers(federation, "a")
    check_room_returned(federation, seed)
    recovery.record(
        placed_again_at(federation, run.name, victim.action, 2) - killed_at,
        bound=2 * federation.lease_ttl + FIRST_SYSTEM_BACKOFF,
    )

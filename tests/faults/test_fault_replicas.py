"""Fault matrix: gateway replicas on one etcd. A client configured with every replica's endpoint rides out the one
it talks to dying: requests and the run's watch go on at another replica, and nothing the user sees fails. One
replica leads and places; a killed leader is replaced within its lease and the work goes on, on agents held by any
replica (those of the dead one move to another); a leader paused past its lease places nothing once it resumes."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from etcd_process import EtcdCluster
from federation import Federation, Ledger, Recovery, check_invariants, expected, workload
from processes import LISTENING, Proc, refused_endpoint
from waiting import assert_eventually

import flyte
from flyte._client import client_for

pytestmark = pytest.mark.timeout(120)


@pytest.mark.seeds(1)
def test_a_client_rides_out_the_replica_it_talks_to_dying(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    federation.start_gateway()
    federation.start_agent("a")
    replica, replica_endpoint = federation.start_replica()
    # A dead replica first: the client must move past it without the user noticing.
    endpoints = [refused_endpoint(), replica_endpoint, federation.endpoint]
    flyte.init(endpoint=",".join(endpoints), api_key=federation.tokens["admin"], insecure=True)
    program = workload(federation, f"replicas_{seed}")
    ledger = Ledger(federation.root / "ledger.jsonl")
    n = rng.randint(2, 3)
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=rng.uniform(2.0, 3.0))
    assert client_for().endpoint == replica_endpoint
    follower = ThreadPoolExecutor(1).submit(run.wait)
    assert_eventually(lambda: len(ledger.started(run.name)) >= 1, timeout=60)
    killed_at = time.time()
    replica.kill()
    # The run's watch broke with the replica: it resumes at the next one that answers.
    assert_eventually(lambda: client_for().endpoint == federation.endpoint, timeout=30)
    recovery.record(
        time.time() - killed_at, bound=10.0, what="the client's replica killed: its watch resumed elsewhere"
    )
    follower.result(timeout=60)
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    # Requests after the kill go to a replica that answers.
    assert federation.run(run.name).phase.value == "succeeded"


def readiness(endpoint: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{endpoint}/readyz", timeout=5) as answer:
        body: dict[str, object] = json.loads(answer.read())
        return body


def leaders(endpoints: list[str]) -> list[str]:
    """The endpoints whose replica says it leads (a dead one says nothing)."""
    found = []
    for endpoint in endpoints:
        try:
            if readiness(endpoint)["leading"]:
                found.append(endpoint)
        except OSError:
            continue
    return found


@pytest.mark.seeds(1)
def test_one_replica_leads_and_a_killed_leader_is_replaced_within_the_lease(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    ttl = 2.0
    processes = federation.start_replicas(3, ttl)
    assert_eventually(lambda: len(leaders(list(processes))) == 1, timeout=30)
    (leader,) = leaders(list(processes))
    killed_at = time.time()
    processes.pop(leader).kill()  # SIGKILL: no resignation, the lease must run out
    assert_eventually(lambda: len(leaders(list(processes))) == 1, timeout=ttl * 5)
    recovery.record(time.time() - killed_at, bound=ttl * 2, what="leader SIGKILLed -> another replica leads")
    (successor,) = leaders(list(processes))
    # A replica stopped cleanly resigns: the last one leads at once, not after a lease.
    stopped_at = time.time()
    processes.pop(successor).stop()
    (last,) = processes
    assert_eventually(lambda: leaders([last]) == [last], timeout=ttl * 5)
    recovery.record(time.time() - stopped_at, bound=ttl, what="leader stopped (SIGTERM) -> another replica leads")


FANOUT = """
import asyncio
import json
import os
import time

import flyte

home = flyte.TaskEnvironment("{env}-main")
# 16 slots a cluster (2 replicas of 8): most leaves wait in the queue, so the successor places some of them.
leaves = flyte.TaskEnvironment(
    "{env}-leaf", resources=flyte.Resources(memory="64Mi"), reusable=flyte.ReusePolicy(replicas=2, concurrency=8)
)
home.add_dependency(leaves)


@leaves.task
async def leaf(i: int, ledger: str) -> int:
    ctx = flyte.ctx()
    line = {{"event": "start", "run": ctx.action.run_name, "action": ctx.action.name, "attempt": ctx.attempt,
             "pid": os.getpid(), "cluster": os.environ.get("FLYTE_CLUSTER"), "t": time.time()}}
    with open(ledger, "a") as out:
        out.write(json.dumps(line) + "\\n")
    await asyncio.sleep(0.2)
    return i * i


@home.task
async def main(n: int, ledger: str) -> int:
    return sum(await asyncio.gather(*(leaf(i, ledger) for i in range(n))))
"""

FANOUT_WIDTH = int(os.environ.get("FLYTE_FAULT_FANOUT", "200"))
"""The fan-out of the leader-killed row (2,000 by hand: `FLYTE_FAULT_FANOUT=2000`)."""


def rotated(endpoints: list[str], first: str) -> str:
    """Every endpoint, comma-separated, starting at `first` (the replica an agent dials first)."""
    at = endpoints.index(first)
    return ",".join(endpoints[at:] + endpoints[:at])


def the_leader(processes: dict[str, Proc], within: float) -> str:
    assert_eventually(lambda: len(leaders(list(processes))) == 1, timeout=within)
    (leader,) = leaders(list(processes))
    return leader


@pytest.mark.timeout(600)
@pytest.mark.seeds(1)
def test_a_leader_killed_during_a_fan_out_is_replaced_and_the_run_completes(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    ttl = 2.0
    processes = federation.start_replicas(3, ttl)
    endpoints = list(processes)
    leader = the_leader(processes, within=30)
    followers = [e for e in endpoints if e != leader]
    # One agent on the leader (it must move to another replica), one on a follower (its session stays).
    federation.start_agent("a", cpu="8", gateway=rotated(endpoints, leader))
    federation.start_agent("b", cpu="8", gateway=rotated(endpoints, followers[0]))
    flyte.init(endpoint=rotated(endpoints, followers[1]), api_key=federation.tokens["admin"], insecure=True)
    program = federation.load(f"fanout_{seed}", FANOUT.format(env=f"fanout-{seed}"))
    ledger = Ledger(federation.root / "ledger.jsonl")
    began = time.time()
    run = flyte.run(program.main, n=FANOUT_WIDTH, ledger=str(ledger.path))
    assert_eventually(lambda: len(ledger.started(run.name)) >= FANOUT_WIDTH // 10, timeout=300)
    killed_at = time.time()
    processes.pop(leader).kill()
    successor = the_leader(processes, within=ttl * 5)
    recovery.record(time.time() - killed_at, bound=ttl * 2, what=f"leader SIGKILLed in a {FANOUT_WIDTH}-way fan-out")
    run.wait()
    took = time.time() - began
    assert run.outputs() == (sum(i * i for i in range(FANOUT_WIDTH)),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    after = [e for e in ledger.started(run.name) if e.t > killed_at]
    assert after, f"seed={seed}: nothing ran after the leader was killed"
    terms = {p.term for p in federation.placements(run.name) if p.cluster is not None}
    assert len(terms) == 2, f"seed={seed}: placements in terms {terms}, expected the old leader's and {successor}'s"
    recovery.record(took, bound=600.0, what=f"{FANOUT_WIDTH}-way fan-out with the leader killed, start to end")


@pytest.mark.seeds(1)
def test_an_agent_on_a_follower_goes_on_when_the_leader_dies(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    ttl = 2.0
    processes = federation.start_replicas(2, ttl)
    leader = the_leader(processes, within=30)
    (follower,) = (e for e in processes if e != leader)
    # Only the follower: the agent must not need the leader to get work, now or after it dies.
    federation.start_agent("a", gateway=follower)
    agent = federation.agents["a"]
    flyte.init(endpoint=rotated(list(processes), follower), api_key=federation.tokens["admin"], insecure=True)
    program = workload(federation, f"follower_{seed}")
    ledger = Ledger(federation.root / "ledger.jsonl")
    n = 2
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=rng.uniform(3.0, 4.0))
    assert_eventually(lambda: len(ledger.started(run.name)) >= 1, timeout=60)
    offset = agent.size()
    killed_at = time.time()
    processes.pop(leader).kill()
    assert the_leader(processes, within=ttl * 5) == follower
    recovery.record(time.time() - killed_at, bound=ttl * 2, what="leader killed; an agent on the follower")
    run.wait()
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    assert "connected to" not in agent.text(offset), f"seed={seed}: the agent's session on the follower was broken"
    # New work after the leader died is placed by the follower, now leading, onto the same agent.
    second = flyte.run(program.main, n=1, ledger=str(ledger.path), hold=0.1)
    second.wait()
    check_invariants(federation, second.name, ledger, seed)


@pytest.mark.seeds(1)
def test_a_leader_paused_past_its_lease_steps_down_and_places_nothing(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    ttl = 2.0
    processes = federation.start_replicas(2, ttl)
    leader = the_leader(processes, within=30)
    (follower,) = (e for e in processes if e != leader)
    federation.start_agent("a", gateway=follower)
    flyte.init(endpoint=follower, api_key=federation.tokens["admin"], insecure=True)
    program = workload(federation, f"paused_{seed}")
    ledger = Ledger(federation.root / "ledger.jsonl")
    first = flyte.run(program.main, n=1, ledger=str(ledger.path), hold=0.1)
    first.wait()
    (old_term,) = {p.term for p in federation.placements(first.name) if p.cluster is not None}
    paused = processes[leader]
    paused_at = time.time()
    paused.signal(signal.SIGSTOP)
    assert the_leader({follower: processes[follower]}, within=ttl * 5) == follower
    recovery.record(time.time() - paused_at, bound=ttl * 2, what="leader SIGSTOPped -> another replica leads")
    # Work queued while the old leader sleeps: when it wakes it may try to place it, with its ended term.
    n = 2
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=rng.uniform(1.0, 2.0))
    assert_eventually(lambda: len(ledger.started(run.name)) >= 1, timeout=60)
    paused.signal(signal.SIGCONT)
    resumed_at = time.time()
    assert_eventually(lambda: leaders(list(processes)) == [follower], timeout=ttl * 5)
    recovery.record(time.time() - resumed_at, bound=ttl * 2, what="paused leader resumed -> it has stepped down")
    run.wait()
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    for placement in federation.placements(run.name):
        assert placement.term != old_term, f"seed={seed}: the paused leader placed {placement} after its term ended"
        assert placement.term is not None


@pytest.mark.timeout(400)
@pytest.mark.seeds(1)
def test_a_rolling_restart_of_every_replica_under_load_fails_no_run(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    ttl = 2.0
    processes = federation.start_replicas(3, ttl)
    endpoints = list(processes)
    federation.start_agent("a", gateway=rotated(endpoints, endpoints[0]))
    federation.start_agent("b", gateway=rotated(endpoints, endpoints[1]))
    flyte.init(endpoint=rotated(endpoints, endpoints[2]), api_key=federation.tokens["admin"], insecure=True)
    program = workload(federation, f"rolling_{seed}")
    ledger = Ledger(federation.root / "ledger.jsonl")
    runs = []
    for endpoint, process in processes.items():
        # A run in flight through each restart, and another submitted while the replica is down.
        runs.append(flyte.run(program.main, n=2, ledger=str(ledger.path), hold=rng.uniform(1.0, 2.0)))
        assert_eventually(lambda: len(ledger.started(runs[-1].name)) >= 1, timeout=60)
        began = time.time()
        process.stop()
        runs.append(flyte.run(program.main, n=1, ledger=str(ledger.path), hold=0.5))
        process.start(LISTENING)
        assert_eventually(lambda: len(leaders(endpoints)) == 1, timeout=ttl * 5)
        recovery.record(time.time() - began, bound=30.0, what=f"replica {endpoint} restarted under load")
    for run in runs:
        run.wait()
        assert federation.run(run.name).phase.value == "succeeded", f"seed={seed}: {run.name} did not succeed"
        check_invariants(federation, run.name, ledger, seed)


@pytest.mark.timeout(300)
@pytest.mark.seeds(1)
def test_replicas_on_a_three_member_etcd_ride_out_a_member_killed_under_load(
    tmp_path: Path, etcd_cluster: EtcdCluster, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    federation = Federation(tmp_path / "fed", etcd_cluster.members[0], members=etcd_cluster.url)
    federation.root.mkdir()
    try:
        processes = federation.start_replicas(2, 2.0)
        endpoints = list(processes)
        federation.start_agent("a", gateway=rotated(endpoints, endpoints[0]))
        federation.start_agent("b", gateway=rotated(endpoints, endpoints[1]))
        flyte.init(endpoint=",".join(endpoints), api_key=federation.tokens["admin"], insecure=True)
        program = workload(federation, f"members_{seed}")
        ledger = Ledger(federation.root / "ledger.jsonl")
        n = 3
        run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=rng.uniform(2.0, 3.0))
        assert_eventually(lambda: len(ledger.started(run.name)) >= 1, timeout=60)
        victim = etcd_cluster.members[rng.randrange(len(etcd_cluster.members))]
        killed_at = time.time()
        victim.kill()
        during = flyte.run(program.main, n=1, ledger=str(ledger.path), hold=0.5)
        during.wait()
        recovery.record(time.time() - killed_at, bound=60.0, what="an etcd member killed -> a new run completes")
        victim.start()
        run.wait()
        for each in (run, during):
            assert federation.run(each.name).phase.value == "succeeded", f"seed={seed}: {each.name}"
            check_invariants(federation, each.name, ledger, seed)
        assert run.outputs() == (expected(n),), f"seed={seed}"
        assert len(leaders(endpoints)) == 1
    finally:
        federation.close()

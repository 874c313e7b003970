"""Fault matrix: gateway replicas on one etcd. A client configured with every replica's endpoint rides out the one
it talks to dying: requests and the run's watch go on at another replica, and nothing the user sees fails."""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from federation import Federation, Ledger, Recovery, check_invariants, expected, workload
from waiting import assert_eventually

import flyte
from flyte._client import client_for

pytestmark = pytest.mark.timeout(120)


def refused_endpoint() -> str:
    """An address nothing listens on (a replica that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


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
    federation.gateway_env["FLYTE_LEADER_TTL"] = str(ttl)
    federation.start_gateway()
    _, second = federation.start_replica()
    _, third = federation.start_replica()
    assert federation.gateway is not None
    processes = {federation.endpoint: federation.gateway, second: federation.replicas[0], third: federation.replicas[1]}
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

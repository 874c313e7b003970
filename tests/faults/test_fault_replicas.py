"""Fault matrix: gateway replicas on one etcd. A client configured with every replica's endpoint rides out the one
it talks to dying: requests and the run's watch go on at another replica, and nothing the user sees fails."""

from __future__ import annotations

import random
import socket
import time
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

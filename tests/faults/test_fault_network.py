"""Fault matrix rows 5 and 7: an agent inside a network namespace, joined to the gateway by a veth pair, is cut
off (link down) or given a bad link (`tc netem`, or a user-space relay where the kernel has no netem). The gateway
listens only on the veth's host-side private address, which the other agent, the test's client and the workers
reach as well."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from federation import (
    FIRST_SYSTEM_BACKOFF,
    Federation,
    Ledger,
    Link,
    Recovery,
    SlowLossyRelay,
    check_invariants,
    expected,
    namespace_link,
    netem_unavailable,
    netns_unavailable,
    placed_again_at,
    workload,
)
from prerequisites import IPROUTE_INSTALL, require
from waiting import assert_eventually

import flyte

pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def link(federation: Federation) -> Iterator[Link]:
    require(netns_unavailable(), IPROUTE_INSTALL)
    token = uuid.uuid4().hex[:6]
    with namespace_link(token, int(token, 16) % 16384) as made:
        try:
            yield made
        finally:
            federation.close()  # the agent inside goes before its namespace


def start(federation: Federation, link: Link) -> None:
    """The gateway on the veth's host side; agent `cut` in the namespace, agent `safe` on the host."""
    federation.host = link.host_ip
    federation.start_gateway()
    federation.start_agent("cut", netns=link.ns)
    federation.start_agent("safe")
    federation.connect()


def launch(federation: Federation, name: str, n: int, hold: float) -> tuple[Any, Ledger]:
    program = workload(federation, name)
    ledger = Ledger(federation.root / "ledger.jsonl")
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=hold)
    assert_eventually(lambda: {e.cluster for e in ledger.started()} >= {"cut", "safe"}, timeout=60)
    return run, ledger


@pytest.mark.seeds(1)
def test_a_cut_past_the_lease_moves_the_work_and_refuses_late_events(
    federation: Federation, link: Link, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    start(federation, link)
    ttl = federation.lease_ttl
    # The steps end while the link is down: their results can only arrive late, after the work has moved.
    hold = ttl + 1.0
    run, ledger = launch(federation, f"cut_long_{seed}", n=4, hold=hold)
    cut_at = time.time()
    link.cut()
    time.sleep(hold + rng.uniform(1.0, 2.0))  # the cut is the fault; its length is drawn from the seed
    link.restore()
    assert run.outputs() == (expected(4),), f"seed={seed}"
    name = run.name
    check_invariants(federation, name, ledger, seed)
    # The attempts the cut caught running (a step that ended just before it had nothing to lose).
    ended_before = {(e.action, e.attempt) for e in ledger.entries(name) if e.event == "end" and e.t < cut_at}
    cut_off = [
        e
        for e in ledger.started(name)
        if e.cluster == "cut" and e.t < cut_at and (e.action, e.attempt) not in ended_before
    ]
    assert cut_off, f"seed={seed}: the cut caught no running attempt"
    final = {a.name: a for a in federation.actions(name)}
    for entry in cut_off:
        action = final[entry.action]
        assert action.cluster == "safe", f"seed={seed}: {entry.action} did not move: {action}"
        assert action.attempts == entry.attempt + 1
        # The late result of the cut attempt was refused: the recorded one is the moved attempt's.
        assert action.phase.value == "succeeded"
    ended = {(e.action, e.attempt) for e in ledger.entries(name) if e.event == "end"}
    assert any((e.action, e.attempt) in ended for e in cut_off), f"seed={seed}: no cut attempt finished late"
    moved = max(placed_again_at(federation, name, e.action, e.attempt + 1) for e in cut_off)
    recovery.record(moved - cut_at, bound=2 * ttl + FIRST_SYSTEM_BACKOFF, moved=len(cut_off))


@pytest.mark.seeds(1)
def test_a_cut_shorter_than_the_lease_costs_no_attempt(federation: Federation, link: Link, seed: int) -> None:
    rng = random.Random(seed)
    start(federation, link)
    run, ledger = launch(federation, f"cut_short_{seed}", n=4, hold=rng.uniform(2.0, 3.0))
    link.cut()
    time.sleep(rng.uniform(0.3, federation.lease_ttl / 3))  # the cut is the fault
    link.restore()
    assert run.outputs() == (expected(4),), f"seed={seed}"
    name = run.name
    check_invariants(federation, name, ledger, seed)
    attempts = {a.name: a.attempts for a in federation.actions(name)}
    assert set(attempts.values()) == {1}, f"seed={seed}: a short cut cost attempts: {attempts}"


@pytest.mark.seeds(1)
def test_a_slow_lossy_link_loses_and_duplicates_nothing(federation: Federation, link: Link, seed: int) -> None:
    """300 ms delay and 10% loss on the cut agent's link: `tc netem` inside its namespace where the kernel has the
    netem qdisc, else the same in user space (`SlowLossyRelay`, between the namespace and the gateway)."""
    relay = None
    if netem_unavailable(link) is None:
        link.netem("delay", "300ms", "loss", "10%")
        start(federation, link)
    else:
        federation.host = link.host_ip
        federation.start_gateway()
        relay = SlowLossyRelay(link.host_ip, (link.host_ip, federation.port), delay=0.3, loss=0.1, seed=seed)
        federation.start_agent("cut", netns=link.ns, gateway=f"http://{link.host_ip}:{relay.port}")
        federation.start_agent("safe")
        federation.connect()
    try:
        run, ledger = launch(federation, f"netem_{seed}", n=4, hold=1.0)
        assert run.outputs() == (expected(4),), f"seed={seed}"
        check_invariants(federation, run.name, ledger, seed)
        assert relay is None or relay.held > 0, "the agent's traffic did not go through the bad link"
    finally:
        federation.close()  # the agent goes before its link's relay
        if relay is not None:
            relay.close()

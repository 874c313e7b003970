"""Fault matrix rows 4, 10 and 11: the store itself fails. etcd stops for 20 s, a watch falls behind a compaction,
etcd runs out of space. The gateway says so (503 and not ready, 507 over quota), loses nothing it acknowledged,
writes nothing half, and recovers when the store does."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from etcd3aio import AlarmType
from etcd3aio.connections import ConnectionManager
from etcd3aio.maintenance import MaintenanceService
from etcd_process import EtcdProcess
from federation import (
    FIRST_SYSTEM_BACKOFF,
    Federation,
    Ledger,
    Recovery,
    check_invariants,
    expected,
    require_etcd,
    workload,
)
from processes import pid_alive
from waiting import assert_eventually

import flyte
from flyte._client import GatewayError, call_sync, client_for
from gateway.store import QuotaExceeded, open_store

pytestmark = pytest.mark.timeout(150)

OUTAGE = 20.0
"""How long etcd stays down in row 4 (the issue's figure)."""


def get(fed: Federation, path: str, token: str | None = "admin") -> tuple[int, Any]:
    headers = {"Authorization": "Bearer " + fed.tokens[token]} if token else {}
    request = urllib.request.Request(fed.endpoint + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ready(fed: Federation) -> bool:
    return get(fed, "/readyz", None)[0] == 200


@pytest.mark.seeds(1)
def test_a_store_outage_is_a_503_loses_nothing_and_recovers(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    rng = random.Random(seed)
    federation.start_gateway()
    for name in ("a", "b"):
        federation.start_agent(name)
    federation.connect()
    program = workload(federation, f"etcd_outage_{seed}")
    ledger = Ledger(federation.root / "ledger.jsonl")
    n, hold = rng.randint(2, 4), rng.uniform(2.0, 4.0)
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=hold)
    # Acknowledged just before the outage: these must all be there after it.
    acknowledged = [flyte.run(program.main, n=1, ledger=str(ledger.path), hold=0.0).name for _ in range(3)]
    assert_eventually(lambda: len(ledger.started(run.name)) >= n, timeout=60)
    # A user following the run through the outage: the gateway's watch fails with its store, and the user's resumes.
    following = threading.Event()
    follower = ThreadPoolExecutor(1).submit(run.wait, on_change=lambda _: following.set())
    assert following.wait(timeout=30), f"seed={seed}: the run's watch never opened"
    stopped_at = time.monotonic()
    federation.etcd.stop()
    assert_eventually(lambda: not ready(federation), timeout=15)
    status, answer = get(federation, f"/api/v1/runs/{run.name}")
    assert (status, answer["code"]) == (503, "store_unavailable"), answer
    # The outage is the fault: it lasts its length whatever else happens meanwhile.
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
    federation.etcd.start()
    back = time.monotonic()
    assert_eventually(lambda: ready(federation), timeout=30)
    recovery.record(time.monotonic() - back, bound=2 * federation.lease_ttl + FIRST_SYSTEM_BACKOFF, what="ready")
    follower.result(timeout=60)
    assert run.outputs() == (expected(n),), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)
    for name in acknowledged:
        assert_eventually(lambda name=name: federation.run(name).phase.is_terminal, timeout=60)  # type: ignore[misc]
        check_invariants(federation, name, ledger, seed)


QUOTA = 16 * 1024 * 1024


@pytest.fixture
def small_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """An etcd with a small space quota, so a test can fill it."""
    require_etcd()
    server = EtcdProcess(tmp_path / "etcd-small", extra_args=[f"--quota-backend-bytes={QUOTA}"]).start()
    try:
        yield server
    finally:
        server.stop()


async def fill(url: str) -> int:
    """Fill the store with 1 MB values until etcd refuses (its NOSPACE alarm); returns how many it took."""
    store = await open_store(url)
    try:
        for i in range(4 * QUOTA // 1_000_000):
            try:
                await store.put(f"/filler/{i}", os.urandom(1_000_000))
            except QuotaExceeded:
                return i
        raise AssertionError("etcd never reached its quota")
    finally:
        await store.close()


async def free_space(url: str, port: int, filled: int) -> None:
    """What an operator does: delete, compact, defragment, then disarm the NOSPACE alarm."""
    store = await open_store(url)
    channel = ConnectionManager([f"127.0.0.1:{port}"]).get_channel()
    try:
        for i in range(filled + 1):
            await store.delete(f"/filler/{i}")
        await store.compact(await store.revision())
        maintenance = MaintenanceService(channel)
        await maintenance.defragment(timeout=30)
        # As `etcdctl alarm disarm` does: each raised alarm, by the member that raised it.
        for alarm in (await maintenance.alarms(timeout=10)).alarms:
            await maintenance.alarm_deactivate(AlarmType(alarm.alarm), member_id=alarm.memberID, timeout=10)
    finally:
        await channel.close()
        await store.close()


@pytest.mark.seeds(1)
def test_a_store_over_its_quota_is_a_clear_error_with_no_partial_run(
    tmp_path: Path, small_etcd: EtcdProcess, seed: int, recovery: Recovery
) -> None:
    federation = Federation(tmp_path / "fed", small_etcd)
    federation.root.mkdir()
    try:
        federation.start_gateway()
        federation.start_agent("a")
        federation.connect()
        program = workload(federation, f"quota_{seed}")
        ledger = Ledger(federation.root / "ledger.jsonl")
        # Deployed and working before the store fills up.
        assert flyte.run(program.main, n=1, ledger=str(ledger.path), hold=0.0).outputs() == (expected(1),)
        runs_before = {r.name for r in call_sync(federation.client.list_runs(limit=1000))}
        filled = asyncio.run(fill(small_etcd.url))
        assert filled > 0
        with pytest.raises(GatewayError) as refused:
            flyte.with_runcontext(name=f"quota-{seed}").run(program.main, n=1, ledger=str(ledger.path), hold=0.0)
        assert (refused.value.status, refused.value.code) == (507, "store_quota"), f"seed={seed}: {refused.value}"
        assert "quota" in refused.value.message
        # Nothing of the refused run was written: no run, no root action.
        assert {r.name for r in call_sync(federation.client.list_runs(limit=1000))} == runs_before
        status, _ = get(federation, f"/api/v1/runs/quota-{seed}")
        assert status == 404
        freed = time.monotonic()
        asyncio.run(free_space(small_etcd.url, small_etcd.port, filled))
        run = flyte.run(program.main, n=2, ledger=str(ledger.path), hold=0.0)
        recovery.record(time.monotonic() - freed, bound=2 * federation.lease_ttl + FIRST_SYSTEM_BACKOFF)
        assert run.outputs() == (expected(2),), f"seed={seed}"
        check_invariants(federation, run.name, ledger, seed)
    finally:
        federation.close()


async def compact_now(url: str) -> int:
    store = await open_store(url)
    try:
        revision = await store.revision()
        await store.compact(revision)
        return revision
    finally:
        await store.close()


@pytest.mark.seeds(1)
def test_a_watch_behind_a_compaction_relists_and_misses_no_assignment_or_abort(
    federation: Federation, seed: int
) -> None:
    rng = random.Random(seed)
    federation.lease_ttl = 60.0  # the pause below is not a lost agent
    federation.start_gateway()
    federation.start_agent("a")
    federation.connect()
    program = workload(federation, f"compacted_{seed}")
    ledger = Ledger(federation.root / "ledger.jsonl")
    doomed = flyte.run(program.main, n=1, ledger=str(ledger.path), hold=120.0)
    assert_eventually(lambda: len(ledger.started(doomed.name)) == 1, timeout=60)
    (doomed_step,) = ledger.started(doomed.name)
    _, replica = federation.start_replica()
    gateway = federation.gateway
    assert gateway is not None
    offset = gateway.size()
    # The gateway that serves the agent stops, and its store connection breaks (etcd restarts) ...
    gateway.signal(signal.SIGSTOP)
    try:
        federation.etcd.kill()
        federation.etcd.start()
        # ... while another replica takes a new run (an assignment to make) and an abort (one to deliver) ...
        flyte.init(endpoint=replica, api_key=federation.tokens["admin"], insecure=True)
        n = rng.randint(1, 3)
        fresh = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=0.2)
        call_sync(client_for().abort_run(doomed.name, "the fault matrix aborts it while the gateway is away"))
        # ... and the history it would resume from is compacted away.
        asyncio.run(compact_now(federation.etcd.url))
    finally:
        gateway.signal(signal.SIGCONT)
    gateway.wait_for(re.compile(r"the action watch failed \(Compacted"), within=30, offset=offset)
    assert fresh.outputs() == (expected(n),), f"seed={seed}: the new run's assignments were missed"
    check_invariants(federation, fresh.name, ledger, seed)
    assert_eventually(lambda: not pid_alive(doomed_step.pid), timeout=30)
    assert federation.run(doomed.name).phase.value == "aborted"

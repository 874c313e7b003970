"""The fault matrix's blob-store row (issue 19): the object store down for 20 s mid-run. The steps' outputs (values
over 64 KiB, so blobs) cannot be written; a worker's transfer retries for its outage budget, then fails the attempt
as a system error (`BlobStoreUnavailable`), which the gateway retries on the system budget; once the store is back
the run ends with every result, each attempt started once. A real gateway, agents and workers on etcd and a real
S3 server (SeaweedFS) that is killed and restarted on the same port and data."""

from __future__ import annotations

import random
import time

import pytest
from federation import Federation, Ledger, Recovery, check_invariants
from s3_server import S3Server
from waiting import assert_eventually

import flyte

pytestmark = pytest.mark.timeout(180)

OUTAGE = 20.0
"""How long the store stays down (the issue's figure)."""
BUDGET = 6.0
"""A worker's blob-transfer outage budget here (`FLYTE_STORE_OUTAGE_SECONDS`; 60 s by default, which would ride
out this outage inside the attempt): shorter than the outage, so attempts fail as system errors during it."""

PROGRAM = """
import asyncio
import json
import os
import time

import flyte

home = flyte.TaskEnvironment("blob_outage_main")
work = flyte.TaskEnvironment("blob_outage_work")
home.add_dependency(work)
SIZE = 80 * 1024


def note(ledger: str, event: str) -> None:
    ctx = flyte.ctx()
    line = {"event": event, "run": ctx.action.run_name, "action": ctx.action.name, "attempt": ctx.attempt,
            "pid": os.getpid(), "cluster": os.environ.get("FLYTE_CLUSTER"), "t": time.time()}
    with open(ledger, "a") as out:
        out.write(json.dumps(line) + "\\n")


@work.task
async def step(i: int, ledger: str, hold: float) -> str:
    note(ledger, "start")
    await asyncio.sleep(hold)
    note(ledger, "end")
    return str(i * i).rjust(SIZE, "0")  # over 64 KiB: the output is a blob


@home.task
async def main(n: int, ledger: str, hold: float) -> int:
    return sum(int(s.lstrip("0") or "0") for s in await asyncio.gather(*(step(i, ledger, hold) for i in range(n))))
"""


@pytest.mark.seeds(1)
def test_the_blob_store_down_mid_run_retries_attempts_as_system_errors_and_loses_nothing(
    federation: Federation, s3_fresh: S3Server, seed: int, recovery: Recovery, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    # The gateway, the agents and their workers take the environment of this process.
    for name, value in {**s3_fresh.env(), "FLYTE_STORE_OUTAGE_SECONDS": str(BUDGET)}.items():
        monkeypatch.setenv(name, value)
    federation.blobs = f"s3://{s3_fresh.bucket}/faults"
    federation.start_gateway()
    for name in ("a", "b"):
        federation.start_agent(name)
    federation.connect()
    program = federation.load(f"blob_outage_{seed}", PROGRAM)
    ledger = Ledger(federation.root / "ledger.jsonl")
    n, hold = rng.randint(2, 4), rng.uniform(2.0, 4.0)
    run = flyte.run(program.main, n=n, ledger=str(ledger.path), hold=hold)
    assert_eventually(lambda: len(ledger.started(run.name)) >= n, timeout=60)
    stopped_at = time.monotonic()
    s3_fresh.stop()
    # The steps end during the outage: their outputs cannot be stored, and the attempts fail as system errors.
    assert_eventually(lambda: any(a.system_failures for a in federation.actions(run.name)), timeout=OUTAGE)
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))  # the outage is the fault: it lasts its length
    s3_fresh.start()
    back = time.monotonic()
    assert run.outputs() == (sum(i * i for i in range(n)),), f"seed={seed}"
    recovery.record(time.monotonic() - back, bound=30.0, what="run done")
    failed = [a for a in federation.actions(run.name) if a.system_failures]
    assert failed, f"seed={seed}: no attempt failed during the outage"
    assert all(a.user_failures == 0 for a in federation.actions(run.name)), f"seed={seed}"
    check_invariants(federation, run.name, ledger, seed)

"""Fault matrix row 16: an attempt ends while the store is down, and what the agent reports about it (an OOM: only
the agent can tell, the worker is dead) still reaches the parent as what it was. The agent's outbox keeps the event
until the gateway has applied it, through the gateway's failed writes and the agent's reconnects, and the new session
leaves the attempt to that event instead of failing it as a lost cluster."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request

import pytest
from federation import Federation, Ledger, Recovery, check_invariants
from prerequisites import CGROUPS_INSTALL, require
from processes import pid_alive
from waiting import assert_eventually

import flyte
from flyte._wire import Phase

pytestmark = pytest.mark.timeout(150)

OUTAGE = 10.0
"""How long etcd stays down: several agent heartbeats, so the agent's session breaks and it retries meanwhile."""

OOM = """
import asyncio
import json
import os
import time

import flyte

home = flyte.TaskEnvironment("{env}-main")
small = flyte.TaskEnvironment("{env}-small", resources=flyte.Resources(memory="64Mi"))
home.add_dependency(small)


@small.task
async def hog(ledger: str, go: str) -> int:
    ctx = flyte.ctx()
    line = {{"event": "start", "run": ctx.action.run_name, "action": ctx.action.name, "attempt": ctx.attempt,
             "pid": os.getpid(), "cluster": os.environ.get("FLYTE_CLUSTER"), "t": time.time()}}
    with open(ledger, "a") as out:
        out.write(json.dumps(line) + "\\n")
    while not os.path.exists(go):  # the test lets it go once the store is down
        await asyncio.sleep(0.05)
    block = bytearray(200 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


@home.task
async def main(ledger: str, go: str) -> str:
    try:
        await hog(ledger, go)
    except flyte.errors.OOMError:
        return "OOMError"
    return "no OOM"
"""


def ready(fed: Federation) -> bool:
    try:
        with urllib.request.urlopen(fed.endpoint + "/readyz", timeout=10) as response:
            return bool(json.loads(response.read())["ready"])
    except urllib.error.HTTPError:
        return False


@pytest.mark.seeds(1)
def test_an_oom_while_the_store_is_down_reaches_the_parent_as_an_oom(
    federation: Federation, seed: int, recovery: Recovery
) -> None:
    from agent.backends._cgroups import shared

    require(None if shared().available() else "no writable cgroup v1 memory hierarchy on this machine", CGROUPS_INSTALL)
    rng = random.Random(seed)
    # The agent reconnects within its lease once the store is back (its retries wait up to 5 s): the work is its own.
    federation.lease_ttl = 10.0
    federation.start_gateway()
    federation.start_agent("a")
    federation.connect()
    program = federation.load(f"faults_oom_{seed}", OOM.format(env=f"oom-{seed}"))
    ledger = Ledger(federation.root / "ledger.jsonl")
    go = federation.root / "go"
    run = flyte.run(program.main, ledger=str(ledger.path), go=str(go))
    assert_eventually(lambda: len(ledger.started(run.name)) == 1, timeout=60)
    (hog,) = ledger.started(run.name)
    federation.etcd.stop()
    stopped_at = time.monotonic()
    # The seed draws when in the outage it runs out of memory: before or after the gateway notices (a failed
    # heartbeat closes the agent's session within about a second), so its event meets a failed write or no socket.
    time.sleep(rng.uniform(0.0, 2.0))
    go.touch()
    # Only the agent knows why it ended: its worker is dead.
    assert_eventually(lambda: not pid_alive(hog.pid), timeout=15)
    assert not ready(federation), f"seed={seed}: the store came back too soon"
    # The outage is the fault: it lasts its length whatever else happens meanwhile.
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
    federation.etcd.start()
    back = time.time()
    assert run.outputs() == ("OOMError",), f"seed={seed}: the parent did not see the OOM"
    (action,) = [a for a in federation.actions(run.name) if a.name == hog.action]
    assert action.error is not None
    assert (action.phase, action.error.error_type) == (Phase.FAILED, "OOMError"), f"seed={seed}: {action.error}"
    assert (action.attempts, action.system_failures) == (1, 0), f"seed={seed}: the OOM was taken for a lost cluster"
    check_invariants(federation, run.name, ledger, seed, user_failed={hog.action})
    (ended,) = [v for v in federation.history(run.name)[hog.action] if v.phase is Phase.FAILED]
    assert ended.updated_at is not None
    # The agent's reconnect backoff (5 s at most), its new session and its outbox's next flush: within the lease,
    # which is what keeps the attempt the agent's.
    recovery.record(ended.updated_at - back, bound=federation.lease_ttl, what="store back -> the OOM recorded")

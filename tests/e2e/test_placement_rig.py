"""Placement through a rig of three agents in three regions: actions land where the policy says, a cordoned
cluster takes no new work, a closed fallback tier makes work wait (with its reason visible) until it opens, a demand
no cluster could ever hold fails at once, a new policy applies without a restart, and a drain moves placed work
that has not started."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_rig import Rig, start_rig
from waiting import assert_eventually

import flyte
from flyte._client import call_sync, client_for

pytestmark = pytest.mark.timeout(180)

CLUSTERS = "us-east,eu-west,ap-south"

POLICY = """\
version: home-first
weights:
  least_loaded: 1
tiers:
  - name: home
    regions: [us-east]
  - name: europe
    regions: ["eu-*"]
    after_seconds: 3
  - name: anywhere
    after_seconds: 3600
"""

ASIA_FIRST = """\
version: asia-first
tiers:
  - name: asia
    regions: ["ap-*"]
  - name: rest
"""

PROGRAM = """
import flyte

env = flyte.TaskEnvironment("placed_env")
huge_env = flyte.TaskEnvironment("huge_env", resources=flyte.Resources(cpu=64))


@env.task
async def hello(x: int) -> int:
    return x + 1


# Retries would be spent in vain: a demand no cluster can ever hold fails once, not once per retry.
@huge_env.task(retries=2)
async def huge() -> int:
    return 0
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("placement-rig")
    (root / "policy.yaml").write_text(POLICY)
    rig = start_rig(root, "--policy", str(root / "policy.yaml"), clusters=CLUSTERS)
    try:
        yield rig
    finally:
        rig.flyte("rig", "down")


@pytest.fixture(scope="module")
def program(rig: Rig):  # type: ignore[no-untyped-def]
    rig.connect()
    module = rig.load("placement_program", PROGRAM)
    flyte.deploy(module.env)
    flyte.deploy(module.huge_env)
    return module


def _root(run_name: str):  # type: ignore[no-untyped-def]
    return next(a for a in call_sync(client_for().list_actions(run_name)) if a.name == "a0")


def test_actions_land_in_the_first_tier(rig: Rig, program) -> None:  # type: ignore[no-untyped-def]
    rig.connect()
    run = flyte.run(program.hello, x=1)
    assert run.outputs() == (2,)
    assert _root(run.name).cluster == "us-east"
    shown = rig.flyte("get", "placement", run.name)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(line.startswith("us-east") and line.rstrip().endswith("chosen") for line in lines), shown.stdout
    assert any(line.startswith("eu-west") and "tier closed: europe" in line for line in lines), shown.stdout
    assert "home-first" in shown.stdout


def test_a_cordoned_cluster_takes_no_new_work_and_the_next_tier_opens(rig: Rig, program) -> None:  # type: ignore[no-untyped-def]
    rig.connect()
    cordon = rig.flyte("cluster", "cordon", "us-east", "--reason", "kernel upgrade")
    assert cordon.returncode == 0, cordon.stderr
    try:
        clusters = rig.flyte("get", "clusters")
        assert "cordoned: kernel upgrade" in clusters.stdout, clusters.stdout
        started = time.time()
        run = flyte.run(program.hello, x=2)
        # While the europe tier is closed, the action waits and says why.
        assert_eventually(lambda: "cordoned" in (_root(run.name).waiting or ""), timeout=10)
        listing = rig.flyte("get", "actions", run.name)
        assert "waiting" in listing.stdout or _root(run.name).phase != "queued", listing.stdout
        assert run.outputs() == (3,)
        root = _root(run.name)
        assert root.cluster == "eu-west"
        decision = call_sync(client_for().request("GET", f"/api/v1/runs/{run.name}/actions/a0/placement"))
        assert decision["cluster"] == "eu-west"
        assert decision["verdicts"]["us-east"] == "cordoned"
        assert decision["decided_at"] - started >= 3.0, "placed before its tier opened"
        assert root.waiting is None
    finally:
        assert rig.flyte("cluster", "uncordon", "us-east").returncode == 0
    run = flyte.run(program.hello, x=3)
    assert run.outputs() == (4,)
    assert _root(run.name).cluster == "us-east"


def test_a_demand_no_cluster_can_ever_hold_fails_at_once(rig: Rig, program) -> None:  # type: ignore[no-untyped-def]
    rig.connect()
    run = flyte.run(program.huge)
    with pytest.raises(flyte.errors.NonRecoverableError):
        run.wait()
    root = _root(run.name)
    assert root.phase == "failed"
    assert root.error is not None
    assert root.error.code == "NeverFits"
    assert "cpu 64" in root.error.message
    assert root.attempts == 1


def test_a_new_policy_applies_without_a_restart_and_simulate_shows_the_change(rig: Rig, program) -> None:  # type: ignore[no-untyped-def]
    rig.connect()
    new = rig.cwd / "asia.yaml"
    new.write_text(ASIA_FIRST)
    simulated = rig.flyte("policy", "simulate", "--policy", str(new), "--since", "1h")
    assert simulated.returncode == 0, simulated.stderr
    assert "would change" in simulated.stdout
    assert "ap-south" in simulated.stdout, simulated.stdout

    bad = rig.cwd / "bad.yaml"
    bad.write_text("version: broken\nweights:\n  warm: -1\n")
    refused = rig.flyte("policy", "apply", str(bad))
    assert refused.returncode == 2
    assert "bad.yaml line 3: field weights.warm" in refused.stderr

    applied = rig.flyte("policy", "apply", str(new))
    assert applied.returncode == 0, applied.stderr
    try:
        run = flyte.run(program.hello, x=4)
        assert run.outputs() == (5,)
        assert _root(run.name).cluster == "ap-south"
        assert rig.flyte("policy", "get").stdout.startswith("version: asia-first")
    finally:
        rig.flyte("policy", "apply", str(rig.cwd / "policy.yaml"))


HOME_THEN_EUROPE = """\
version: home-then-europe
tiers:
  - name: home
    regions: [us-east]
  - name: europe
    regions: [eu-west]
"""


def test_a_drain_moves_placed_work_that_has_not_started(tmp_path: Path) -> None:
    """us-east's agent is slow to start anything (a failpoint holds each attempt as a slow code download would):
    draining it moves the placed action to eu-west as its next attempt, without spending a retry."""
    (tmp_path / "policy.yaml").write_text(HOME_THEN_EUROPE)
    rig = start_rig(tmp_path, "--policy", str(tmp_path / "policy.yaml"), FLYTE_FAILPOINT_SLOW_START="us-east=120")
    try:
        rig.connect()
        module = rig.load("drain_program", PROGRAM)
        run = flyte.run(module.hello, x=10)
        assert_eventually(lambda: _root(run.name).phase == "placed", timeout=30)
        assert _root(run.name).cluster == "us-east"
        drained = rig.flyte("cluster", "drain", "us-east", "--reason", "decommission")
        assert drained.returncode == 0, drained.stderr
        assert run.outputs() == (11,)
        root = _root(run.name)
        assert root.cluster == "eu-west"
        assert root.attempts == 2
        assert (root.user_failures, root.system_failures) == (0, 0), "a drain spends no retry"
        clusters = rig.flyte("get", "clusters").stdout
        assert "draining: decommission" in clusters, clusters
    finally:
        rig.flyte("rig", "down")

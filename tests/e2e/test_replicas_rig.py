"""`flyte rig up --replicas 3`: one etcd and three gateways on it, the agents and the config given every gateway;
`flyte rig status` says which replica leads; a program runs; the leader killed, another leads and work still runs;
`flyte rig down` stops everything, etcd included."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from prerequisites import ETCD_INSTALL, on_path, require
from test_rig import EXAMPLES, Rig, run_example
from waiting import assert_eventually

pytestmark = pytest.mark.timeout(240)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_rig_up_replicas_runs_three_gateways_on_one_etcd_and_a_killed_leader_is_replaced(tmp_path: Path) -> None:
    require(on_path("etcd"), ETCD_INSTALL)
    (tmp_path / "home").mkdir()
    (tmp_path / ".flyteignore").write_text("flyte-home/\nhome/\n")
    env = {
        **os.environ,
        "FLYTE_HOME": str(tmp_path / "flyte-home"),
        "HOME": str(tmp_path / "home"),
        "FLYTE_LEADER_TTL": "2",
    }
    rig = Rig(tmp_path, env)
    up = rig.flyte("rig", "up", "--replicas", "3", "--clusters", "us-east,eu-west", timeout=150)
    assert up.returncode == 0, up.stderr + up.stdout
    try:
        assert re.search(r"rig up: gateways (http://\S+, ){2}http://\S+ on etcd etcd://127\.0\.0\.1:\d+", up.stdout)
        state = json.loads((tmp_path / "flyte-home" / "rig" / "rig.json").read_text())
        pids: dict[str, int] = state["pids"]
        assert {"etcd", "gateway", "gateway-2", "gateway-3", "agent-us-east", "agent-eu-west"} == set(pids)
        config = (tmp_path / ".flyte" / "config.yaml").read_text()
        assert ",".join(state["endpoints"]) in config

        def leading() -> list[str]:
            """The replicas `rig status` says lead."""
            status = rig.flyte("rig", "status").stdout
            return re.findall(r"^gateway http://\S+: replica (gateway(?:-\d)?): leads$", status, re.MULTILINE)

        assert_eventually(lambda: len(leading()) == 1, timeout=30)
        (leader,) = leading()
        run_example(rig, next(p for p in EXAMPLES if p.stem == "sync_example"))
        os.kill(pids[leader], signal.SIGKILL)
        assert_eventually(lambda: len(leading()) == 1 and leading() != [leader], timeout=20)
        run_example(rig, next(p for p in EXAMPLES if p.stem == "sync_example"))
    finally:
        down = rig.flyte("rig", "down", timeout=60)
    assert down.returncode == 0, down.stderr
    assert "etcd" in down.stdout
    assert_eventually(lambda: all(_gone(pid) for pid in pids.values()), timeout=20)

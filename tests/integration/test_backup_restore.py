"""`flyte gateway backup` and `restore` as real commands between real stores: runs and task versions made on a
SQLite store come back from an etcd store restored from its backup, and back again into SQLite; blobs ride along
with `--with-blobs`; a store that holds keys is refused without `--force`, and a file that is no backup is refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from etcd_process import EtcdProcess
from gateway_api import Api, new_run, value
from processes import GatewayProcess

pytestmark = pytest.mark.timeout(120)


def flyte(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "FLYTE_HOME": str(home / "flyte")}
    return subprocess.run(
        [sys.executable, "-m", "flyte.cli", "gateway", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def _answers(gateway: GatewayProcess, runs: list[str], bundle: str) -> dict[str, Any]:
    """What the gateway says about the runs and task versions: the same before a backup and after a restore."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {gateway.token}"}) as http:
        api = Api(gateway.endpoint, http)
        answers: dict[str, Any] = {}
        for run in runs:
            status, summary = await api.call("GET", f"/api/v1/runs/{run}")
            assert status == 200, summary
            status, actions = await api.call("GET", f"/api/v1/runs/{run}/actions")
            assert status == 200
            answers[run] = (summary, [(a["name"], a["phase"], a["attempts"]) for a in actions])
        status, tasks = await api.call("GET", "/api/v1/tasks")
        assert status == 200
        answers["tasks"] = sorted(json.dumps(t, sort_keys=True) for t in tasks)
        status, answers["bundle"] = await api.call("GET", f"/api/v1/blobs/{bundle}")
        answers["bundle_status"] = status
        return answers


async def test_sqlite_to_etcd_and_back(tmp_path: Path, etcd_fresh: EtcdProcess) -> None:
    first = GatewayProcess(f"sqlite:{tmp_path / 'first.db'}", tmp_path / "first").start()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {first.token}"}) as http:
            api = Api(first.endpoint, http)
            ended = (await new_run(api, labels={"team": "ml"}))["name"]
            for phase, extra in (("running", {}), ("succeeded", {"output": value(7)})):
                status, _ = await api.call(
                    "POST", f"/api/v1/runs/{ended}/actions/a0/events", {"phase": phase, "attempt": 1, **extra}
                )
                assert status == 200
            queued = (await new_run(api))["name"]
        bundle = hashlib.sha256(b"bundle").hexdigest()
        before = await _answers(first, [ended, queued], bundle)
        backup = tmp_path / "backup.tar"
        blobs = first.home / "flyte" / "gateway" / "blobs"
        # Beside the running gateway: the SQLite file is only read.
        done = flyte("backup", "--store", first.store_url, "--with-blobs", str(blobs), str(backup), home=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "backed up" in done.stdout
    finally:
        first.stop()

    second_home = tmp_path / "second"
    second_blobs = second_home / "flyte" / "gateway" / "blobs"
    done = flyte("restore", "--store", etcd_fresh.url, "--with-blobs", str(second_blobs), str(backup), home=second_home)
    assert done.returncode == 0, done.stderr
    again = flyte("restore", "--store", etcd_fresh.url, str(backup), home=second_home)
    assert again.returncode != 0
    assert "already holds keys" in again.stderr
    assert "Traceback" not in again.stderr
    second = GatewayProcess(etcd_fresh.url, second_home).start()
    try:
        assert await _answers(second, [ended, queued], bundle) == before
    finally:
        second.stop()

    back = tmp_path / "back.jsonl"
    done = flyte("backup", "--store", etcd_fresh.url, str(back), home=tmp_path)
    assert done.returncode == 0, done.stderr
    third_home = tmp_path / "third"
    third_url = f"sqlite:{tmp_path / 'third.db'}"
    done = flyte("restore", "--store", third_url, str(back), home=third_home)
    assert done.returncode == 0, done.stderr
    refused = flyte("restore", "--store", third_url, "--with-blobs", str(tmp_path / "b"), str(back), home=third_home)
    assert refused.returncode != 0
    forced = flyte("restore", "--store", third_url, "--force", str(back), home=third_home)
    assert forced.returncode == 0, forced.stderr
    third = GatewayProcess(third_url, third_home).start()
    try:
        after = await _answers(third, [ended, queued], bundle)
    finally:
        third.stop()
    assert after["bundle_status"] == 404, "a backup without --with-blobs carries no blobs"
    assert {k: v for k, v in after.items() if not k.startswith("bundle")} == {
        k: v for k, v in before.items() if not k.startswith("bundle")
    }


def test_a_file_that_is_no_backup_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.jsonl"
    bogus.write_text('{"hello": "world"}\n')
    done = flyte("restore", "--store", f"sqlite:{tmp_path / 's.db'}", str(bogus), home=tmp_path)
    assert done.returncode != 0
    assert "not a gateway backup" in done.stderr
    assert "Traceback" not in done.stderr

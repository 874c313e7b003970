"""`flyte rig up --s3`: the rig starts its own S3 server (SeaweedFS) and keeps the gateway's blobs in it; the brief's
programs run; `flyte rig down` stops the server with the rest."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import obstore
import pytest
from obstore.store import S3Store
from prerequisites import WEED_INSTALL, require
from test_rig import EXAMPLES, Rig, run_example
from waiting import assert_eventually

from flyte._client import call_sync, client_for
from flyte.cli._s3_local import LocalS3, weed_binary

pytestmark = pytest.mark.timeout(240)


def test_rig_up_s3_keeps_blobs_in_its_own_s3_server_and_rig_down_stops_it(tmp_path: Path) -> None:
    require(None if weed_binary() else "no `weed` binary beside python or on PATH", WEED_INSTALL)
    (tmp_path / "home").mkdir()
    (tmp_path / ".flyteignore").write_text("flyte-home/\nhome/\n")
    env = {**os.environ, "FLYTE_HOME": str(tmp_path / "flyte-home"), "HOME": str(tmp_path / "home")}
    rig = Rig(tmp_path, env)
    up = rig.flyte("rig", "up", "--s3", "--clusters", "us-east", timeout=150)
    assert up.returncode == 0, up.stderr + up.stdout
    directory = tmp_path / "flyte-home" / "rig"
    try:
        served = re.search(
            r"blobs: s3://flyte/rig, and s3://flyte/rig/clusters/CLUSTER for each cluster's own, on the local S3"
            r" server http://127\.0\.0\.1:(\d+)",
            up.stdout,
        )
        assert served is not None, up.stdout
        keys = json.loads((directory / "s3.json").read_text())
        assert (directory / "s3.json").stat().st_mode & 0o777 == 0o600
        s3 = LocalS3(int(served.group(1)), keys["access_key"], keys["secret_key"])
        run_example(rig, next(p for p in EXAMPLES if p.stem == "sync_example"))
        store = S3Store(s3.bucket, config=s3.config(), client_options={"allow_http": True})
        stored = [meta["path"] for batch in obstore.list(store, "rig/blobs/") for meta in batch]
        assert stored, "the code bundle is in the rig's bucket"
        assert not [p for p in (directory / "blobs").rglob("*") if p.is_file()], "none in the rig's directory"
        # The agent registered its cluster's own store, on the same server (a prefix standing for a region's bucket).
        (cluster,) = call_sync(client_for().list_clusters())
        assert (cluster.blobs, cluster.blobs_endpoint) == ("s3://flyte/rig/clusters/us-east", s3.endpoint)
        pid = json.loads((directory / "rig.json").read_text())["pids"]["s3"]
    finally:
        down = rig.flyte("rig", "down", timeout=60)
    assert down.returncode == 0, down.stderr
    assert "s3" in down.stdout
    assert_eventually(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=20)
    assert not s3.ready(), "the S3 server is gone"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True

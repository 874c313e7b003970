"""The brief's programs, unchanged, through a rig whose gateway keeps its blobs in S3-compatible storage (a real
SeaweedFS server): code bundles and large values land in the bucket, none in the rig's blob directory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_server import S3Server
from test_rig import EXAMPLES, Rig, run_example, start_rig

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def s3_rig(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[tuple[Rig, str]]:
    prefix = f"rig-{uuid.uuid4().hex[:8]}"
    started = start_rig(
        tmp_path_factory.mktemp("rig"),
        "--blobs",
        f"s3://{s3_server.bucket}/{prefix}",
        clusters="us-east",
        **s3_server.env(),
    )
    try:
        yield started, prefix
    finally:
        started.flyte("rig", "down")


@pytest.mark.parametrize("program", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_with_blobs_in_s3(s3_rig: tuple[Rig, str], s3_server: S3Server, program: Path) -> None:
    rig, prefix = s3_rig
    assert all(a.phase == "succeeded" for a in run_example(rig, program).actions())
    stored = s3_server.keys(f"{prefix}/blobs/")
    assert stored, "the code bundle is in the bucket"
    assert not [k for k in s3_server.keys(f"{prefix}/uploads/")], "no upload left half-way"
    local = Path(rig.env["FLYTE_HOME"]) / "rig" / "blobs"
    assert not [p for p in local.rglob("*") if p.is_file()], "nothing in the rig's own blob directory"

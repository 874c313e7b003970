"""The brief's programs, unchanged, through a rig (two clusters) whose gateway keeps its blobs in S3-compatible
storage (a real SeaweedFS server): code bundles and large values land in the bucket, none in the rig's blob
directory, and a large File goes between the clusters and the store directly, not through the gateway."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_server import S3Server
from test_rig import EXAMPLES, Rig, run_example, start_rig
from test_tracing import wait_for_spans

import flyte
from flyte._wire import SpanRecord

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def s3_rig(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[tuple[Rig, str]]:
    prefix = f"rig-{uuid.uuid4().hex[:8]}"
    started = start_rig(
        tmp_path_factory.mktemp("rig"),
        "--blobs",
        f"s3://{s3_server.bucket}/{prefix}",
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


BIG_FILE = """
import hashlib
import os
import tempfile
from pathlib import Path

import flyte
from flyte.io import File

east = flyte.TaskEnvironment("big_east", placement=flyte.Placement(clusters=["us-east"]))
west = flyte.TaskEnvironment("big_west", placement=flyte.Placement(clusters=["eu-west"]))
east.add_dependency(west)


@east.task
async def produce(mib: int) -> tuple[File, str]:
    data = os.urandom(mib * 1024 * 1024)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "big.bin"
        path.write_bytes(data)
        return await File.from_local(path), hashlib.sha256(data).hexdigest()


@west.task
async def consume(f: File) -> str:
    with f.open_sync() as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@east.task
async def main(mib: int) -> bool:
    f, made = await produce(mib)
    return await consume(f) == made
"""


def blob_bytes(rig: Rig) -> dict[str, int]:
    """The gateway's count of blob bytes through its blob API, by direction."""
    state = json.loads((Path(rig.env["FLYTE_HOME"]) / "rig" / "rig.json").read_text())
    with urllib.request.urlopen(f"{state['endpoint']}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^flyte_gateway_blob_bytes_total\{direction="(\w+)"\} (\d+)$', text, re.MULTILINE)
    return {direction: int(count) for direction, count in found}


def test_a_50_mib_file_crosses_clusters_without_passing_through_the_gateway(
    s3_rig: tuple[Rig, str], s3_server: S3Server
) -> None:
    rig, prefix = s3_rig
    program = rig.load("big_file_program", BIG_FILE)
    rig.connect()
    before = blob_bytes(rig)
    run = flyte.run(program.main, mib=50)
    assert run.outputs() == (True,), "the bytes read on eu-west are the bytes written on us-east"
    after = blob_bytes(rig)
    # The file, and the program's code bundle, go straight between the clusters and the store.
    assert after == before, (before, after)
    # Written on us-east, so into us-east's own store (a prefix per cluster here), and read there in place by
    # eu-west: no copy in eu-west's store, none in the gateway's.
    east = s3_server.keys(f"{prefix}/clusters/us-east/blobs/")
    assert east, "the File's blob is in the writer's cluster's store"
    assert not set(k.rsplit("/", 1)[1] for k in east) & set(
        k.rsplit("/", 1)[1] for k in s3_server.keys(f"{prefix}/blobs/")
    )
    assert not s3_server.keys(f"{prefix}/clusters/eu-west/blobs/")
    # The read crossed regions, and the reader's trace says so, with the bytes.
    spans = wait_for_spans(run.name, lambda spans: big_cross_region_reads(spans, 50 * 1024 * 1024))
    (read,) = big_cross_region_reads(spans, 50 * 1024 * 1024)
    assert read.cluster == "eu-west"
    assert str(read.attributes["flyte.blob.store"]).endswith(f"{prefix}/clusters/us-east")


def big_cross_region_reads(spans: list[SpanRecord], size: int) -> list[SpanRecord]:
    return [
        s
        for s in spans
        if s.name == "blob download"
        and s.attributes.get("flyte.blob.cross_region") is True
        and s.attributes.get("flyte.blob.bytes") == size
    ]


NEAR_DATA = """
import os
import tempfile
from pathlib import Path

import flyte
from flyte.io import File

eu = flyte.TaskEnvironment("near_eu", placement=flyte.Placement(clusters=["eu-west"]))
anywhere = flyte.TaskEnvironment("near_any")
eu.add_dependency(anywhere)


@eu.task
async def produce(mib: int) -> File:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "data.bin"
        path.write_bytes(os.urandom(mib * 1024 * 1024))
        return await File.from_local(path)


@anywhere.task
async def consume(f: File) -> int:
    with f.open_sync() as handle:
        return len(handle.read())


@eu.task
async def main(mib: int) -> int:
    return await consume(await produce(mib))
"""


def test_data_locality_places_the_reader_where_its_input_file_is(rig_policy: Path, s3_rig: tuple[Rig, str]) -> None:
    rig, _ = s3_rig
    applied = rig.flyte("policy", "apply", str(rig_policy))
    assert applied.returncode == 0, applied.stderr
    program = rig.load("near_data_program", NEAR_DATA)
    rig.connect()
    run = flyte.run(program.main, mib=8)
    assert run.outputs() == (8 * 1024 * 1024,)
    consumer = next(a for a in flyte.remote.Run.get(run.name).actions() if a.task.endswith("consume"))
    # Unpinned, and us-east has more room (main holds some of eu-west's): the 8 MiB in eu-west's store decide.
    assert consumer.cluster == "eu-west"
    shown = rig.flyte("get", "placement", run.name, consumer.name)
    assert shown.returncode == 0, shown.stderr
    assert "input blobs: 8MiB in eu-west" in shown.stdout, shown.stdout
    assert "us-east 8MiB" in shown.stdout, shown.stdout


@pytest.fixture
def rig_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("version: near-data\nweights: {warm: 2, least_loaded: 1, data_locality: 10}\n")
    return path

"""Issue 15, findings 7 and 9: uploads stream (the gateway's memory stays flat, a refused upload leaves nothing), are
capped in size and in concurrent uploads per token, and a blob is readable only by tokens of a project that wrote it.
Against a real gateway process; its memory is read from /proc/PID/status."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from channels import admin_api, files_under, gateway_process, headers, token
from integration.gateway_api import Api, task_spec
from processes import GatewayProcess
from s3_server import S3Server

pytestmark = pytest.mark.timeout(120)
MiB = 1024 * 1024
LIMIT = 210 * MiB
CHUNK = b"\x00" * MiB


@pytest.fixture(scope="module", params=["local", "s3"])
def blob_gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, Callable[[], list[str]]]]:
    """A gateway on each blob store, and what that store holds (names of blobs and of uploads in progress)."""
    limits = {"FLYTE_MAX_BLOB_BYTES": str(LIMIT), "FLYTE_BLOB_UPLOADS_PER_TOKEN": "2"}
    directory = tmp_path_factory.mktemp("gateway")
    if request.param == "local":
        with gateway_process(directory, **limits) as process:
            root = process.home / "flyte" / "gateway" / "blobs"
            yield process, lambda: [p.name for p in files_under(root)]
        return
    s3: S3Server = request.getfixturevalue("s3_server")
    prefix = f"blobs-{uuid.uuid4().hex[:8]}"
    with gateway_process(directory, "--blobs", f"s3://{s3.bucket}/{prefix}", **limits, **s3.env()) as process:
        yield process, lambda: [key.rsplit("/", 1)[-1] for key in s3.keys(prefix)]


@pytest.fixture(scope="module")
def gateway(blob_gateway: tuple[GatewayProcess, Callable[[], list[str]]]) -> GatewayProcess:
    return blob_gateway[0]


@pytest.fixture(scope="module")
def stored(blob_gateway: tuple[GatewayProcess, Callable[[], list[str]]]) -> Callable[[], list[str]]:
    return blob_gateway[1]


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with admin_api(gateway) as called:
        yield called


def peak_rss(gateway: GatewayProcess) -> int:
    """The gateway's peak resident memory so far (VmHWM), in bytes."""
    assert gateway.process is not None
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


async def zeros(mib: int, gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """`mib` MiB of zeros, sent as a stream (the test holds no more than a chunk of it either)."""
    yield CHUNK
    if gate is not None:
        await gate.wait()
    for _ in range(mib - 1):
        yield CHUNK


async def upload(gateway: GatewayProcess, bearer: str, digest: str, body: object) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession(headers=headers(bearer)) as http,
        http.put(f"{gateway.endpoint}/api/v1/blobs/{digest}", data=body) as response,
    ):
        return response.status, await response.json()


async def read(gateway: GatewayProcess, bearer: str, digest: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(headers=headers(bearer)) as http,
        http.get(f"{gateway.endpoint}/api/v1/blobs/{digest}") as response,
    ):
        return response.status, await response.read()


async def test_an_upload_streams_to_disk_and_a_wrong_digest_leaves_nothing(
    api: Api, gateway: GatewayProcess, stored: Callable[[], list[str]]
) -> None:
    """Finding 7: 250 MiB uploads with wrong digests took the gateway from 60 to 1,804 MiB."""
    before, revision = peak_rss(gateway), await api.revision()
    status, body = await upload(gateway, gateway.token, "0" * 64, zeros(200))
    assert (status, body["code"]) == (400, "digest_mismatch")
    grown = peak_rss(gateway) - before
    assert grown < 50 * MiB, f"the gateway's peak memory grew by {grown / MiB:.0f} MiB for a 200 MiB upload"
    assert stored() == []
    assert await api.revision() == revision


async def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(
    api: Api, gateway: GatewayProcess, stored: Callable[[], list[str]]
) -> None:
    status, body = await upload(gateway, gateway.token, "1" * 64, zeros(LIMIT // MiB + 1))
    assert (status, body["code"]) == (413, "too_large")
    status, body = await api.call("PUT", f"/api/v1/blobs/{'2' * 64}", headers={"Content-Length": str(LIMIT + 1)})
    assert status == 413
    assert stored() == []


async def test_concurrent_uploads_per_token_are_capped(
    api: Api, gateway: GatewayProcess, stored: Callable[[], list[str]]
) -> None:
    uploader = await token(api, "run", projects=("alpha",))
    gate = asyncio.Event()
    # Three uploads held open by their sender; the limit is two: whichever arrives last is refused at once.
    held = [asyncio.create_task(upload(gateway, uploader, "3" * 64, zeros(4, gate))) for _ in range(3)]
    done, pending = await asyncio.wait(held, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    assert len(pending) == 2
    status, body = done.pop().result()
    assert (status, body["code"]) == (429, "too_many_uploads")
    other = await token(api, "run", projects=("alpha",))
    data = b"another token's upload"
    data_digest = hashlib.sha256(data).hexdigest()
    status, _ = await upload(gateway, other, data_digest, data)
    assert status == 201, "the cap is per token"
    gate.set()
    assert [status for status, _ in await asyncio.gather(*pending)] == [400, 400]
    assert stored() == [data_digest]


async def test_a_blob_is_readable_only_by_its_projects(api: Api, gateway: GatewayProcess) -> None:
    """Finding 9: any token that knew a digest read the blob, whatever its project."""
    alpha = await token(api, "run", "deploy", projects=("alpha",))
    beta = await token(api, "run", "deploy", projects=("beta",))
    data = os.urandom(4096)
    digest = hashlib.sha256(data).hexdigest()
    assert (await upload(gateway, alpha, digest, data))[0] == 201
    assert await read(gateway, alpha, digest) == (200, data)
    status, body = await read(gateway, beta, digest)
    assert status == 404
    assert body == (await read(gateway, beta, "5" * 64))[1].replace(b"5" * 64, digest.encode()), "as if it were not"
    # Nor can beta deploy tasks that run alpha's code bundle.
    deploy: dict[str, object] = {
        "project": "beta",
        "domain": "development",
        "env": "stolen",
        "version": "v1",
        "bundle_digest": digest,
    }
    deploy["tasks"] = [task_spec("stolen")]
    status, body = await api.call("POST", "/api/v1/deployments", deploy, headers=headers(beta))
    assert (status, body["code"]) == (400, "missing_bundle")
    # Uploading the same bytes proves beta has them: then it may read them too.
    assert (await upload(gateway, beta, digest, data))[0] == 200
    assert await read(gateway, beta, digest) == (200, data)

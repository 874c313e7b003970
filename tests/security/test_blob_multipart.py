"""Multipart direct uploads (issue 19): a large blob goes to the object store in parts, each through a presigned
URL of its own (the bytes never pass through the gateway); a broken upload resumes with only the parts the store
lacks; the commit joins the parts and checks the whole against the digest, so a missing or wrong part is refused.
A broken download resumes with a ranged GET for the missing bytes only.
Against a real gateway process on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels import admin_api, gateway_process, token
from integration.gateway_api import Api
from processes import GatewayProcess
from s3_server import S3Server
from test_blob_urls import as_, received, store_call

import flyte
import flyte._client
from flyte._client import GatewayBlobs

pytestmark = pytest.mark.timeout(120)
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[GatewayProcess]:
    url = f"s3://{s3_server.bucket}/multipart-{uuid.uuid4().hex[:8]}"
    with gateway_process(tmp_path_factory.mktemp("gateway"), "--blobs", url, **s3_server.env()) as process:
        yield process


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with admin_api(gateway) as called:
        yield called


def split(data: bytes, size: int = 5 * MiB) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_a_broken_multipart_upload_resumes_with_the_missing_parts_only(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    data = os.urandom(11 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    pieces = split(data)
    before = await received(api)
    status, started = await as_(api, alpha, "POST", f"/api/v1/blobs/{digest}/uploads?parts={len(pieces)}")
    assert status == 201, started
    urls = {int(n): str(url) for n, url in started["parts"].items()}  # type: ignore[union-attr]
    assert sorted(urls) == [1, 2, 3]
    assert started["done"] == []
    # The client breaks after the first part.
    assert (await store_call("PUT", urls[1], pieces[0]))[0] == 200
    upload, multipart = started["upload"], started["multipart"]
    resume = f"/api/v1/blobs/{digest}/uploads/{upload}/parts?parts=3&multipart={multipart}"
    status, resumed = await as_(api, alpha, "POST", resume)
    assert status == 200, resumed
    assert resumed["done"] == [1]
    missing = {int(n): str(url) for n, url in resumed["parts"].items()}  # type: ignore[union-attr]
    assert sorted(missing) == [2, 3]
    for number, url in missing.items():
        assert (await store_call("PUT", url, pieces[number - 1]))[0] == 200
    commit = f"/api/v1/blobs/{digest}/uploads/{upload}?multipart={multipart}"
    status, committed = await as_(api, alpha, "POST", commit)
    assert (status, committed["size"]) == (201, len(data)), committed
    status, transfer = await as_(api, alpha, "GET", f"/api/v1/blobs/{digest}/url")
    assert await store_call("GET", str(transfer["url"])) == (200, data)
    assert await received(api) == before, "no byte of it through the gateway's blob API"


async def test_parts_that_do_not_make_the_digest_are_refused_and_leave_nothing(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    data = os.urandom(6 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    status, started = await as_(api, alpha, "POST", f"/api/v1/blobs/{digest}/uploads?parts=2")
    assert status == 201, started
    urls = {int(n): str(url) for n, url in started["parts"].items()}  # type: ignore[union-attr]
    assert (await store_call("PUT", urls[1], split(data)[0]))[0] == 200
    # Part 2 never sent: the joined object is not the digest's bytes.
    commit = f"/api/v1/blobs/{digest}/uploads/{started['upload']}?multipart={started['multipart']}"
    status, refused = await as_(api, alpha, "POST", commit)
    assert (status, refused["code"]) == (400, "digest_mismatch"), refused
    assert (await api.call("HEAD", f"/api/v1/blobs/{digest}"))[0] == 404


@pytest.mark.parametrize("query", ["parts=0", "parts=10001", "parts=two"], ids=["none", "too-many", "not-a-number"])
async def test_a_bad_part_count_is_a_400(api: Api, query: str) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    status, answer = await as_(api, alpha, "POST", f"/api/v1/blobs/{'ab' * 32}/uploads?{query}")
    assert (status, answer["code"]) == (400, "bad_request"), answer


async def test_resuming_without_the_store_upload_id_is_a_400(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    path = f"/api/v1/blobs/{'ab' * 32}/uploads/{'cd' * 16}/parts?parts=2"
    status, answer = await as_(api, alpha, "POST", path)
    assert status == 400, answer


def test_the_sdk_sends_a_large_file_in_parts_and_resumes_a_broken_upload(
    gateway: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flyte._client, "MULTIPART_BYTES", 6 * MiB)
    monkeypatch.setattr(flyte._client, "PART_BYTES", 5 * MiB)
    data = os.urandom(12 * MiB)
    path = tmp_path / "large.bin"
    path.write_bytes(data)
    blobs = GatewayBlobs(gateway.endpoint, gateway.token, "alpha")
    sent: list[str] = []
    real = flyte._client._call

    def breaking(request: urllib.request.Request, via: GatewayBlobs | None = None) -> bytes:
        # The third part's PUT fails once, as a dropped connection would: the try breaks, the next resumes.
        if request.get_method() == "PUT" and "partNumber=3" in request.full_url and "broke" not in sent:
            sent.append("broke")
            raise ConnectionResetError("the connection broke mid-upload")
        if request.get_method() == "PUT":
            sent.append(request.full_url.split("partNumber=", 1)[1].split("&", 1)[0])
        return real(request, via)

    monkeypatch.setattr(flyte._client, "_call", breaking)
    ref = blobs.put_file(path)
    assert ref == f"blob:{hashlib.sha256(data).hexdigest()}"
    assert sent.count("3") == 1, sent
    assert sorted(set(sent) - {"broke"}) == ["1", "2", "3"]
    assert len(sent) == 4, f"parts 1 and 2 went once, part 3 once again after the break: {sent}"
    monkeypatch.setattr(flyte._client, "_call", real)
    assert blobs.get(ref) == data


def test_a_broken_download_resumes_where_it_broke(
    gateway: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flyte.io import _blobs as io_blobs

    data = os.urandom(7 * MiB)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    ref = GatewayBlobs(gateway.endpoint, gateway.token, "alpha").put_file(path)
    digest = ref.removeprefix("blob:")
    flyte.init(endpoint=gateway.endpoint, api_key=gateway.token, project="alpha", insecure=True)
    ranges: list[str | None] = []
    served: list[int] = []
    real = urllib.request.urlopen

    class Breaking:
        """The first download's connection drops after 3 MiB, as a flaky link would."""

        def __init__(self, response: Any, limit: int | None):
            self.response, self.limit, self.status = response, limit, response.status

        def __enter__(self) -> Breaking:
            return self

        def __exit__(self, *exc: object) -> None:
            self.response.close()

        def read(self, n: int) -> bytes:
            if self.limit is not None and sum(served) >= self.limit:
                raise ConnectionResetError("the connection broke mid-download")
            chunk: bytes = self.response.read(n)
            served.append(len(chunk))
            return chunk

    def opening(request: urllib.request.Request, timeout: float | None = None) -> Any:
        if request.full_url.startswith(gateway.endpoint):
            return real(request, timeout=timeout)  # the gateway's answers (the presigned URL) are not the bytes
        ranges.append(request.get_header("Range"))
        return Breaking(real(request, timeout=timeout), 3 * MiB if len(ranges) == 1 else None)

    monkeypatch.setattr(urllib.request, "urlopen", opening)
    target = tmp_path / "fetched" / "model.bin"
    io_blobs._download(digest, f"blob://{digest}/model.bin", target)
    assert target.read_bytes() == data
    assert ranges == [None, f"bytes={3 * MiB}-"], "the second try asks only for what is missing"
    assert sum(served) == len(data), "no byte crossed twice"

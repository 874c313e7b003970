"""Multipart direct uploads (issue 19): a large blob goes to the object store in parts, each through a presigned
URL of its own, signed with the part's sha256 so the store refuses other bytes (the bytes never pass through the
gateway); a broken upload resumes with only the parts the store lacks; a commit with a part missing is refused. The
whole object's digest no store checks: the blob is its uploader's claim until another project's upload of it.
A broken download resumes with a ranged GET for the missing bytes only.
Against a real gateway process on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import base64
import hashlib
import os
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels import admin_api, gateway_process, headers, token
from integration.gateway_api import Api
from processes import GatewayProcess
from s3_server import S3Server
from test_blob_urls import as_, blob_bytes, direct_upload, received, store_call

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


def checksums(pieces: list[bytes]) -> dict[str, list[str]]:
    """The body that starts a multipart upload: each part's sha256, which its URL is signed with."""
    return {"sha256": [base64.b64encode(hashlib.sha256(piece).digest()).decode() for piece in pieces]}


async def put_part(url: str, piece: bytes) -> int:
    return (await store_call("PUT", url, piece, {"x-amz-checksum-sha256": checksums([piece])["sha256"][0]}))[0]


async def start(api: Api, bearer: str, digest: str, pieces: list[bytes]) -> dict[str, Any]:
    path = f"/api/v1/blobs/{digest}/uploads?parts={len(pieces)}"
    status, started = await as_(api, bearer, "POST", path, checksums(pieces))
    assert status == 201, started
    return started


def part_urls(transfer: dict[str, Any]) -> dict[int, str]:
    return {int(n): str(url) for n, url in transfer["parts"].items()}


async def multipart_upload(api: Api, bearer: str, digest: str, pieces: list[bytes]) -> tuple[int, dict[str, object]]:
    started = await start(api, bearer, digest, pieces)
    for number, url in part_urls(started).items():
        assert await put_part(url, pieces[number - 1]) == 200
    commit = f"/api/v1/blobs/{digest}/uploads/{started['upload']}?multipart={started['multipart']}&parts={len(pieces)}"
    return await as_(api, bearer, "POST", commit)


async def test_a_broken_multipart_upload_resumes_with_the_missing_parts_only(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    data = os.urandom(11 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    pieces = split(data)
    before = await received(api), await blob_bytes(api, "checked")
    started = await start(api, alpha, digest, pieces)
    urls = part_urls(started)
    assert sorted(urls) == [1, 2, 3]
    assert started["done"] == []
    # The client breaks after the first part.
    assert await put_part(urls[1], pieces[0]) == 200
    upload, multipart = started["upload"], started["multipart"]
    resume = f"/api/v1/blobs/{digest}/uploads/{upload}/parts?parts=3&multipart={multipart}"
    status, resumed = await as_(api, alpha, "POST", resume, checksums(pieces))
    assert status == 200, resumed
    assert resumed["done"] == [1]
    missing = part_urls(resumed)
    assert sorted(missing) == [2, 3]
    for number, url in missing.items():
        assert await put_part(url, pieces[number - 1]) == 200
    commit = f"/api/v1/blobs/{digest}/uploads/{upload}?multipart={multipart}&parts=3"
    other = await token(api, "run", projects=("alpha",))
    assert (await as_(api, other, "POST", resume, checksums(pieces)))[0] == 404, "another token resumes nothing"
    assert (await as_(api, other, "POST", commit))[0] == 404, "nor commits it"
    status, committed = await as_(api, alpha, "POST", commit)
    assert (status, committed["size"]) == (201, len(data)), committed
    status, transfer = await as_(api, alpha, "GET", f"/api/v1/blobs/{digest}/url")
    assert await store_call("GET", str(transfer["url"])) == (200, data)
    assert (await received(api), await blob_bytes(api, "checked")) == before, "no byte of it through the gateway"


async def test_the_store_refuses_a_part_that_is_not_its_checksums_and_a_commit_with_a_part_missing(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    data = os.urandom(6 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    pieces = split(data)
    started = await start(api, alpha, digest, pieces)
    urls = part_urls(started)
    signed = {"x-amz-checksum-sha256": checksums(pieces)["sha256"][0]}
    assert (await store_call("PUT", urls[1], b"x" + pieces[0][1:], signed))[0] == 400, "the store hashes each part"
    assert await put_part(urls[1], pieces[0]) == 200
    # Part 2 never sent: the commit says what is missing and stores nothing.
    commit = f"/api/v1/blobs/{digest}/uploads/{started['upload']}?multipart={started['multipart']}&parts=2"
    status, refused = await as_(api, alpha, "POST", commit)
    assert (status, refused["code"]) == (400, "parts_missing"), refused
    assert (await api.call("HEAD", f"/api/v1/blobs/{digest}"))[0] == 404


async def test_a_multipart_upload_needs_each_parts_checksum(api: Api) -> None:
    alpha = await token(api, "run", projects=("alpha",))
    path = f"/api/v1/blobs/{'ab' * 32}/uploads?parts=2"
    for body in (None, {"sha256": []}, checksums([b"one"])):
        status, refused = await as_(api, alpha, "POST", path, body)
        assert (status, refused["code"]) == (400, "part_checksums"), refused
    status, refused = await as_(api, alpha, "POST", path, {"sha256": ["not base64", "x"]})
    assert (status, refused["code"]) == (400, "invalid"), refused


async def test_a_claimed_blob_is_its_uploaders_alone_until_another_projects_upload_has_it_checked_once(
    api: Api,
) -> None:
    """A multipart upload's whole digest is checked by no store: the blob is its uploader's claim, which no other
    project reads; another project's upload of the same digest has the gateway read the claimed bytes back once."""
    alpha = await token(api, "run", projects=("alpha",))
    beta = await token(api, "run", projects=("beta",))
    data = os.urandom(6 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    checked = await blob_bytes(api, "checked")
    assert (await multipart_upload(api, alpha, digest, split(data)))[0] == 201
    assert await blob_bytes(api, "checked") == checked, "the first upload of a digest is not read back"
    assert (await as_(api, beta, "GET", f"/api/v1/blobs/{digest}/url"))[0] == 404, "a claim is not beta's to read"
    assert (await api.call("HEAD", f"/api/v1/blobs/{digest}", headers=headers(beta)))[0] == 404
    assert (await direct_upload(api, beta, data))[0] == 200, "beta's checked upload joins the blob"
    assert await blob_bytes(api, "checked") == checked + len(data), "alpha's claim was read back once"
    for reader in (alpha, beta):
        status, transfer = await as_(api, reader, "GET", f"/api/v1/blobs/{digest}/url")
        assert status == 200, transfer
        assert await store_call("GET", str(transfer["url"])) == (200, data)


async def test_a_false_claim_gives_nothing_and_is_dropped_when_another_project_uploads_the_digest(api: Api) -> None:
    """A hostile project claims a digest it does not have (parts that hash as their URLs say, but not to the digest):
    it gains no access to the real bytes, and the real owner's upload replaces the false claim."""
    mallory = await token(api, "run", projects=("mallory",))
    alpha = await token(api, "run", projects=("alpha",))
    secret = os.urandom(6 * MiB)
    digest = hashlib.sha256(secret).hexdigest()
    assert (await multipart_upload(api, mallory, digest, split(os.urandom(6 * MiB))))[0] == 201
    assert (await direct_upload(api, alpha, secret))[0] == 201, "alpha's bytes are new: the claim was dropped"
    status, transfer = await as_(api, alpha, "GET", f"/api/v1/blobs/{digest}/url")
    assert status == 200, transfer
    assert await store_call("GET", str(transfer["url"])) == (200, secret)
    assert (await as_(api, mallory, "GET", f"/api/v1/blobs/{digest}/url"))[0] == 404, "mallory reads nothing"
    # A second claim of the same digest by mallory cannot join alpha's checked blob either: it is read back, refused.
    status, refused = await multipart_upload(api, mallory, digest, split(os.urandom(6 * MiB)))
    assert (status, refused["code"]) == (400, "digest_mismatch"), refused
    assert (await as_(api, mallory, "GET", f"/api/v1/blobs/{digest}/url"))[0] == 404


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

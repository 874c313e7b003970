"""The blob store contract, the same for both implementations: the local directory and S3-compatible storage (a
real SeaweedFS server). Content addressing, readers per project, refused uploads leave nothing, and retention's
mark and sweep."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from s3_server import S3Server

from gateway._blobs import BlobStore, LocalBlobStore, Uploader, open_blob_store
from gateway._blobs_s3 import ObjectBlobStore
from gateway._domain_errors import DomainError
from gateway._errors import as_api_error
from gateway._retention import BlobMarker, collect_blobs
from gateway.store._sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)
FUTURE = time.time() + 3600


@pytest.fixture
async def state() -> AsyncIterator[SqliteStore]:
    store = SqliteStore(":memory:")
    yield store
    await store.close()


@pytest.fixture(params=["local", "s3"])
async def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, state: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs", state)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        # Uses happen "in the future", so a test can put the sweep's cut-off between a blob's upload and its use.
        yield ObjectBlobStore(f"s3://{s3.bucket}/contract-{uuid.uuid4().hex[:8]}", state, clock=lambda: FUTURE + 60)


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(blobs: BlobStore, digest: str) -> bytes:
    return b"".join([chunk async for chunk in blobs.chunks(digest)])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_blob_is_stored_under_its_digest_for_the_projects_that_uploaded_it(blobs: BlobStore) -> None:
    data = b"x" * 3_000_000 + b"end"
    digest = sha(data)
    assert not await blobs.exists(digest)
    assert await blobs.put(digest, stream(data[:1000], data[1000:]), "alpha") == (True, len(data))
    assert await blobs.exists(digest)
    assert await read(blobs, digest) == data
    assert await blobs.projects(digest) == {"alpha"}
    assert await blobs.put(digest, stream(data), "beta") == (False, len(data)), "the same bytes again: not new"
    assert await blobs.projects(digest) == {"alpha", "beta"}
    response = await blobs.response(digest)
    assert response.status == 200


async def test_a_refused_upload_leaves_nothing(blobs: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = sha(b"claimed")
    with pytest.raises(DomainError) as refused:
        await blobs.put(digest, stream(b"other bytes"), "alpha")
    assert (as_api_error(refused.value).status, refused.value.code) == (400, "digest_mismatch")
    monkeypatch.setattr("gateway._blobs.MAX_BLOB", 10)
    big = b"0123456789abc"
    with pytest.raises(DomainError) as too_big:
        await blobs.put(sha(big), stream(big[:5], big[5:]), "alpha")
    assert (as_api_error(too_big.value).status, too_big.value.code) == (413, "too_large")
    assert not await blobs.exists(digest)
    assert not await blobs.exists(sha(big))
    assert await blobs.projects(digest) == frozenset()
    assert await read(blobs, digest) == b""
    with pytest.raises(DomainError) as missing:
        await blobs.response(digest)
    assert as_api_error(missing.value).status == 404


async def test_the_sweep_takes_old_orphans_and_spares_referenced_and_used_blobs(
    blobs: BlobStore, state: SqliteStore
) -> None:
    async def put(data: bytes) -> str:
        await blobs.put(sha(data), stream(data), "alpha")
        return sha(data)

    orphan, used, inner = await put(b"orphan"), await put(b"used"), await put(b"inner")
    outer = await put(f'{{"files": [["x", "{inner}"]]}}'.encode())
    await state.put("/flyte/tasks/p/d/env/v1", f'{{"bundle_digest": "{outer}"}}'.encode())
    marker = BlobMarker(blobs)
    assert await collect_blobs(state, marker, grace=3600) == 0, "everything is younger than the grace period"
    assert await blobs.exists(used)  # a use: the S3 store records it at its (future) clock
    if isinstance(blobs, LocalBlobStore):
        os.utime(blobs.path(used), (FUTURE + 60, FUTURE + 60))  # the directory's clock is the file system's
    assert await collect_blobs(state, marker, grace=0, now=FUTURE) == 1
    assert not await blobs.exists(orphan)
    for kept in (used, inner, outer):
        assert await blobs.exists(kept)
    assert await blobs.projects(orphan) == frozenset(), "its readers went with it"


async def test_plain_http_is_for_a_loopback_endpoint_only(state: SqliteStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain http on a remote host"):
        open_blob_store("s3://bucket/prefix", state, endpoint="http://storage.example.com:9000")
    assert isinstance(open_blob_store("s3://bucket/prefix", state, endpoint="http://127.0.0.1:9000"), ObjectBlobStore)
    with pytest.raises(ValueError, match="is for an object store"):
        open_blob_store(tmp_path, state, endpoint="http://127.0.0.1:9000")


async def test_the_sweep_takes_abandoned_direct_uploads(
    state: SqliteStore, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    prefix = f"abandoned-{uuid.uuid4().hex[:8]}"
    s3 = ObjectBlobStore(f"s3://{s3_server.bucket}/{prefix}", state)
    data = b"sent, never committed"
    url, _, headers = await s3.upload_url(sha(data), Uploader("alpha", "0123456789abcdef"))
    async with aiohttp.ClientSession() as http, http.put(url, data=io.BytesIO(data), headers=headers) as response:
        assert response.status == 200
    assert len(s3_server.keys(f"{prefix}/uploads/")) == 1
    assert await collect_blobs(state, BlobMarker(s3), grace=3600) == 0
    assert len(s3_server.keys(f"{prefix}/uploads/")) == 1, "young: it may still be committed"
    await collect_blobs(state, BlobMarker(s3), grace=0, now=FUTURE)
    assert s3_server.keys(f"{prefix}/uploads/") == []


async def test_a_store_that_is_down_is_a_503_within_seconds(
    state: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = S3Server(tmp_path / "down")  # never started: nothing listens on its port
    for name, value in down.env().items():
        monkeypatch.setenv(name, value)
    blobs = ObjectBlobStore(f"s3://{down.bucket}/gone", state)
    data = b"nowhere to go"
    started = time.monotonic()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: blobs.put(sha(data), stream(data), "alpha"),
        lambda: blobs.exists(sha(data)),
        lambda: blobs.download_url(sha(data)),
    ]
    for call in calls:
        with pytest.raises(DomainError) as refused:
            await call()
        assert (as_api_error(refused.value).status, refused.value.code) == (503, "blob_store_unavailable")
    with pytest.raises(DomainError):
        await read(blobs, sha(data))
    assert time.monotonic() - started < 4 * 15, "bounded retries, not obstore's three minutes each"

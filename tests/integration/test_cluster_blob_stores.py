"""Per-cluster blob stores (issue 19): a cluster that registers its own store (`flyte agent serve --blobs`) gets its
workers' uploads there, the blob's record says where it is held, a reader on another cluster is sent to that store
(read in place), and the sweep drops a store from the record when it collects the blob there. Against a real
SeaweedFS server, two prefixes standing for two regions' buckets."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from s3_server import S3Server

from flyte._wire import ClusterRecord
from gateway._blob_stores import ClusterBlobStores
from gateway._blobs import Uploader, blob_locations, blob_projects
from gateway._blobs_s3 import ObjectBlobStore
from gateway._keys import blob_owners_key, cluster_key
from gateway.store._sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stores(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[ClusterBlobStores, str]]:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    state = SqliteStore(":memory:")
    root = f"s3://{s3_server.bucket}/regions-{uuid.uuid4().hex[:8]}"
    # What an agent's hello leaves: eu-west keeps its data in its own store, us-east names none.
    eu = ClusterRecord(name="eu-west", region="eu-west", cloud="local", blobs=f"{root}/eu", blobs_endpoint=None)
    us = ClusterRecord(name="us-east", region="us-east", cloud="local")
    for record in (eu, us):
        await state.put(cluster_key(record.name), record.model_dump_json().encode())
    yield ClusterBlobStores(ObjectBlobStore(f"{root}/gateway", state), state), root
    await state.close()


async def direct_upload(stores: ClusterBlobStores, data: bytes, cluster: str | None) -> str:
    digest = hashlib.sha256(data).hexdigest()
    target = await stores.of_cluster(cluster)
    uploader = Uploader("alpha", "0123456789abcdef")
    url, upload, headers = await target.upload_url(digest, uploader)
    async with aiohttp.ClientSession() as http, http.put(url, data=io.BytesIO(data), headers=headers) as response:
        assert response.status == 200
    assert (await target.commit_upload(digest, uploader, upload))[0]
    return digest


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_a_blob_written_on_a_cluster_with_its_own_store_lands_there_and_is_read_in_place(
    stores: tuple[ClusterBlobStores, str], s3_server: S3Server
) -> None:
    blobs, root = stores
    data = os.urandom(256 * 1024)
    digest = await direct_upload(blobs, data, "eu-west")
    prefix = root.split("/", 3)[3]
    assert s3_server.keys(f"{prefix}/eu/blobs/") == [f"{prefix}/eu/blobs/{digest}"]
    assert not s3_server.keys(f"{prefix}/gateway/blobs/")
    assert await blob_locations(blobs._store, digest) == {f"{root}/eu"}
    assert await blob_projects(blobs._store, digest) == {"alpha"}
    # us-east has no store of its own: it reads from eu-west's, in place; eu-west reads its own.
    assert (await blobs.holding(digest, "us-east")).description == f"{root}/eu"
    assert (await blobs.holding(digest, "eu-west")).description == f"{root}/eu"
    assert await fetch(await blobs.download_url(digest)) == data
    assert await blobs.exists(digest)
    assert b"".join([c async for c in blobs.chunks(digest)]) == data


async def test_a_caller_with_no_cluster_or_a_cluster_without_a_store_writes_to_the_gateways(
    stores: tuple[ClusterBlobStores, str],
) -> None:
    blobs, root = stores
    for cluster in (None, "us-east", "nowhere"):
        digest = await direct_upload(blobs, os.urandom(1024), cluster)
        assert await blob_locations(blobs._store, digest) == {f"{root}/gateway"}
        assert (await blobs.holding(digest, "eu-west")).description == f"{root}/gateway"


async def test_a_record_from_before_locations_means_the_gateways_store(stores: tuple[ClusterBlobStores, str]) -> None:
    blobs, root = stores
    digest = hashlib.sha256(b"old").hexdigest()
    await blobs._store.put(blob_owners_key(digest), json.dumps(["alpha"]).encode())
    assert await blob_projects(blobs._store, digest) == {"alpha"}
    assert await blob_locations(blobs._store, digest) == frozenset()
    assert (await blobs.holding(digest, "eu-west")).description == f"{root}/gateway"


async def test_the_sweep_collects_in_every_clusters_store(stores: tuple[ClusterBlobStores, str]) -> None:
    blobs, _ = stores
    kept = await direct_upload(blobs, os.urandom(1024), "eu-west")
    orphan = await direct_upload(blobs, os.urandom(1024), "eu-west")
    removed = await blobs.sweep({kept}, time.time() + 3600)
    assert removed == [orphan]
    assert await blobs.exists(kept)
    assert not await blobs.exists(orphan)


async def test_a_store_of_the_same_bucket_and_prefix_on_another_endpoint_is_another_store(
    stores: tuple[ClusterBlobStores, str], s3_server: S3Server
) -> None:
    """Two regions may each run an S3 server with a bucket of the same name: a store is its URL and its endpoint."""
    blobs, root = stores
    elsewhere = "http://127.0.0.1:9"
    record = ClusterRecord(name="ap-south", region="ap-south", cloud="local", blobs=f"{root}/gateway")
    for endpoint in (elsewhere, None):
        given = record.model_copy(update={"blobs_endpoint": endpoint})
        await blobs._store.put(cluster_key("ap-south"), given.model_dump_json().encode())
        own = await blobs.of_cluster("ap-south")
        assert (own is blobs.default) == (endpoint is None), endpoint
    await blobs._store.put(
        cluster_key("ap-south"), record.model_copy(update={"blobs_endpoint": elsewhere}).model_dump_json().encode()
    )
    assert (await blobs.of_cluster("ap-south")).description == f"{root}/gateway at {elsewhere}"

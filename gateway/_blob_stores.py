"""Per-cluster blob stores: a cluster that keeps its data in its own region (`flyte agent serve --blobs s3://B/P`).

The gateway has its own store (`flyte gateway serve --blobs`) and, for each cluster whose `ClusterRecord.blobs`
names one, that cluster's store, opened on first use with the gateway's own credentials (one role that may sign for
every region's bucket: workers never hold a key). A caller that says which cluster it runs on (`?cluster=C`, which
workers send) uploads into C's store and reads from it first; everyone else uses the gateway's store.

Where a blob is held is recorded with its readers (`/flyte/blobs/<sha256>`, see `gateway._blobs.add_owner`): each
store adds itself when bytes land in it. A read is served **in place** from the store that holds it (the caller's own
when it is there, else the first other one): the URL is presigned for that store, the bytes go store to worker, and
the SDK's trace span says how many bytes crossed from which store. `?cluster=` is a hint of locality, never an
authority: who may read or write a blob is decided by its projects, whatever store holds it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from aiohttp import web

from flyte._wire import ClusterRecord, WireValue
from gateway._blobs import (
    BlobStore,
    HashingStream,
    Uploader,
    blob_locations,
    blob_placement,
    blob_record,
    drop_locations,
    settle_claim,
    store_identity,
)
from gateway._keys import CLUSTERS, cluster_key
from gateway.store import Store

log = logging.getLogger("flyte.gateway")
_BLOB_REF = re.compile(r"blob(?:dir)?:(?://)?([0-9a-f]{64})")
"""A blob named in a value: a large value's `blob:<sha256>`, a `File`'s `blob://<sha256>/name`, a `Dir`'s manifest."""


async def input_bytes(
    store: Store, inputs: Mapping[str, WireValue], clusters: Mapping[str, ClusterRecord]
) -> tuple[tuple[str, int], ...]:
    """(region, bytes) of the blobs an action's inputs name, by the region of the store that holds each (a cluster's
    store is in that cluster's region; the gateway's is in none, ""), for data-aware placement. Blobs named inside
    other blobs (a `Dir`'s files, a large value holding a `File`) are not read: one store read per named blob."""
    digests = {m for value in inputs.values() for m in _BLOB_REF.findall(value.model_dump_json())}
    regions = {store_identity(r.blobs, r.blobs_endpoint): r.region for r in clusters.values() if r.blobs}
    held: dict[str, int] = {}
    for digest in sorted(digests):
        at, size = await blob_placement(store, digest)
        if size:
            region = next((regions[s] for s in sorted(at) if s in regions), "")
            held[region] = held.get(region, 0) + size
    return tuple(sorted(held.items()))


class ClusterBlobStores:
    """The gateway's store and the clusters' own, as one `BlobStore` (which answers for the gateway's store and for
    blobs wherever they are held) plus the per-cluster choices: `of_cluster` (where a caller
    writes) and `holding` (where it reads from)."""

    def __init__(self, default: BlobStore, store: Store):
        self.default = default
        self._store = store
        self._opened: dict[tuple[str, str | None], BlobStore] = {}
        self._lock = asyncio.Lock()
        self.description = default.description
        self.url_seconds = default.url_seconds
        self._settled_bytes = 0

    async def of_cluster(self, cluster: str | None) -> BlobStore:
        """The store a worker on `cluster` writes to: the cluster's own if its record names one, else the gateway's."""
        if not cluster:
            return self.default
        kv = await self._store.get(cluster_key(cluster))
        if kv is None:
            return self.default
        return await self._open(ClusterRecord.model_validate_json(kv.value))

    async def _open(self, record: ClusterRecord) -> BlobStore:
        if record.blobs is None or store_identity(record.blobs, record.blobs_endpoint) == self.default.description:
            return self.default
        where = (record.blobs.rstrip("/"), record.blobs_endpoint)
        async with self._lock:
            if where not in self._opened:
                from gateway._blobs_s3 import ObjectBlobStore

                try:
                    self._opened[where] = ObjectBlobStore(where[0], self._store, endpoint=where[1])
                except ValueError as error:
                    # A cluster's bad store must not stop its work: its blobs go to the gateway's store instead.
                    log.warning("cluster %s: its blob store %s cannot be used (%s)", record.name, where[0], error)
                    return self.default
            return self._opened[where]

    async def stores(self) -> list[BlobStore]:
        """The gateway's store and every cluster's, opening those named by cluster records and not used yet."""
        for kv in (await self._store.range(CLUSTERS))[0]:
            await self._open(ClusterRecord.model_validate_json(kv.value))
        return self._open_stores()

    def _open_stores(self) -> list[BlobStore]:
        """The gateway's store and the clusters' opened so far."""
        return [self.default, *(s for s in self._opened.values() if s is not self.default)]

    async def holding(self, digest: str, cluster: str | None = None) -> BlobStore:
        """The store to read the blob from: `cluster`'s own when it holds it, else one that does (by the record;
        the gateway's when none is recorded)."""
        at = await blob_locations(self._store, digest)
        if not at:
            return self.default
        mine = await self.of_cluster(cluster)
        if mine.description in at:
            return mine
        if self.default.description in at:
            return self.default
        by_description = {s.description: s for s in await self.stores()}
        for description in sorted(at):
            if description in by_description:
                return by_description[description]
        return self.default

    # -- the BlobStore protocol ----------------------------------------------------------------------------------

    async def exists(self, digest: str) -> bool:
        return await (await self.holding(digest)).exists(digest)

    async def projects(self, digest: str) -> frozenset[str]:
        return await self.default.projects(digest)

    async def put(self, digest: str, chunks: AsyncIterator[bytes], project: str) -> tuple[bool, int]:
        return await self.default.put(digest, chunks, project)

    async def response(self, digest: str) -> web.StreamResponse:
        return await (await self.holding(digest)).response(digest)

    async def chunks(self, digest: str) -> AsyncIterator[bytes]:
        async for chunk in (await self.holding(digest)).chunks(digest):
            yield chunk

    async def sweep(self, marked: set[str], older_than: float) -> list[str]:
        """Collect in every store; a digest counts as removed (its record goes) once no store holds it, and a store
        that lost it is dropped from its record."""
        removed: dict[str, set[str]] = {}
        for store in await self.stores():
            for digest in await store.sweep(marked, older_than):
                removed.setdefault(digest, set()).add(store.description)
        gone = []
        for digest, lost in removed.items():
            if not await drop_locations(self._store, digest, lost):
                gone.append(digest)
        return gone

    async def delete(self, digest: str) -> None:
        """Remove the blob's bytes from every store that holds them."""
        for store in await self.stores():
            await store.delete(digest)

    async def upload_url(self, digest: str, uploader: Uploader) -> tuple[str, str, dict[str, str]]:
        return await self.default.upload_url(digest, uploader)

    async def commit_upload(
        self, digest: str, uploader: Uploader, upload: str, multipart: str | None = None, parts: int = 0
    ) -> tuple[bool, int]:
        return await self.default.commit_upload(digest, uploader, upload, multipart, parts)

    async def multipart_urls(
        self, digest: str, uploader: Uploader, sha256: Sequence[str], resume: tuple[str, str] | None = None
    ) -> tuple[str, str, dict[int, str], list[int]]:
        return await self.default.multipart_urls(digest, uploader, sha256, resume)

    @property
    def checked_bytes(self) -> int:
        """Bytes read back from any store to check a digest, this gateway's life long."""
        return self._settled_bytes + sum(s.checked_bytes for s in self._open_stores())

    async def settle(self, digest: str, project: str) -> None:
        """Before `project` uploads a digest that another project holds on a claim (bytes no store checked): read
        the claimed bytes back and hash them, once. They hold: the blob is an ordinary one, which the upload then
        joins as any other. They do not: the claim was false, its bytes and record go, and the upload stores the
        blob afresh (the claimer, who never had these bytes, loses the blob it claimed and nothing else)."""
        record = await blob_record(self._store, digest)
        if record is None or not record.claimed or record.projects <= {project}:
            return
        holder = await self.holding(digest)
        stream = HashingStream(holder.chunks(digest), limited=False)
        try:
            await stream.drain()
        finally:
            self._settled_bytes += stream.size
        held = stream.matches(digest)
        if not held:
            log.warning("blob %s: the claim of %s did not hold (other bytes); dropped", digest, sorted(record.projects))
            await holder.delete(digest)
        await settle_claim(self._store, digest, held)

    async def download_url(self, digest: str) -> str:
        return await (await self.holding(digest)).download_url(digest)

"""The gateway's blob store: content-addressed bytes (code bundles, large values, files).

`BlobStore` is the boundary; `LocalBlobStore` (here: a local directory, the embedded default) and
`gateway._blobs_s3.ObjectBlobStore` (S3-compatible object storage through obstore) are its two implementations, and
`open_blob_store` picks one from `flyte gateway serve --blobs`.

A blob's key is the sha256 of its content, checked on upload, so a key is never a path: nothing a client sends can
name a file outside the store. An upload streams to a temporary file beside its target, hashed on the way, and is
renamed into place only when the digest matches (removed otherwise), so a reader never sees half a blob, a crash
leaves no partial one, and the gateway's memory does not grow with the size of an upload.

A digest is not a capability: each blob records, under `/flyte/blobs/{digest}` in the store, the projects that
uploaded it (an upload of the same bytes by another project proves it has them, and adds that project). Reading
it needs a token of one of those projects (`gateway._authz`); any other token gets the 404 of a missing blob.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from aiohttp import web

from flyte._env import env_int
from flyte._paths import private_dir
from gateway._domain_errors import Conflict, Invalid, NotFound, TooLarge, Unavailable
from gateway._keys import blob_owners_key
from gateway.store import Compare, Delete, Put, Store

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_BLOB = env_int("FLYTE_MAX_BLOB_BYTES", 256 * 1024 * 1024)
"""The largest blob an upload may carry."""
_WRITE_CHUNK = 1024 * 1024
"""Bytes gathered before each write to disk (off the event loop)."""


class BlobStoreUnavailable(Unavailable):
    """The blob store is down or refusing: a 503, which clients retry as any unavailable service."""

    def __init__(self) -> None:
        super().__init__("the blob store is unavailable; try again shortly", code="blob_store_unavailable")


@dataclass(frozen=True)
class Uploader:
    """Whom a direct upload is for: the project whose blob it becomes, and the token that asked for it (a worker's
    token acts for one attempt). The staged object's key names both, so its URLs, its resumption and its commit are
    that token's alone: a URL that leaks is good for nothing once its attempt ends."""

    project: str
    token: str

    @property
    def prefix(self) -> str:
        return f"{self.project}/{self.token or 'anonymous'}"


def store_identity(url: str, endpoint: str | None = None) -> str:
    """How blob records name a store (its `description`): its URL, with the endpoint where one is given, since two
    regions' S3 servers may each have a bucket and prefix of the same name."""
    url = url.rstrip("/")
    return url if endpoint is None else f"{url} at {endpoint.rstrip('/')}"


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise Invalid(f"a blob key is the sha256 of its content (64 lower-case hex digits), not {digest[:80]!r}")
    return digest


class BlobStore(Protocol):
    """Where blobs live. Who may read one (its projects) is kept in the state store, the same for every kind."""

    description: str
    """Where, for logs: a directory or an `s3://bucket/prefix` URL."""
    url_seconds: int
    """How long the presigned URLs it issues stay valid (0: it issues none)."""

    @property
    def checked_bytes(self) -> int:
        """Bytes read back from the store to check a digest (the `checked` direction of the blob-bytes metric)."""
        ...

    async def exists(self, digest: str) -> bool:
        """Whether the blob is stored; a yes counts as a use for retention's grace period."""
        ...

    async def projects(self, digest: str) -> frozenset[str]:
        """The projects whose tokens may read the blob."""
        ...

    async def put(self, digest: str, chunks: AsyncIterator[bytes], project: str) -> tuple[bool, int]:
        """Store a stream under its digest for `project` (a 400 if it does not hash to `digest`, a 413 over
        `MAX_BLOB`, leaving nothing either way); returns whether the bytes were new, and their size."""
        ...

    async def response(self, digest: str) -> web.StreamResponse:
        """The blob as an HTTP response body (a 404 if there is none)."""
        ...

    def chunks(self, digest: str) -> AsyncIterator[bytes]:
        """The blob's bytes, streamed (nothing if there is none)."""
        ...

    async def sweep(self, marked: set[str], older_than: float) -> list[str]:
        """Delete the blobs not in `marked` last stored or used before `older_than`; returns their digests."""
        ...

    async def delete(self, digest: str) -> None:
        """Remove the blob's bytes from this store (nothing if there are none)."""
        ...

    async def upload_url(self, digest: str, uploader: Uploader) -> tuple[str, str, dict[str, str]]:
        """A presigned URL to PUT the blob's bytes straight into the store, for `project`, the upload's id and the
        headers the PUT must carry (the sha256 the store checks the bytes against, where the URL is signed with
        it); a 409 `no_direct_transfer` for a store that has none: the caller uploads through the blob API."""
        ...

    async def commit_upload(
        self, digest: str, uploader: Uploader, upload: str, multipart: str | None = None, parts: int = 0
    ) -> tuple[bool, int]:
        """Make a direct upload the blob (joining its `parts` parts first, for a multipart upload: a 400 when the
        store lacks one), as `put` does; bytes the store did not check against `digest` become a claim
        (`BlobRecord.claimed`) or are read back and hashed."""
        ...

    async def multipart_urls(
        self, digest: str, uploader: Uploader, sha256: Sequence[str], resume: tuple[str, str] | None = None
    ) -> tuple[str, str, dict[int, str], list[int]]:
        """A multipart upload of parts whose sha256 (base64) are `sha256`, in order: (upload id, the store's id, URLs
        of the parts still missing, parts held); starts one unless `resume` (the upload id, the store's id) names one
        to resume (a 409 where there are none). Each part's URL is signed with its sha256, so the store refuses other
        bytes for it."""
        ...

    async def download_url(self, digest: str) -> str:
        """A presigned URL to GET the blob straight from the store (a 409 where there is none, a 404 if missing)."""
        ...


@dataclass(frozen=True)
class BlobRecord:
    """What the state store knows of a blob (`/flyte/blobs/{digest}`)."""

    projects: frozenset[str]
    """Whose tokens may read it."""
    stores: frozenset[str]
    """The stores (their `description`) holding it; empty for an old record of the gateway's own store."""
    size: int
    """Its size (0 where not recorded)."""
    claimed: bool = False
    """Its bytes were never hashed whole: they came from one upload the store could not check against the digest (a
    multipart upload, whose parts the store checked against the sha256 each part's URL was signed with, but whose
    whole digest is the uploader's claim). Its one reader is that uploader, until another upload of the digest has
    the gateway check the bytes once (`ClusterBlobStores.settle`): a claim can neither serve another project bytes
    it did not ask for nor give the claimer access to bytes it did not have."""


def _owners(value: bytes) -> BlobRecord:
    data = json.loads(value)
    if isinstance(data, list):  # an older record: a bare list of projects, in the gateway's own store
        return BlobRecord(frozenset(data), frozenset(), 0)
    return BlobRecord(
        frozenset(data["projects"]), frozenset(data.get("at", [])), int(data.get("size", 0)), bool(data.get("claimed"))
    )


def _record(record: BlobRecord) -> bytes:
    value = {"projects": sorted(record.projects), "at": sorted(record.stores), "size": record.size}
    if record.claimed:
        value["claimed"] = True
    return json.dumps(value).encode()


async def blob_record(store: Store, digest: str) -> BlobRecord | None:
    kv = await store.get(blob_owners_key(check_digest(digest)))
    return _owners(kv.value) if kv is not None else None


async def blob_projects(store: Store, digest: str) -> frozenset[str]:
    record = await blob_record(store, digest)
    return record.projects if record is not None else frozenset()


async def blob_locations(store: Store, digest: str) -> frozenset[str]:
    """The stores (their `description`) recorded as holding the blob; empty for the gateway's own store only."""
    return (await blob_placement(store, digest))[0]


async def blob_placement(store: Store, digest: str) -> tuple[frozenset[str], int]:
    """The stores recorded as holding the blob, and its size (0 where not recorded)."""
    record = await blob_record(store, digest)
    return (record.stores, record.size) if record is not None else (frozenset(), 0)


class ClaimedElsewhere(Unavailable):
    """Another project's claim on the digest landed while this upload was being stored: the client tries again, and
    the gateway then checks the claimed bytes first."""

    def __init__(self) -> None:
        super().__init__("another upload of this blob is being committed; try again shortly", code="blob_busy")


async def add_owner(
    store: Store, digest: str, project: str, at: str | None = None, size: int = 0, claimed: bool = False
) -> bool:
    """Add `project` to the blob's readers, `at` (a store's description) to where it is held, and its size (for
    data-aware placement); a compare-and-swap, so concurrent uploads both land.

    `claimed`: bytes the store did not check against the digest. They make a record only where there was none: False
    (nothing written) when the digest has readers already, whose bytes a claim must not join unchecked. Checked
    bytes never join another project's claim either (`ClaimedElsewhere`): the blob API settles a claim before an
    upload, so that is only a race with one."""
    key = blob_owners_key(digest)
    while True:
        kv = await store.get(key)
        old = _owners(kv.value) if kv is not None else BlobRecord(frozenset(), frozenset(), 0)
        if claimed and old.projects:
            return False
        if not claimed and old.claimed and old.projects - {project}:
            raise ClaimedElsewhere()
        stores = old.stores | ({at} if at else set())
        new = BlobRecord(old.projects | {project}, stores, old.size or size, claimed or old.claimed)
        if new == old:
            return True
        result = await store.txn([Compare(key, kv.mod_revision if kv else 0)], [Put(key, _record(new))])
        if result.succeeded:
            return True


async def settle_claim(store: Store, digest: str, held: bool) -> None:
    """A claimed blob was read back and hashed: `held` (the bytes are the digest's) makes it an ordinary blob;
    otherwise the claim was false and its record goes (the caller deletes the bytes)."""
    key = blob_owners_key(digest)
    while True:
        kv = await store.get(key)
        if kv is None or not (old := _owners(kv.value)).claimed:
            return
        write = Put(key, _record(dataclasses.replace(old, claimed=False))) if held else Delete(key)
        if (await store.txn([Compare(key, kv.mod_revision)], [write])).succeeded:
            return


async def drop_locations(store: Store, digest: str, lost: set[str]) -> frozenset[str]:
    """Remove stores that no longer hold the blob from its record; returns the stores left (none: it is gone)."""
    key = blob_owners_key(digest)
    while True:
        kv = await store.get(key)
        if kv is None:
            return frozenset()
        old = _owners(kv.value)
        left = old.stores - lost
        if not left:
            return frozenset()
        result = await store.txn(
            [Compare(key, kv.mod_revision)], [Put(key, _record(dataclasses.replace(old, stores=left)))]
        )
        if result.succeeded:
            return frozenset(left)


class HashingStream:
    """Passes a stream through, hashing and counting it on the way, and refusing it past `MAX_BLOB`."""

    def __init__(self, chunks: AsyncIterator[bytes], limited: bool = True):
        self._chunks = chunks
        self._limit = MAX_BLOB if limited else None
        self._hasher = hashlib.sha256()
        self.size = 0
        self.error: Exception | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pass()

    async def _pass(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                self.size += len(chunk)
                if self._limit is not None and self.size > self._limit:
                    raise TooLarge(f"the blob is over the limit of {self._limit} bytes")
                self._hasher.update(chunk)
                yield chunk
        except Exception as error:
            # A consumer in another runtime (obstore's) may wrap what it caught; the caller re-raises the original.
            self.error = error
            raise

    async def drain(self) -> None:
        """Read the whole stream, hashing and counting it (for bytes read only to be checked)."""
        async for _ in self._pass():
            pass

    def matches(self, digest: str) -> bool:
        return self._hasher.hexdigest() == digest

    def check(self, digest: str) -> None:
        actual = self._hasher.hexdigest()
        if actual != digest:
            raise Invalid(f"the content's sha256 is {actual}, not {digest}", code="digest_mismatch")


def is_digest(name: str) -> bool:
    return _DIGEST.match(name) is not None


class LocalBlobStore:
    """Blobs as files in a private directory, `<xx>/<sha256>`; a use refreshes the file's time."""

    def __init__(self, root: Path, store: Store):
        self.root = private_dir(root)
        self._store = store
        self.description = str(self.root)
        self.url_seconds = 0
        self.checked_bytes = 0

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    async def exists(self, digest: str) -> bool:
        """Whether the blob is here; a yes also refreshes its time, because a client that sees it present skips the
        upload and refers to it next, and retention's blob collection keeps anything that recent (its grace)."""
        return await asyncio.to_thread(self._touch, self.path(digest))

    @staticmethod
    def _touch(path: Path) -> bool:
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    async def projects(self, digest: str) -> frozenset[str]:
        """The projects whose tokens may read the blob (none: nobody but an admin)."""
        return await blob_projects(self._store, digest)

    async def put(self, digest: str, chunks: AsyncIterator[bytes], project: str) -> tuple[bool, int]:
        """Store a stream under its digest for `project`; returns whether the bytes were new, and their size.

        A stream over `MAX_BLOB` is `TooLarge` and one whose sha256 is not `digest` `Invalid`; neither leaves a file.
        """
        target = self.path(digest)
        await asyncio.to_thread(target.parent.mkdir, mode=0o700, exist_ok=True)
        fd, tmp = await asyncio.to_thread(tempfile.mkstemp, dir=target.parent, prefix=".upload-")
        try:
            stream = HashingStream(chunks)
            await _receive(fd, aiter(stream))
            stream.check(digest)
            created = await asyncio.to_thread(_install, Path(tmp), target)
            if not created:
                self._touch(target)  # found already there: as new to retention's grace period as an upload
        finally:
            await asyncio.to_thread(Path(tmp).unlink, missing_ok=True)
        await add_owner(self._store, digest, project, at=self.description, size=stream.size)
        return created, stream.size

    async def get(self, digest: str) -> Path:
        """The blob's file (`NotFound` if there is none), for the caller to stream."""
        path = self.path(digest)
        if not await asyncio.to_thread(path.is_file):
            raise NotFound(f"no blob {digest}")
        return path

    async def response(self, digest: str) -> web.StreamResponse:
        return web.FileResponse(await self.get(digest), headers={"Content-Type": "application/octet-stream"})

    async def chunks(self, digest: str) -> AsyncIterator[bytes]:
        try:
            blob = await asyncio.to_thread(self.path(digest).open, "rb")
        except FileNotFoundError:
            return
        with blob:
            while chunk := await asyncio.to_thread(blob.read, _WRITE_CHUNK):
                yield chunk

    async def sweep(self, marked: set[str], older_than: float) -> list[str]:
        return await asyncio.to_thread(_sweep, _blob_files(self.root), marked, older_than)

    async def delete(self, digest: str) -> None:
        await asyncio.to_thread(self.path(digest).unlink, missing_ok=True)

    async def upload_url(self, digest: str, uploader: Uploader) -> tuple[str, str, dict[str, str]]:
        raise _no_direct()

    async def commit_upload(
        self, digest: str, uploader: Uploader, upload: str, multipart: str | None = None, parts: int = 0
    ) -> tuple[bool, int]:
        raise _no_direct()

    async def multipart_urls(
        self, digest: str, uploader: Uploader, sha256: Sequence[str], resume: tuple[str, str] | None = None
    ) -> tuple[str, str, dict[int, str], list[int]]:
        raise _no_direct()

    async def download_url(self, digest: str) -> str:
        raise _no_direct()


def _no_direct() -> Conflict:
    return Conflict("this gateway's blob store is a directory: use the blob API", code="no_direct_transfer")


def _blob_files(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        return
    for shard in root.iterdir():
        if shard.is_dir():
            yield from (p for p in shard.iterdir() if is_digest(p.name))


def _sweep(files: Iterable[Path], marked: set[str], older_than: float) -> list[str]:
    removed: list[str] = []
    for path in files:
        try:
            if path.name not in marked and path.stat().st_mtime < older_than:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:
            continue
    return removed


async def _receive(fd: int, chunks: AsyncIterator[bytes]) -> None:
    """Write the stream to `fd`, a megabyte at a time."""
    pending: list[bytes] = []
    buffered = 0
    with os.fdopen(fd, "wb") as out:
        async for chunk in chunks:
            pending.append(chunk)
            buffered += len(chunk)
            if buffered >= _WRITE_CHUNK:
                await asyncio.to_thread(out.writelines, pending)
                pending, buffered = [], 0
        await asyncio.to_thread(_finish, out, pending)


def _finish(out: BinaryIO, pending: list[bytes]) -> None:
    out.writelines(pending)
    out.flush()
    os.fsync(out.fileno())


def _install(tmp: Path, target: Path) -> bool:
    if target.exists():
        return False
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return True


def open_blob_store(where: str | Path, store: Store, endpoint: str | None = None) -> BlobStore:
    """The blob store `flyte gateway serve --blobs` names: an `s3://`, `gs://` or `az://` URL, else a directory."""
    text = str(where)
    if "://" in text:
        from gateway._blobs_s3 import ObjectBlobStore

        return ObjectBlobStore(text, store, endpoint=endpoint)
    if endpoint is not None:
        raise ValueError(f"--blobs-endpoint {endpoint} is for an object store; --blobs {text} is a directory")
    return LocalBlobStore(Path(text), store)

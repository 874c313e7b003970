"""Blobs in S3-compatible object storage (or GCS, or Azure) through obstore: `flyte gateway serve --blobs s3://B/P`.

Layout under the URL's prefix: `blobs/<sha256>` for stored blobs, `uploads/<random>` for uploads through the gateway
in progress, `uploads/<project>/<token id>/<sha256>/<random>` for direct uploads (a presigned PUT URL names one such
key). An upload through the gateway streams into a staging object, hashed on the way (obstore turns a stream into a
multipart upload, so memory stays flat); only when the digest matches is it copied to its final key, server-side,
and the staging object is deleted either way. A direct upload is checked by the store (its URL is signed with the
sha256), or else is its uploader's claim (`gateway._blobs.BlobRecord.claimed`): no project ever reads bytes that
were not checked unless it uploaded them itself.

Credentials and the endpoint come from the usual environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_REGION`, `AWS_ENDPOINT_URL`, ...), read by obstore; `--blobs-endpoint` overrides the endpoint, and plain http is
allowed for a loopback endpoint only (a local S3 server), never for a remote one.

An object's time cannot be refreshed in place, so a use (`exists`) is recorded in the state store under
`/flyte/blob-seen/<sha256>`; the sweep counts the later of that and the object's own time.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import obstore
import obstore.exceptions
from aiohttp import web
from obstore.store import AzureStore, GCSStore, ObjectStore, S3Store, from_url

from flyte._env import env_float
from gateway import _s3_multipart as s3_multipart
from gateway._blobs import (
    BlobStoreUnavailable,
    HashingStream,
    Uploader,
    add_owner,
    blob_projects,
    blob_record,
    check_digest,
    is_digest,
    store_identity,
)
from gateway._domain_errors import Conflict, Invalid, NotFound
from gateway._keys import blob_seen_key
from gateway._s3_multipart import Credentials
from gateway.store import Delete, Store

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("flyte.gateway")

RETRY_SECONDS = 10.0
URL_SECONDS = env_float("FLYTE_BLOB_URL_SECONDS", 300.0)
"""How long a presigned URL the gateway issues stays valid."""
_STREAM_CHUNK = 1024 * 1024
_PART = 5 * 1024 * 1024
_PARTS_IN_FLIGHT = 4
"""A multipart upload holds up to this many parts in memory: the gateway's memory stays flat whatever the size."""
_BATCH = 100


def _guarded(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The object store's failures (down, refusing, timing out) as a 503 `blob_store_unavailable`; the details go
    to the log, not to the client."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except obstore.exceptions.BaseError as error:
            log.warning("blob store: %s failed: %s", method.__name__, error)
            raise BlobStoreUnavailable() from error

    return call


def _is_loopback_url(url: str) -> bool:
    from gateway._serve import is_loopback

    host = urllib.parse.urlsplit(url).hostname or ""
    return is_loopback(host)


class ObjectBlobStore:
    def __init__(
        self,
        url: str,
        store: Store,
        endpoint: str | None = None,
        clock: Callable[[], float] = time.time,
        url_seconds: float = URL_SECONDS,
    ) -> None:
        config: S3Config = {}
        client: ClientConfig = {}
        if endpoint is not None:
            config["endpoint"] = endpoint
        target = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if target is not None and target.startswith("http://"):
            if not _is_loopback_url(target):
                raise ValueError(f"the object store endpoint {target} is plain http on a remote host: use https")
            client["allow_http"] = True
        self.url = url.rstrip("/")
        self.description = store_identity(self.url, endpoint)
        # A store that is down is a 503 within seconds, so the client's own retries (a worker's attempt, the SDK)
        # take over, rather than a request held for obstore's default three minutes.
        retry: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=RETRY_SECONDS)}
        try:
            made = from_url(self.url, config=config or None, client_options=client or None, retry_config=retry)
        except obstore.exceptions.BaseError:
            made = None
        if not isinstance(made, S3Store | GCSStore | AzureStore):
            raise ValueError(f"--blobs {url}: an object store is s3://, gs:// or az://BUCKET/PREFIX")
        self.object_store = made
        self._store = store
        self._clock = clock
        self.url_seconds = max(1, int(url_seconds))
        self.url_lifetime = timedelta(seconds=self.url_seconds)
        self.checked_bytes = 0

    @staticmethod
    def key(digest: str) -> str:
        return f"blobs/{check_digest(digest)}"

    @_guarded
    async def exists(self, digest: str) -> bool:
        try:
            await obstore.head_async(self.object_store, self.key(digest))
        except FileNotFoundError:
            return False
        await self._store.put(blob_seen_key(digest), str(self._clock()).encode())
        return True

    async def projects(self, digest: str) -> frozenset[str]:
        return await blob_projects(self._store, digest)

    @_guarded
    async def put(self, digest: str, chunks: AsyncIterator[bytes], project: str) -> tuple[bool, int]:
        final = self.key(digest)
        staging = f"uploads/{uuid.uuid4().hex}"
        stream = HashingStream(chunks)
        try:
            try:
                await obstore.put_async(
                    self.object_store, staging, stream, chunk_size=_PART, max_concurrency=_PARTS_IN_FLIGHT
                )
            except Exception:
                if stream.error is not None:
                    raise stream.error from None
                raise
            stream.check(digest)
            created = not await self.exists(digest)
            if created:
                await obstore.copy_async(self.object_store, staging, final)
        finally:
            await _delete_quietly(self.object_store, staging)
        await add_owner(self._store, digest, project, at=self.description, size=stream.size)
        return created, stream.size

    def _signer(self) -> Credentials | None:
        """The key pair to sign S3 URLs with ourselves (checksums, multipart); None: only obstore's plain URLs."""
        return Credentials.from_environment() if isinstance(self.object_store, S3Store) else None

    @_guarded
    async def delete(self, digest: str) -> None:
        await _delete_quietly(self.object_store, self.key(digest))

    @_guarded
    async def upload_url(self, digest: str, uploader: Uploader) -> tuple[str, str, dict[str, str]]:
        upload = uuid.uuid4().hex
        staged = _staged(digest, uploader, upload)
        credentials = self._signer()
        if credentials is None:
            return str(await obstore.sign_async(self.object_store, "PUT", staged, self.url_lifetime)), upload, {}
        headers = s3_multipart.checksum_headers(_base64(digest))
        url = s3_multipart.presign(
            "PUT", await self._object_url(staged), {}, credentials, self.url_seconds, None, headers
        )
        return url, upload, headers

    @_guarded
    async def multipart_urls(
        self, digest: str, uploader: Uploader, sha256: Sequence[str], resume: tuple[str, str] | None = None
    ) -> tuple[str, str, dict[int, str], list[int]]:
        credentials = self._signer()
        if credentials is None:
            raise Conflict("this store takes an upload in one piece: use the URL of uploads", code="no_multipart")
        upload = resume[0] if resume else uuid.uuid4().hex
        url = await self._object_url(_staged(digest, uploader, upload))
        try:
            if resume is None:
                multipart, held = await s3_multipart.start(url, credentials, self.url_seconds), {}
            else:
                multipart = resume[1]
                held = await s3_multipart.parts(url, multipart, credentials, self.url_seconds)
        except s3_multipart.MultipartError as error:
            log.warning("blob store: multipart upload of %s: %s", digest, error)
            raise NotFound(f"no multipart upload {upload} of blob {digest} to resume") from None
        missing = {
            n: s3_multipart.part_url(url, multipart, n, credentials, self.url_seconds, sha256[n - 1])
            for n in range(1, len(sha256) + 1)
            if n not in held
        }
        return upload, multipart, missing, sorted(held)

    async def _object_url(self, key: str) -> str:
        """The object's URL as obstore addresses it (path or virtual-hosted style, its encoding), unsigned."""
        signed = await obstore.sign_async(self.object_store, "PUT", key, self.url_lifetime)
        return str(signed).split("?", 1)[0]

    async def _join_parts(self, staged: str, multipart: str, count: int) -> None:
        credentials = self._signer()
        if credentials is None:
            raise Conflict("this store takes an upload in one piece", code="no_multipart")
        url = await self._object_url(staged)
        try:
            held = await s3_multipart.parts(url, multipart, credentials, self.url_seconds)
        except s3_multipart.MultipartError as error:
            log.warning("blob store: listing the parts of %s: %s", staged, error)
            raise NotFound(f"no multipart upload {multipart} with parts to join at {staged}") from None
        missing = sorted(set(range(1, count + 1)) - set(held))
        if missing or len(held) != count:
            raise Invalid(
                f"the upload holds {len(held)} parts of {count} (missing: {missing[:10]}): send them, then commit",
                code="parts_missing",
            )
        try:
            await s3_multipart.complete(url, multipart, held, credentials, self.url_seconds)
        except s3_multipart.MultipartError as error:
            log.warning("blob store: joining the parts of %s: %s", staged, error)
            raise NotFound(f"no multipart upload {multipart} with parts to join at {staged}") from None

    @_guarded
    async def commit_upload(
        self, digest: str, uploader: Uploader, upload: str, multipart: str | None = None, parts: int = 0
    ) -> tuple[bool, int]:
        """A single PUT through a URL signed with the digest was checked by the store: it is copied to the blob's
        key, server-side, and no byte comes to the gateway. Other uploads (multipart, whose whole digest no store
        checks; a URL obstore signed, without the checksum) are the uploader's claim: the first of a digest becomes
        a claimed blob only the uploader reads; one of a digest that others hold is read back and hashed here
        (a rare case: the client asks first whether the blob is there), and one of a digest the uploader reads
        already is dropped."""
        staged = _staged(digest, uploader, upload)
        if multipart is not None:
            await self._join_parts(staged, multipart, parts)
        try:
            size = int((await obstore.head_async(self.object_store, staged))["size"])
        except FileNotFoundError:
            raise NotFound(f"no upload {upload} of blob {digest} (never sent, or committed already)") from None
        try:
            checked = multipart is None and self._signer() is not None
            if not checked:
                record = await blob_record(self._store, digest)
                if record is not None and uploader.project in record.projects:
                    return False, size
                if await add_owner(self._store, digest, uploader.project, at=self.description, size=size, claimed=True):
                    return await self._install(staged, digest), size
                await self._read_back(staged, digest)
            created = await self._install(staged, digest)
        finally:
            await _delete_quietly(self.object_store, staged)
        await add_owner(self._store, digest, uploader.project, at=self.description, size=size)
        return created, size

    async def _install(self, staged: str, digest: str) -> bool:
        """Copy the staged bytes to the blob's key unless it is there already; whether they were new."""
        created = not await self.exists(digest)
        if created:
            await obstore.copy_async(self.object_store, staged, self.key(digest))
        return created

    async def _read_back(self, key: str, digest: str) -> None:
        """Hash the object at `key` here (`Invalid` unless it is `digest`'s bytes): store to gateway, for bytes that
        no store checked and that must prove they are the digest's."""
        result = await obstore.get_async(self.object_store, key)
        stream = HashingStream(_bytes(result.stream(min_chunk_size=_STREAM_CHUNK)), limited=False)
        try:
            await stream.drain()
        finally:
            self.checked_bytes += stream.size
        stream.check(digest)

    @_guarded
    async def download_url(self, digest: str) -> str:
        try:
            await obstore.head_async(self.object_store, self.key(digest))
        except FileNotFoundError:
            raise NotFound(f"no blob {digest}") from None
        return str(await obstore.sign_async(self.object_store, "GET", self.key(digest), self.url_lifetime))

    @_guarded
    async def response(self, digest: str) -> web.StreamResponse:
        try:
            result = await obstore.get_async(self.object_store, self.key(digest))
        except FileNotFoundError:
            raise NotFound(f"no blob {digest}") from None
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(result.meta["size"])}
        return web.Response(body=_bytes(result.stream(min_chunk_size=_STREAM_CHUNK)), headers=headers)

    async def chunks(self, digest: str) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(self.object_store, self.key(digest))
            async for chunk in _bytes(result.stream(min_chunk_size=_STREAM_CHUNK)):
                yield chunk
        except FileNotFoundError:
            return
        except obstore.exceptions.BaseError as error:
            raise BlobStoreUnavailable() from error

    @_guarded
    async def sweep(self, marked: set[str], older_than: float) -> list[str]:
        candidates: list[str] = []
        async for batch in obstore.list(self.object_store, "blobs/"):
            for meta in batch:
                name = meta["path"].rsplit("/", 1)[-1]
                if is_digest(name) and name not in marked and meta["last_modified"].timestamp() < older_than:
                    candidates.append(name)
        removed: list[str] = []
        for digest in candidates:
            seen = await self._store.get(blob_seen_key(digest))
            if seen is not None and float(seen.value) >= older_than:
                continue
            await obstore.delete_async(self.object_store, self.key(digest))
            removed.append(digest)
        for start in range(0, len(removed), _BATCH):
            await self._store.txn([], [Delete(blob_seen_key(d)) for d in removed[start : start + _BATCH]])
        await self._sweep_uploads(older_than)
        return removed

    async def _sweep_uploads(self, older_than: float) -> None:
        """Staged uploads that old were abandoned (a URL issued and never committed, a gateway killed mid-upload)."""
        async for batch in obstore.list(self.object_store, "uploads/"):
            stale = [meta["path"] for meta in batch if meta["last_modified"].timestamp() < older_than]
            if stale:
                await obstore.delete_async(self.object_store, stale)


def _base64(digest: str) -> str:
    """A hex sha256 as S3's checksum headers spell it."""
    return base64.b64encode(bytes.fromhex(digest)).decode()


def _staged(digest: str, uploader: Uploader, upload: str) -> str:
    """Where a direct upload lands: its project, token, digest and id in the key, so a URL is good for nothing else."""
    return f"uploads/{uploader.prefix}/{check_digest(digest)}/{upload}"


async def _bytes(stream: Any) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield bytes(chunk)


async def _delete_quietly(store: ObjectStore, key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        await obstore.delete_async(store, key)

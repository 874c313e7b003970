"""The gateway's blob store: content-addressed bytes (code bundles, large values, files) in a local directory.

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
import hashlib
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from flyte._paths import private_dir
from gateway._domain_errors import Invalid, NotFound, TooLarge
from gateway._keys import blob_owners_key
from gateway.store import Compare, Put, Store

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_BLOB = int(os.environ.get("FLYTE_MAX_BLOB_BYTES", str(256 * 1024 * 1024)))
"""The largest blob an upload may carry."""
_WRITE_CHUNK = 1024 * 1024
"""Bytes gathered before each write to disk (off the event loop)."""


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise Invalid(f"a blob key is the sha256 of its content (64 lower-case hex digits), not {digest[:80]!r}")
    return digest


class BlobStore:
    def __init__(self, root: Path, store: Store):
        self.root = private_dir(root)
        self._store = store

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
        kv = await self._store.get(blob_owners_key(check_digest(digest)))
        return frozenset(json.loads(kv.value)) if kv is not None else frozenset()

    async def put(self, digest: str, chunks: AsyncIterator[bytes], project: str) -> tuple[bool, int]:
        """Store a stream under its digest for `project`; returns whether the bytes were new, and their size.

        A stream over `MAX_BLOB` is `TooLarge` and one whose sha256 is not `digest` `Invalid`; neither leaves a file.
        """
        target = self.path(digest)
        await asyncio.to_thread(target.parent.mkdir, mode=0o700, exist_ok=True)
        fd, tmp = await asyncio.to_thread(tempfile.mkstemp, dir=target.parent, prefix=".upload-")
        try:
            size, actual = await _receive(fd, chunks)
            if actual != digest:
                raise Invalid(f"the content's sha256 is {actual}, not {digest}", code="digest_mismatch")
            created = await asyncio.to_thread(_install, Path(tmp), target)
            if not created:
                self._touch(target)  # found already there: as new to retention's grace period as an upload
        finally:
            await asyncio.to_thread(Path(tmp).unlink, missing_ok=True)
        await self._own(digest, project)
        return created, size

    async def _own(self, digest: str, project: str) -> None:
        """Add `project` to the blob's readers (a compare-and-swap: concurrent uploads both land)."""
        key = blob_owners_key(digest)
        while True:
            kv = await self._store.get(key)
            owners = set(json.loads(kv.value)) if kv is not None else set()
            if project in owners:
                return
            value = json.dumps(sorted(owners | {project})).encode()
            result = await self._store.txn([Compare(key, kv.mod_revision if kv else 0)], [Put(key, value)])
            if result.succeeded:
                return

    async def get(self, digest: str) -> Path:
        """The blob's file (`NotFound` if there is none), for the caller to stream."""
        path = self.path(digest)
        if not await asyncio.to_thread(path.is_file):
            raise NotFound(f"no blob {digest}")
        return path


async def _receive(fd: int, chunks: AsyncIterator[bytes]) -> tuple[int, str]:
    """Write the stream to `fd`, a megabyte at a time; returns its size and sha256."""
    hasher = hashlib.sha256()
    size = 0
    pending: list[bytes] = []
    buffered = 0
    with os.fdopen(fd, "wb") as out:
        async for chunk in chunks:
            size += len(chunk)
            if size > MAX_BLOB:
                raise TooLarge(f"the blob is over the limit of {MAX_BLOB} bytes")
            hasher.update(chunk)
            pending.append(chunk)
            buffered += len(chunk)
            if buffered >= _WRITE_CHUNK:
                await asyncio.to_thread(out.writelines, pending)
                pending, buffered = [], 0
        await asyncio.to_thread(_finish, out, pending)
    return size, hasher.hexdigest()


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

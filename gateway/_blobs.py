"""The gateway's blob store: content-addressed bytes (code bundles, large values, files) in a local directory.

A blob's key is the sha256 of its content, checked on upload, so a key is never a path: nothing a client sends can
name a file outside the store. Writes go to a temporary file and are renamed into place, so a reader never sees
half a blob and a crash leaves no partial one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

from gateway._errors import bad_request, not_found

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise bad_request(f"a blob key is the sha256 of its content (64 lower-case hex digits), not {digest[:80]!r}")
    return digest


class BlobStore:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

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

    async def put(self, digest: str, data: bytes) -> bool:
        """Store bytes under their digest; returns whether they were new."""
        check_digest(digest)
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise bad_request(f"the content's sha256 is {actual}, not {digest}", code="digest_mismatch")
        return await asyncio.to_thread(self._write, digest, data)

    def _write(self, digest: str, data: bytes) -> bool:
        target = self.path(digest)
        if self._touch(target):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    async def get(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise not_found(f"no blob {digest}") from None

"""`flyte gateway backup` and `restore`: every key of the gateway at one revision, as JSON lines, optionally in a tar
file with the blobs.

A backup is a header line (`format`, `version`, `revision`, `created_at`, `keys`) and one line per key (`key`,
`value` in base64). Keys are read through `Store.snapshot`, in pages, so a backup of a live gateway is consistent
(one revision) without holding every key in memory. Keys held by a lease (agent sessions) are left out: they belong
to connections that will not exist when the backup is restored. With blobs, the file is a tar of `store.jsonl`
and `blobs/<xx>/<sha256>`; blobs are immutable and read after the snapshot, so every blob a backed-up run names is
in it unless retention collected it in between.

A restore writes the keys in transactions of at most `_RESTORE_OPS` keys and `_RESTORE_BYTES` bytes (etcd refuses
requests over ~1.5 MiB). Revisions are not restored: the keys get new ones, and clients re-list. An empty store is
required unless `force`, which writes over keys of the same name and leaves the others.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gateway._keys import ROOT
from gateway.store import Put, Store

"""Every key the gateway writes is under this prefix; others in a shared etcd are not ours to back up."""
FORMAT, VERSION = "flyte-gateway-backup", 1
_STORE_MEMBER = "store.jsonl"
_BLOB = re.compile(r"^blobs/([0-9a-f]{2})/([0-9a-f]{64})$")
_RESTORE_OPS = 100
_RESTORE_BYTES = 512 * 1024


class BackupError(Exception):
    """A backup or restore refused or failed; the message says why."""


@dataclass(frozen=True)
class BackupSummary:
    revision: int
    keys: int
    blobs: int


async def backup(store: Store, out: Path, blobs: Path | None = None) -> BackupSummary:
    """Write a backup of `store` (and the blob directory `blobs`, if given) to `out`, atomically."""
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            if blobs is None:
                revision, keys = await _write_keys(store, raw)
                count = 0
            else:
                with tempfile.TemporaryFile() as lines:
                    revision, keys = await _write_keys(store, lines)
                    count = await asyncio.to_thread(_write_tar, raw, lines, blobs)
            raw.flush()
            os.fsync(raw.fileno())
        await asyncio.to_thread(tmp.replace, out)
    except BaseException:
        await asyncio.to_thread(tmp.unlink, True)
        raise
    return BackupSummary(revision, keys, count)


async def _write_keys(store: Store, out: IO[bytes]) -> tuple[int, int]:
    """The header, then one line per key. The header names the revision and the count, known only once every page
    is read, so the lines are buffered in a temporary file and copied after it."""
    with tempfile.TemporaryFile() as body:
        revision, count = await store.revision(), 0
        async for at, kvs in store.snapshot(ROOT):
            revision = at
            for kv in kvs:
                if kv.lease:
                    continue
                line = {"key": kv.key, "value": base64.b64encode(kv.value).decode()}
                body.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
                count += 1
            await asyncio.sleep(0)
        header = {"format": FORMAT, "version": VERSION, "revision": revision, "created_at": time.time(), "keys": count}
        out.write(json.dumps(header).encode() + b"\n")
        body.seek(0)
        await asyncio.to_thread(_copy, body, out)
    return revision, count


def _copy(source: IO[bytes], target: IO[bytes]) -> None:
    while chunk := source.read(1 << 20):
        target.write(chunk)


def _write_tar(raw: IO[bytes], lines: IO[bytes], blobs: Path) -> int:
    count = 0
    with tarfile.open(fileobj=raw, mode="w") as tar:
        size = lines.seek(0, io.SEEK_END)
        lines.seek(0)
        info = tarfile.TarInfo(_STORE_MEMBER)
        info.size, info.mtime = size, int(time.time())
        tar.addfile(info, lines)
        for shard in sorted(blobs.iterdir()) if blobs.is_dir() else []:
            for path in sorted(shard.iterdir()) if shard.is_dir() else []:
                if _BLOB.match(f"blobs/{shard.name}/{path.name}"):
                    with contextlib.suppress(FileNotFoundError):
                        tar.add(path, arcname=f"blobs/{shard.name}/{path.name}", recursive=False)
                        count += 1
    return count


# -- restore -------------------------------------------------------------------------------------------------------


async def restore(store: Store, source: Path, blobs: Path | None = None, *, force: bool = False) -> BackupSummary:
    """Write a backup's keys into `store` (and its blobs into `blobs`, if given)."""
    existing, _ = await store.range(ROOT, limit=1)
    if existing and not force:
        raise BackupError(
            f"the store already holds keys (e.g. {existing[0].key}); restore into an empty store, or --force"
        )
    is_tar = await asyncio.to_thread(tarfile.is_tarfile, source)
    if blobs is not None and not is_tar:
        raise BackupError(f"{source} holds no blobs (it was made without --with-blobs)")
    with contextlib.ExitStack() as stack:
        tar = stack.enter_context(tarfile.open(source, mode="r")) if is_tar else None
        if tar is not None:
            member = tar.extractfile(_STORE_MEMBER)
            if member is None:
                raise BackupError(f"{source} is a tar file without {_STORE_MEMBER}: not a gateway backup")
            lines: IO[bytes] = stack.enter_context(member)
        else:
            lines = stack.enter_context(source.open("rb"))
        header = _header(lines.readline(), source)
        keys = await _restore_keys(store, lines, source)
        if keys != header["keys"]:
            raise BackupError(f"{source} is truncated: its header counts {header['keys']} keys, it holds {keys}")
        count = await asyncio.to_thread(_restore_blobs, tar, blobs) if tar is not None and blobs is not None else 0
    return BackupSummary(header["revision"], keys, count)


def _header(line: bytes, source: Path) -> dict[str, int]:
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{source} is not a gateway backup (no {FORMAT} header)")
    if header.get("version") != VERSION:
        raise BackupError(f"{source} is a version {header.get('version')} backup; this gateway reads version {VERSION}")
    if not all(isinstance(header.get(field), int) for field in ("revision", "keys")):
        raise BackupError(f"{source} has a damaged header: {line[:200]!r}")
    return {"revision": header["revision"], "keys": header["keys"]}


def _lines(lines: IO[bytes], source: Path) -> Iterator[Put]:
    for number, line in enumerate(lines, start=2):
        try:
            item = json.loads(line)
            yield Put(str(item["key"]), base64.b64decode(item["value"], validate=True))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackupError(f"{source} line {number} is not a key of a backup: {exc}") from None


async def _restore_keys(store: Store, lines: IO[bytes], source: Path) -> int:
    batch: list[Put] = []
    size = count = 0
    for put in _lines(lines, source):
        if batch and (len(batch) >= _RESTORE_OPS or size + len(put.value) > _RESTORE_BYTES):
            await store.txn([], batch)
            batch, size = [], 0
        batch.append(put)
        size += len(put.key) + len(put.value)
        count += 1
    if batch:
        await store.txn([], batch)
    return count


def _restore_blobs(tar: tarfile.TarFile, blobs: Path) -> int:
    count = 0
    for member in tar:
        match = _BLOB.match(member.name)
        if match is None or not member.isfile():
            continue
        target = blobs / match.group(1) / match.group(2)
        source = tar.extractfile(member)
        if source is None or target.exists():
            continue
        data = source.read()
        if hashlib.sha256(data).hexdigest() != match.group(2):
            raise BackupError(f"blob {match.group(2)} in the backup does not match its digest: the file is damaged")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".restore-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
        count += 1
    return count

"""`flyte.storage`'s operations, on local paths and on object-store URIs (`s3://`, `gs://`, `abfs://`, `abfss://`).

As in Flyte 2, `get`, `put`, `exists`, `put_stream` and `get_stream` are coroutines. Remote URIs go through obstore
(already the gateway's object-store client), configured by `flyte.storage._config`; a URI is
`SCHEME://BUCKET/KEY`, and a "directory" is a key prefix (`recursive=True` copies every object under it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path
from typing import Any

import obstore
from obstore.store import ObjectStore, from_url

from ._config import settings_for

REMOTE_SCHEMES = ("s3", "gs", "abfs", "abfss")
_CHUNK = 10 * 2**20


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether a path names an object store (has a scheme other than file://)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def _local(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path).removeprefix("file://"))


def _remote(uri: str) -> tuple[ObjectStore, str]:
    """The store of a URI's bucket and the key it names."""
    scheme, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if scheme not in REMOTE_SCHEMES:
        raise ValueError(f"flyte.storage reaches {', '.join(s + '://' for s in REMOTE_SCHEMES)} URIs, not {uri!r}")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    settings = settings_for(scheme)
    # The settings are built per scheme, so they fit the overload of the URL's kind.
    store = from_url(  # type: ignore[call-overload]
        f"{scheme}://{bucket}",
        config=settings.store_config() or None,
        client_options=settings.client_options() or None,
        retry_config=settings.retry_config(),
    )
    return store, key


def join(*paths: str) -> str:
    """Join path segments with '/', as object-store keys are joined."""
    if not paths:
        raise TypeError("join needs at least one path")
    return "/".join([paths[0].rstrip("/"), *(p.strip("/") for p in paths[1:])])


def get_random_local_path(file_path_or_file_name: str | os.PathLike[str] | None = None) -> Path:
    """A fresh path under a temporary directory (keeping the given name's last part, if any)."""
    name = Path(file_path_or_file_name).name if file_path_or_file_name else uuid.uuid4().hex
    return Path(tempfile.mkdtemp(prefix="flyte-")) / name


def get_random_local_directory() -> Path:
    """A fresh empty temporary directory."""
    return Path(tempfile.mkdtemp(prefix="flyte-"))


async def _keys_under(store: ObjectStore, prefix: str) -> list[str]:
    keys: list[str] = []
    async for batch in obstore.list(store, prefix.rstrip("/") + "/" if prefix else None):
        keys.extend(meta["path"] for meta in batch)
    return keys


async def exists(path: str, **kwargs: Any) -> bool:
    """Whether a local path, an object, or (for a prefix) any object under it, exists."""
    if not is_remote(path):
        return _local(path).exists()
    store, key = _remote(path)
    try:
        await obstore.head_async(store, key)
        return True
    except FileNotFoundError:
        return bool(await _keys_under(store, key))


def exists_sync(path: str, **kwargs: Any) -> bool:
    """`exists` from synchronous code (not from a running event loop's thread)."""
    return asyncio.run(exists(path, **kwargs))


def _copy(source: Path, target: Path, recursive: bool) -> str:
    if source.is_dir():
        if not recursive:
            raise IsADirectoryError(f"{source} is a directory; pass recursive=True")
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return str(target)


async def _download(store: ObjectStore, key: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    result = await obstore.get_async(store, key)
    with target.open("wb") as out:
        async for chunk in result.stream(min_chunk_size=_CHUNK):
            await asyncio.to_thread(out.write, bytes(chunk))


async def get(
    from_path: str, to_path: str | os.PathLike[str] | None = None, recursive: bool = False, **kwargs: Any
) -> str:
    """Copy a file (or with `recursive`, a directory or key prefix) to a local path; a fresh one when None."""
    target = _local(to_path) if to_path else get_random_local_path(from_path.rstrip("/").rsplit("/", 1)[-1])
    if not is_remote(from_path):
        return await asyncio.to_thread(_copy, _local(from_path), target, recursive)
    store, key = _remote(from_path)
    if not recursive:
        await _download(store, key, target)
        return str(target)
    prefix = key.rstrip("/") + "/" if key else ""
    keys = await _keys_under(store, key)
    if not keys:
        raise FileNotFoundError(f"nothing stored under {from_path}")
    for each in keys:
        await _download(store, each, target / each.removeprefix(prefix))
    return str(target)


async def put(from_path: str, to_path: str | None = None, recursive: bool = False, **kwargs: Any) -> str:
    """Copy a local file (or with `recursive`, a directory) to `to_path`: an object-store URI or a local path.

    With no `to_path` the copy goes to a fresh local path (there is no default remote raw-data location here).
    """
    source = _local(from_path)
    if not to_path or not is_remote(to_path):
        target = _local(to_path) if to_path else get_random_local_path(source.name)
        return await asyncio.to_thread(_copy, source, target, recursive)
    store, key = _remote(to_path)
    if source.is_dir():
        if not recursive:
            raise IsADirectoryError(f"{source} is a directory; pass recursive=True")
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            await obstore.put_async(store, join(key, file.relative_to(source).as_posix()), file)
    else:
        await obstore.put_async(store, key, source)
    return to_path


async def put_stream(
    data_iterable: AsyncIterable[bytes] | bytes, *, name: str | None = None, to_path: str | None = None, **kwargs: Any
) -> str:
    """Write bytes, or the chunks of an async iterable, to `to_path` (a fresh local file named `name` when None)."""
    if to_path and is_remote(to_path):
        store, key = _remote(to_path)
        await obstore.put_async(store, key, data_iterable)
        return to_path
    target = _local(to_path) if to_path else get_random_local_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        if isinstance(data_iterable, bytes):
            out.write(data_iterable)
        else:
            async for chunk in data_iterable:
                out.write(chunk)
    return str(target)


async def get_stream(path: str, chunk_size: int = _CHUNK, **kwargs: Any) -> AsyncGenerator[bytes, None]:
    """The bytes of a file or object, in chunks of about `chunk_size`."""
    if not is_remote(path):
        with _local(path).open("rb") as source:
            while chunk := source.read(chunk_size):
                yield chunk
        return
    store, key = _remote(path)
    result = await obstore.get_async(store, key)
    async for piece in result.stream(min_chunk_size=chunk_size):
        yield bytes(piece)

"""`flyte.io.File`: a reference to a single file that can be passed between tasks.

A File is a small frozen pydantic model (a URI plus a name, a format and an optional content hash), so it
crosses task boundaries as JSON while the bytes stay in the blob store (`._blobs`). Every async method has a
`_sync` twin, following Flyte 2. Only `file://` URIs and plain local paths can be read or written for now;
other schemes raise ValueError when touched, not when the File is built, so a File naming an object store
can still be passed along untouched.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any, Self

from pydantic import BaseModel, ConfigDict

from flyte.io._blobs import (
    copy_file_atomic,
    file_sha256,
    is_content_addressed,
    new_writable_path,
    path_to_uri,
    put_file_hashed,
    uri_basename,
    uri_to_path,
)

__all__ = ["File", "FileHandle"]


class File(BaseModel):
    """A file in the blob store (or any local path), by reference."""

    model_config = ConfigDict(frozen=True)

    path: str
    """A `file://` URI or a local path."""
    name: str | None = None
    format: str = ""
    hash: str | None = None
    """sha256 hex of the content when known; a stable cache key for the file."""

    @classmethod
    async def from_local(cls, local_path: str | Path, remote_destination: str | None = None) -> Self:
        """Upload a local file; see `from_local_sync`."""
        return await asyncio.to_thread(cls.from_local_sync, local_path, remote_destination)

    @classmethod
    def from_local_sync(cls, local_path: str | Path, remote_destination: str | None = None) -> Self:
        """Copy a local file into the content-addressed blob store, or to `remote_destination` if given.

        The copy means later edits to `local_path` do not change what downstream tasks read.
        """
        source = Path(local_path).expanduser()
        if remote_destination is None:
            uri, digest = put_file_hashed(source, source.name)
            return cls(path=uri, name=source.name, hash=digest)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        target = uri_to_path(remote_destination)
        if target.is_dir():
            target = target / source.name
        if is_content_addressed(target):
            raise ValueError(f"refusing to write into the content-addressed blob store at {target}")
        copy_file_atomic(source, target)
        return cls(path=path_to_uri(target), name=target.name, hash=file_sha256(source))

    @classmethod
    def from_existing_remote(cls, remote_path: str, file_cache_key: str | None = None) -> Self:
        """Refer to a file that already exists; nothing is copied or checked until it is read."""
        return cls(path=remote_path, name=uri_basename(remote_path), hash=file_cache_key)

    @classmethod
    def new_remote(cls, name: str | None = None, *, file_name: str | None = None) -> Self:
        """A fresh, empty location to fill with `open("wb")`; readable once written.

        `file_name` is the Flyte 2 spelling of `name`.
        """
        chosen = name or file_name or "file"
        target = new_writable_path(chosen)
        return cls(path=path_to_uri(target), name=chosen)

    @property
    def local_path(self) -> str | None:
        """The file's path on this machine, or None when the URI's scheme is not a local one."""
        try:
            return str(uri_to_path(self.path))
        except ValueError:
            return None

    def _resolve(self) -> Path:
        return uri_to_path(self.path)

    def _missing(self) -> FileNotFoundError:
        return FileNotFoundError(f"file not found: {self.path}")

    async def exists(self) -> bool:
        return await asyncio.to_thread(self.exists_sync)

    def exists_sync(self) -> bool:
        return self._resolve().is_file()

    async def download(self, local_path: str | Path | None = None) -> str:
        """Copy the file to this machine; see `download_sync`."""
        return await asyncio.to_thread(self.download_sync, local_path)

    def download_sync(self, local_path: str | Path | None = None) -> str:
        """Copy the file to `local_path` (into it, if it is a directory) or to a new temporary directory.

        Returns the local path. A copy, not the blob itself, so the caller may modify it freely.
        """
        source = self._resolve()
        if not source.is_file():
            raise self._missing()
        file_name = self.name or source.name
        if local_path is None:
            target = Path(tempfile.mkdtemp(prefix="flyte-file-")) / file_name
        else:
            target = Path(local_path).expanduser()
            if target.is_dir():
                target = target / file_name
        copy_file_atomic(source, target)
        return str(target)

    @asynccontextmanager
    async def open(self, mode: str = "rb") -> AsyncIterator[FileHandle]:
        """Open the file for `async with`. Reads and writes work with or without `await`.

        Flyte 2 code writes `data = await fh.read()`; code written against a plain handle writes
        `data = fh.read()`. The handle supports both.
        """
        raw = await asyncio.to_thread(self._open_raw, mode)
        try:
            yield FileHandle(raw)
        finally:
            raw.close()

    @contextmanager
    def open_sync(self, mode: str = "rb") -> Iterator[IO[Any]]:
        """Open the file as an ordinary file object."""
        raw = self._open_raw(mode)
        try:
            yield raw
        finally:
            raw.close()

    def _open_raw(self, mode: str) -> IO[Any]:
        target = self._resolve()
        encoding = None if "b" in mode else "utf-8"
        if any(flag in mode for flag in "wax+"):
            # Content-addressed blobs are shared by every File with the same bytes; writing one in place
            # would silently change all of them.
            if is_content_addressed(target):
                raise PermissionError(
                    f"{self.path} is a content-addressed blob and cannot be written; "
                    "use File.new_remote() for a writable file"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            return target.open(mode, encoding=encoding)
        try:
            return target.open(mode, encoding=encoding)
        except FileNotFoundError:
            raise self._missing() from None


class _Ready:
    """Makes a value that is already available also awaitable, yielding the plain builtin value."""

    __slots__ = ()

    def _plain(self) -> Any:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, Any]:
        yield from ()
        return self._plain()


class _ReadyBytes(_Ready, bytes):
    __slots__ = ()

    def _plain(self) -> bytes:
        return bytes(self)


class _ReadyStr(_Ready, str):
    __slots__ = ()

    def _plain(self) -> str:
        return str(self)


class _ReadyInt(_Ready, int):
    __slots__ = ()

    def _plain(self) -> int:
        return int(self)


class _ReadyList(_Ready, list[Any]):
    def _plain(self) -> list[Any]:
        return list(self)


class _ReadyNone(_Ready):
    __slots__ = ()

    def _plain(self) -> None:
        return None


def _ready(value: Any) -> Any:
    if isinstance(value, bytes):
        return _ReadyBytes(value)
    if isinstance(value, str):
        return _ReadyStr(value)
    if isinstance(value, int):
        return _ReadyInt(value)
    if isinstance(value, list):
        return _ReadyList(value)
    if value is None:
        return _ReadyNone()
    return value


class FileHandle:
    """What `File.open` yields: a local file object whose calls may also be awaited.

    The work happens when the method is called; awaiting the result only hands back the plain value. Any
    attribute not listed here is the underlying file object's.
    """

    def __init__(self, raw: IO[Any]) -> None:
        self._raw = raw

    @property
    def raw(self) -> IO[Any]:
        """The underlying file object, for libraries that insist on a real one."""
        return self._raw

    def read(self, size: int = -1) -> Any:
        return _ready(self._raw.read(size))

    def readline(self, size: int = -1) -> Any:
        return _ready(self._raw.readline(size))

    def readlines(self, hint: int = -1) -> Any:
        return _ready(self._raw.readlines(hint))

    def write(self, data: Any) -> Any:
        return _ready(self._raw.write(data))

    def writelines(self, lines: Any) -> Any:
        return _ready(self._raw.writelines(lines))

    def seek(self, offset: int, whence: int = 0) -> Any:
        return _ready(self._raw.seek(offset, whence))

    def tell(self) -> Any:
        return _ready(self._raw.tell())

    def flush(self) -> Any:
        return _ready(self._raw.flush())

    def close(self) -> Any:
        return _ready(self._raw.close())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    async def __aiter__(self) -> AsyncIterator[Any]:
        for line in self._raw:
            yield line

    def __getattr__(self, name: str) -> Any:
        # Guard against recursion when `_raw` itself is missing (copy/pickle build instances bare).
        if name == "_raw":
            raise AttributeError(name)
        return getattr(self._raw, name)

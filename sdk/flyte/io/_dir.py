"""`flyte.io.Dir`: a reference to a directory tree that can be passed between tasks.

Like `File`, a Dir is a small frozen pydantic model naming a `file://` URI (or a local path); the tree itself
is stored once, content-addressed, by `._blobs.put_dir`. Walking a Dir yields `File`s for its files in a
stable order (sorted by relative path) so that tasks iterating over it are reproducible.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict

from flyte.io._blobs import (
    copy_file_atomic,
    is_content_addressed,
    path_to_uri,
    put_dir,
    tree_files,
    uri_basename,
    uri_to_path,
)
from flyte.io._file import File

__all__ = ["Dir"]


class Dir(BaseModel):
    """A directory in the blob store (or any local directory), by reference."""

    model_config = ConfigDict(frozen=True)

    path: str
    """A `file://` URI or a local path."""
    name: str | None = None

    @classmethod
    async def from_local(cls, local_dir: str | Path, remote_destination: str | None = None) -> Self:
        """Upload a local directory; see `from_local_sync`."""
        return await asyncio.to_thread(cls.from_local_sync, local_dir, remote_destination)

    @classmethod
    def from_local_sync(cls, local_dir: str | Path, remote_destination: str | None = None) -> Self:
        """Copy a local directory into the blob store (content-addressed), or to `remote_destination`.

        Only files are copied: empty directories carry no content and do not survive.
        """
        source = Path(local_dir).expanduser()
        if remote_destination is None:
            return cls(path=put_dir(source), name=source.name)
        if not source.is_dir():
            raise NotADirectoryError(f"no such directory: {source}")
        target = uri_to_path(remote_destination)
        if is_content_addressed(target):
            raise ValueError(f"refusing to write into the content-addressed blob store at {target}")
        for relative, path in tree_files(source):
            copy_file_atomic(path, target / relative)
        target.mkdir(parents=True, exist_ok=True)
        return cls(path=path_to_uri(target), name=source.name)

    @classmethod
    def from_existing_remote(cls, remote_path: str) -> Self:
        """Refer to a directory that already exists; nothing is copied or checked until it is read."""
        return cls(path=remote_path, name=uri_basename(remote_path) or None)

    def _resolve(self) -> Path:
        return uri_to_path(self.path)

    def _existing(self) -> Path:
        root = self._resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"directory not found: {self.path}")
        return root

    async def exists(self) -> bool:
        return await asyncio.to_thread(self.exists_sync)

    def exists_sync(self) -> bool:
        return self._resolve().is_dir()

    async def download(self, local_path: str | Path | None = None) -> str:
        """Copy the tree to this machine; see `download_sync`."""
        return await asyncio.to_thread(self.download_sync, local_path)

    def download_sync(self, local_path: str | Path | None = None) -> str:
        """Copy the tree to `local_path` (merged into it if it exists) or to a new temporary directory.

        Returns the local path of the copy's root.
        """
        root = self._existing()
        if local_path is None:
            target = Path(tempfile.mkdtemp(prefix="flyte-dir-")) / (self.name or root.name)
        else:
            target = Path(local_path).expanduser()
        shutil.copytree(root, target, dirs_exist_ok=True)
        return str(target)

    async def walk(self, recursive: bool = True) -> AsyncIterator[File]:
        """Yield a File for each file, sorted by path relative to the directory."""
        for file in await asyncio.to_thread(self._list, recursive):
            yield file

    def walk_sync(self, recursive: bool = True) -> Iterator[File]:
        yield from self._list(recursive)

    async def list_files(self) -> list[File]:
        """The files directly in this directory (not in subdirectories), as in Flyte 2."""
        return await asyncio.to_thread(self._list, False)

    def list_files_sync(self) -> list[File]:
        return self._list(False)

    async def get_file(self, file_name: str) -> File | None:
        """The file at `file_name` (a path relative to this directory), or None if there is none."""
        return await asyncio.to_thread(self.get_file_sync, file_name)

    def get_file_sync(self, file_name: str) -> File | None:
        root = self._existing()
        candidate = root / file_name
        if not candidate.resolve().is_relative_to(root.resolve()) or not candidate.is_file():
            return None
        return File(path=path_to_uri(candidate), name=candidate.name)

    def _list(self, recursive: bool) -> list[File]:
        root = self._existing()
        return [File(path=path_to_uri(path), name=path.name) for _, path in tree_files(root, recursive=recursive)]

"""`flyte.storage` (Flyte 2's name): object-store configuration objects and path helpers.

`S3`, `GCS` and `ABFS` are accepted as configuration values so Flyte 2 programs load; the blob store itself is
the gateway's (remote mode) or the flyte home's (local mode), so they change nothing here yet. The path helpers
work on local paths; remote URIs (s3://, gs://, abfs://) raise a `NotImplementedError`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .._unimplemented import missing_function, not_implemented

__all__ = [
    "ABFS",
    "GCS",
    "S3",
    "Storage",
    "exists",
    "get",
    "get_configured_fsspec_kwargs",
    "get_random_local_directory",
    "get_random_local_path",
    "get_stream",
    "get_underlying_filesystem",
    "is_remote",
    "join",
    "put",
    "put_stream",
]

_REMOTE = "remote object stores through flyte.storage (files move through flyte.io.File and Dir)"


@dataclass
class Storage:
    """Settings common to every object store."""

    retries: int = 3
    backoff: float = 5.0
    enable_debug: bool = False
    attach_execution_metadata: bool = True
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class S3(Storage):
    """An S3-compatible store (AWS, MinIO)."""

    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    region: str | None = None


@dataclass
class GCS(Storage):
    """Google Cloud Storage."""

    gsutil_parallelism: bool = False


@dataclass
class ABFS(Storage):
    """Azure Blob File System."""

    account_name: str | None = None
    account_key: str | None = field(default=None, repr=False)
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether a path names an object store (has a scheme other than file://)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def _local(path: str | os.PathLike[str]) -> Path:
    if is_remote(path):
        raise not_implemented(f"flyte.storage on {os.fspath(path)!r}", _REMOTE)
    return Path(os.fspath(path).removeprefix("file://"))


def join(base: str, *parts: str) -> str:
    """Join path segments with '/', as object-store keys are joined."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(path: str) -> bool:
    """Whether a local path exists."""
    return _local(path).exists()


def get_random_local_path(file_path_or_file_name: str | None = None) -> Path:
    """A fresh path under a temporary directory (keeping the given name's last part, if any)."""
    name = Path(file_path_or_file_name).name if file_path_or_file_name else uuid.uuid4().hex
    return Path(tempfile.mkdtemp(prefix="flyte-")) / name


def get_random_local_directory() -> Path:
    """A fresh empty temporary directory."""
    return Path(tempfile.mkdtemp(prefix="flyte-"))


def _copy(source: Path, target: Path, recursive: bool) -> str:
    if source.is_dir():
        if not recursive:
            raise IsADirectoryError(f"{source} is a directory; pass recursive=True")
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return str(target)


def get(from_path: str, to_path: str | None = None, recursive: bool = False) -> str:
    """Copy a local file or directory to `to_path` (a fresh temporary path when None)."""
    source = _local(from_path)
    target = _local(to_path) if to_path else get_random_local_path(source.name)
    return _copy(source, target, recursive)


def put(from_path: str, to_path: str | None = None, recursive: bool = False) -> str:
    """Copy a local file or directory to another local path (a fresh temporary path when None)."""
    return get(from_path, to_path, recursive)


get_stream = missing_function("flyte.storage.get_stream", _REMOTE)
put_stream = missing_function("flyte.storage.put_stream", _REMOTE)
get_underlying_filesystem = missing_function("flyte.storage.get_underlying_filesystem", _REMOTE + " (no fsspec)")
get_configured_fsspec_kwargs = missing_function("flyte.storage.get_configured_fsspec_kwargs", _REMOTE + " (no fsspec)")

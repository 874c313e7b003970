"""`flyte.storage` (Flyte 2's name): object-store configuration objects, and file operations on local paths and
object-store URIs (`s3://`, `gs://`, `abfs://`, `abfss://`) through obstore.

`S3`, `GCS`, `ABFS` configure a kind of store (`flyte.init(storage=S3(...))`); without one, the usual environment
configures it, as it does the gateway's blob store (docs/storage.md). `get`, `put`, `exists`, `put_stream` and
`get_stream` are coroutines, as in Flyte 2. The fsspec helpers raise `NotImplementedError` (no fsspec here).
"""

from __future__ import annotations

from .._unimplemented import missing_function
from ._config import ABFS, GCS, S3, Storage
from ._storage import (
    exists,
    exists_sync,
    get,
    get_random_local_directory,
    get_random_local_path,
    get_stream,
    is_remote,
    join,
    put,
    put_stream,
)

__all__ = [
    "ABFS",
    "GCS",
    "S3",
    "Storage",
    "exists",
    "exists_sync",
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

_FSSPEC = "fsspec filesystems (flyte.storage reaches object stores through obstore: use get, put, get_stream, ...)"
get_underlying_filesystem = missing_function("flyte.storage.get_underlying_filesystem", _FSSPEC)
get_configured_fsspec_kwargs = missing_function("flyte.storage.get_configured_fsspec_kwargs", _FSSPEC)

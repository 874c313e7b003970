"""`flyte.io.DataFrame`: a data frame passed between tasks by reference, stored as parquet in the blob store.

Like `File`, a DataFrame is a small pydantic model (the parquet file's URI, its format and a content hash) that
crosses task boundaries as JSON. `DataFrame.wrap_df(frame)` holds an in-memory pandas DataFrame or pyarrow Table
and uploads it when it is first serialized (when it leaves the task); `from_local` uploads at once. A reader asks
for the type it wants: `await df.open(pd.DataFrame).all()`. pandas and pyarrow are optional:
`pip install 'flyte-federation[dataframe]'`.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, PrivateAttr, SerializerFunctionWrapHandler, model_serializer

from flyte.io._file import File

__all__ = ["PARQUET", "DataFrame"]

PARQUET = "parquet"
_EXTRA = "pip install 'flyte-federation[dataframe]' (pandas and pyarrow)"


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ImportError(f"flyte.io.DataFrame needs pyarrow: {_EXTRA}") from None
    return pyarrow


def _is_pandas(value: object) -> bool:
    module = type(value).__module__
    return module.startswith("pandas") and type(value).__name__ == "DataFrame"


def _is_arrow(value: object) -> bool:
    return type(value).__module__.startswith("pyarrow") and type(value).__name__ == "Table"


def _to_arrow(value: Any) -> Any:
    pa = _pyarrow()
    if _is_arrow(value):
        return value
    if _is_pandas(value):
        return pa.Table.from_pandas(value, preserve_index=False)
    raise TypeError(f"flyte.io.DataFrame wraps a pandas DataFrame or a pyarrow Table, not {type(value).__name__}")


def _convert(table: Any, wanted: type | None) -> Any:
    """A pyarrow Table as `wanted` (pandas by default when pandas is installed)."""
    if wanted is not None and wanted.__module__.startswith("pyarrow"):
        return table
    if wanted is None or wanted.__module__.startswith("pandas"):
        try:
            return table.to_pandas()
        except ImportError:
            if wanted is not None:
                raise ImportError(f"reading a DataFrame as pandas needs pandas: {_EXTRA}") from None
            return table
    raise TypeError(f"flyte.io.DataFrame opens as pandas.DataFrame or pyarrow.Table, not {wanted.__name__}")


class DataFrame(BaseModel):
    """A data frame by reference: parquet in the blob store (Flyte 2's `flyte.io.DataFrame`)."""

    uri: str | None = None
    """The parquet file (a `file://` or `blob://` URI); None until an in-memory frame is uploaded."""
    format: str | None = PARQUET
    hash: str | None = None
    """sha256 of the parquet bytes, or the cache key `from_local(hash_method=)` gave."""

    _val: Any = PrivateAttr(default=None)
    _open_as: type | None = PrivateAttr(default=None)

    @model_serializer(mode="wrap")
    def _upload_before_leaving(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A wrapped in-memory frame is written out only when it crosses a boundary, never when it stays local.
        if self.uri is None and self._val is not None:
            self._upload(None)
        return handler(self)

    def _upload(self, cache_key: str | None) -> None:
        if self.format not in (None, PARQUET):
            raise ValueError(f"flyte.io.DataFrame stores parquet only, not format={self.format!r}")
        table = _to_arrow(self._val)
        with tempfile.TemporaryDirectory(prefix="flyte-df-") as scratch:
            path = Path(scratch) / "data.parquet"
            _pyarrow().parquet.write_table(table, path)
            stored = File.from_local_sync(path)
        self.uri = stored.path
        self.format = PARQUET
        self.hash = cache_key or stored.hash

    @classmethod
    def wrap_df(cls, val: Any = None, uri: str | None = None) -> DataFrame:
        """Wrap an in-memory pandas DataFrame or pyarrow Table (uploaded when it leaves the task), or refer to
        parquet at `uri`."""
        frame = cls(uri=uri)
        if val is not None:
            _to_arrow(val)  # refuse what cannot be stored now, not when the task returns
            frame._val = val
        return frame

    @classmethod
    def from_df(cls, val: Any = None, uri: str | None = None) -> DataFrame:
        """Flyte 2's older name for `wrap_df`."""
        return cls.wrap_df(val, uri)

    @classmethod
    async def from_local(
        cls,
        df: Any,
        columns: dict[str, type[Any]] | None = None,
        remote_destination: str | None = None,
        hash_method: str | Callable[[Any], str] | None = None,
    ) -> DataFrame:
        """Upload a frame now; see `from_local_sync`."""
        return await asyncio.to_thread(cls.from_local_sync, df, columns, remote_destination, hash_method)

    @classmethod
    def from_local_sync(
        cls,
        df: Any,
        columns: dict[str, type[Any]] | None = None,
        remote_destination: str | None = None,
        hash_method: str | Callable[[Any], str] | None = None,
    ) -> DataFrame:
        """Upload a frame to the blob store at once. `hash_method` (a str, or a function of the frame) gives
        the cache key instead of the content hash; `columns` keeps only those columns."""
        if remote_destination is not None:
            raise ValueError("flyte.io.DataFrame.from_local: remote_destination is not supported; the blob store is")
        table = _to_arrow(df)
        if columns:
            table = table.select(list(columns))
        key = hash_method(df) if callable(hash_method) else hash_method
        frame = cls()
        frame._val = table
        frame._upload(key)
        return frame

    @classmethod
    def from_existing_remote(cls, remote_path: str, format: str | None = PARQUET, **kwargs: Any) -> DataFrame:
        """Refer to parquet that already exists; nothing is read until it is opened."""
        return cls(uri=remote_path, format=format, hash=kwargs.get("hash"))

    def open(self, dataframe_type: type) -> DataFrame:
        """Choose the type `all()` returns (`pandas.DataFrame` or `pyarrow.Table`)."""
        self._open_as = dataframe_type
        return self

    def _table(self) -> Any:
        if self._val is not None:
            return _to_arrow(self._val)
        if self.uri is None:
            raise ValueError("this flyte.io.DataFrame holds no data")
        local = File(path=self.uri).download_sync()
        return _pyarrow().parquet.read_table(local)

    def all_sync(self) -> Any:
        """The whole frame, as the type given to `open` (pandas by default)."""
        if self._val is not None and (self._open_as is None or isinstance(self._val, self._open_as)):
            return self._val
        return _convert(self._table(), self._open_as)

    async def all(self) -> Any:
        """The whole frame; see `all_sync`."""
        return await asyncio.to_thread(self.all_sync)

    async def iter(self) -> AsyncIterator[Any]:
        """The frame in one piece (batches are not split yet)."""
        yield await self.all()

    def column_names(self) -> list[str]:
        return list(self._table().schema.names)

    def columns(self) -> dict[str, str]:
        """Column name to its arrow type, as text."""
        schema = self._table().schema
        return {name: str(schema.field(name).type) for name in schema.names}

    @classmethod
    def _coerce_input(cls, value: object) -> object:
        """A pandas DataFrame or pyarrow Table given where a DataFrame is expected becomes a wrapped one."""
        return cls.wrap_df(value) if _is_pandas(value) or _is_arrow(value) else value

"""Local mode: `flyte.io.DataFrame` carries pandas frames and arrow tables between tasks as parquet in the blob
store, read back as the type the reader asks for."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

import flyte
from flyte.io import DataFrame

env = flyte.TaskEnvironment("io_dataframe")


@env.task
async def produce(n: int) -> DataFrame:
    return DataFrame.wrap_df(pd.DataFrame({"x": list(range(n)), "y": [i * i for i in range(n)]}))


@env.task
async def produce_plain(n: int) -> DataFrame:
    # Flyte 2 lets a task declared to return a DataFrame return the frame itself.
    return pd.DataFrame({"x": list(range(n))})  # type: ignore[return-value]


@env.task
async def total(df: DataFrame) -> int:
    frame = await df.open(pd.DataFrame).all()
    return int(frame["y"].sum())


@env.task
def arrow_rows(df: DataFrame) -> int:
    table = df.open(pa.Table).all_sync()
    assert isinstance(table, pa.Table)
    return table.num_rows


@env.task
async def pipeline(n: int) -> tuple[int, int, int]:
    df = await produce(n)
    plain = await produce_plain(n)
    return await total(df), await arrow_rows.aio(df), await arrow_rows.aio(plain)


def test_a_dataframe_crosses_task_boundaries_as_parquet() -> None:
    run = flyte.run(pipeline, 4)
    assert run.outputs() == (0 + 1 + 4 + 9, 4, 4)


def test_from_local_uploads_at_once_with_a_content_hash_or_a_given_key() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["u", "v"]})
    stored = DataFrame.from_local_sync(frame)
    assert stored.uri is not None
    assert stored.format == "parquet"
    assert stored.hash == DataFrame.from_local_sync(frame).hash
    reread = DataFrame.model_validate_json(stored.model_dump_json())
    assert reread.column_names() == ["a", "b"]
    assert reread.columns()["a"] == "int64"
    pd.testing.assert_frame_equal(reread.open(pd.DataFrame).all_sync(), frame)
    keyed = DataFrame.from_local_sync(frame, hash_method=lambda df: f"rows={len(df)}", columns={"a": int})
    assert keyed.hash == "rows=2"
    assert keyed.column_names() == ["a"]


def test_bad_values_are_refused_when_wrapped() -> None:
    with pytest.raises(TypeError, match="pandas DataFrame or a pyarrow Table"):
        DataFrame.wrap_df([1, 2, 3])
    with pytest.raises(ValueError, match="holds no data"):
        DataFrame().all_sync()

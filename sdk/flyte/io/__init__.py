"""Files and directories passed between tasks by reference: `File` and `Dir` (Flyte 2's `flyte.io`).

The bytes live in the local blob store under `FLYTE_HOME`; only the reference crosses a task boundary.
`DataFrame` and its encoders are not implemented yet (they raise `NotImplementedError`).
"""

from flyte._unimplemented import missing_class, missing_function
from flyte.io._dir import Dir
from flyte.io._file import File

__all__ = [
    "PARQUET",
    "DataFrame",
    "DataFrameDecoder",
    "DataFrameEncoder",
    "DataFrameTransformerEngine",
    "Dir",
    "File",
    "lazy_import_dataframe_handler",
]

_DATAFRAMES = "flyte.io.DataFrame (pandas/pyarrow data frames as parquet in the blob store)"

PARQUET = "parquet"
DataFrame = missing_class("flyte.io.DataFrame", _DATAFRAMES)
DataFrameDecoder = missing_class("flyte.io.DataFrameDecoder", _DATAFRAMES)
DataFrameEncoder = missing_class("flyte.io.DataFrameEncoder", _DATAFRAMES)
DataFrameTransformerEngine = missing_class("flyte.io.DataFrameTransformerEngine", _DATAFRAMES)
lazy_import_dataframe_handler = missing_function("flyte.io.lazy_import_dataframe_handler", _DATAFRAMES)

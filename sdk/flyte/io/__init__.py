"""Files and directories passed between tasks by reference: `File` and `Dir` (Flyte 2's `flyte.io`).

The bytes live in the local blob store under `FLYTE_HOME`; only the reference crosses a task boundary.
`DataFrame` holds pandas or pyarrow frames as parquet (optional extra `dataframe`); pluggable encoders for other
frame types are not implemented yet (they raise `NotImplementedError`).
"""

from flyte._unimplemented import missing_class, missing_function
from flyte.io._dataframe import PARQUET, DataFrame
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

_DATAFRAMES = "pluggable data frame encoders (pandas and pyarrow are built in)"

DataFrameDecoder = missing_class("flyte.io.DataFrameDecoder", _DATAFRAMES)
DataFrameEncoder = missing_class("flyte.io.DataFrameEncoder", _DATAFRAMES)
DataFrameTransformerEngine = missing_class("flyte.io.DataFrameTransformerEngine", _DATAFRAMES)
lazy_import_dataframe_handler = missing_function("flyte.io.lazy_import_dataframe_handler", _DATAFRAMES)

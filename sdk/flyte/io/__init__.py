"""Files and directories passed between tasks by reference: `File` and `Dir` (Flyte 2's `flyte.io`).

The bytes live in the local blob store under `FLYTE_HOME`; only the reference crosses a task boundary.
"""

from flyte.io._dir import Dir
from flyte.io._file import File

__all__ = ["Dir", "File"]

"""`flyte.run`, `Run.wait()` and `Run.outputs()` work from Jupyter cells, where an event loop already runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    """
import asyncio
import flyte

env = flyte.TaskEnvironment("notebook_env")

@env.task
async def square(x: int) -> int:
    return x * x

@env.task
async def total(n: int) -> int:
    return sum(await asyncio.gather(*(square(i) for i in range(n))))
""",
    "asyncio.get_running_loop()  # the kernel's loop is running in this cell",
    "run = flyte.run(total, n=10)\nrun.wait()\nrun.outputs()[0]",
    "run",
    "assert run.outputs() == (285,)\nprint(run.phase)",
]


@pytest.mark.timeout(180)
def test_notebook_runs_tasks(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [cell.outputs for cell in notebook.cells]
    assert outputs[2][0]["data"]["text/plain"] == "285"
    html = outputs[3][0]["data"]["text/html"]
    assert "flyte-run" in html
    assert "succeeded" in html
    assert outputs[4][0]["text"].strip() == "succeeded"
